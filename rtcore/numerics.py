"""One number everywhere: the arithmetic every result is computed with, whatever runs it.

A float32 forward or backward pass on the CPU is not a function of its inputs alone. Measured on
torch 2.14 (oneDNN convolutions, MKL matrix products), for the bundled CNN, timm's ResNet and ViT
and the ResNet-18:

* **the thread count** changes the bits: a ViT's features of 64 images differ between one and two
  threads, and a CNN's differ for batches of 3, 5, 7 or 11 images (the kernels split the work,
  and so the sums, by thread);
* **the batch size** changes the bits even on one thread: an image's features in a batch of 1-3
  (the CNN) or 1-15 (timm's ResNet) differ from the same image's features in a batch of 64;
* the *position* of an image inside a batch of one fixed size does not for those models (tested,
  batches of 8, 16 and 32), but it can for a matrix product whose inner size is not a multiple of the
  vector width (a ``Linear(37, 5)``: rows at 24 of 32 positions differ in their last bit).

A feature value that moves in its last bit can flip a margin comparison, the C the probe picks, a
point of an attack's trajectory, and so a robust accuracy. So every computation runs:

* on :data:`THREADS` intra-op thread(s) (:func:`fixed_threads`, around every unit of work and every
  public computing function; re-entrant and safe from several threads at once), and
* on rows in chunks of exactly :func:`chunk_rows` rows (:func:`by_rows`: the last chunk padded
  with zero images and the padding dropped; a smaller chunk where a run asks for a batch below it,
  :func:`rows_per_chunk`, named in :func:`numerics_tag`, and for the rest of an attack's step where the
  model is checked to give the same bits there, :func:`exact_chunks`), inside :class:`rtcore.Backbone` and
  :class:`rtcore.LinearHead`, so an image's result never depends on the batch it came in with:
  not on the caller's batch size, nor on which other points an attack still carries.

With both, the same spec gives bit-identical tables with 1, 2 or 16 threads, in one process or
many, locally or on Ray, on a cold cache or one another thread count filled. The batch size (which
images share a chunk) changes no bit for a model that computes a row alike at every position of a
chunk: :func:`row_invariant` checks a backbone on its first use; :class:`rtcore.LinearHead` is
written so (a row-wise product and sum). For a model that fails the check the batch size is part of
the arithmetic (:func:`numerics_tag` names it, and the automatic batch size is not used), so its
numbers are exact for a given batch size and never mixed with another's. One thread with
chunks of 32 is also faster than the previous 512-row batches on two threads (a CNN's forward and
backward of 512 images: 193 ms against 255 ms; the ResNet-18's of 128: 1.39 s against 2.10 s on
one thread unchunked): chunks fit the caches. Parallelism comes from running units side by side
(sweep workers).

What is not exact, and says so: a GPU computes other bits than a CPU (other kernels), and another
CPU instruction set (AVX2 against AVX-512) or another torch release may too. :func:`numerics_tag`
names the arithmetic; it enters every cache key, so a result computed one way is never served as
the other. On CUDA, cuDNN runs in its deterministic mode (no benchmark-chosen algorithms).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import ParamSpec, TypeVar

import torch

__all__ = ["CHUNK_ROWS", "TAIL_ROWS", "THREADS", "by_rows", "chunk_rows", "exact_chunks", "fixed_threads",
           "linear_rows", "numerics_tag", "positional_batch", "row_invariant", "rows_per_chunk", "set_positional_batch",
           "with_fixed_threads"]

#: intra-op threads every computation runs on
THREADS = 1
#: rows per chunk by device type (a GPU wants larger chunks; its bits differ from the CPU's anyway)
CHUNK_ROWS: dict[str, int] = {"cpu": 32, "cuda": 256, "mps": 256}
#: bump when the arithmetic above changes (it enters :func:`numerics_tag`, so every cache key)
NUMERICS_VERSION = 1

_LOCK = threading.Lock()
_DEPTH = 0
_SAVED = 0
P = ParamSpec("P")
R = TypeVar("R")


#: a smaller chunk for the computation running in this context (:func:`rows_per_chunk`)
_SMALLER: ContextVar[int | None] = ContextVar("rtcore_rows_per_chunk", default=None)


def chunk_rows(device: torch.device | str) -> int:
    """The rows of one chunk on ``device``: :data:`CHUNK_ROWS`, or fewer inside :func:`rows_per_chunk`."""
    rows = CHUNK_ROWS.get(torch.device(device).type, CHUNK_ROWS["cuda"])
    smaller = _SMALLER.get()
    return rows if smaller is None else min(rows, smaller)


@contextmanager
def rows_per_chunk(rows: int | None) -> Iterator[None]:
    """Compute in chunks of at most ``rows`` rows in the body (None: no change; nested, the smaller holds; for the
    calling thread, as a context variable: a thread started inside does not inherit it): a batch
    size below the chunk bounds memory this way. Other chunks are other arithmetic: :func:`numerics_tag` names
    the chunk, so such results are keyed apart (exact for that chunk, never mixed with the default's)."""
    if rows is not None and rows < 1:
        raise ValueError(f"rows per chunk must be at least 1, not {rows}")
    outer = _SMALLER.get()
    token = _SMALLER.set(outer if rows is None or (outer is not None and outer < rows) else rows)
    try:
        yield
    finally:
        _SMALLER.reset(token)


def numerics_tag(device: torch.device | str, batch: int | None = None) -> str:
    """The name of the arithmetic results on ``device`` are computed with (part of every cache key);
    ``batch``: the batch size, for a model whose rows depend on their position (:func:`row_invariant`)."""
    kind = torch.device(device).type
    tag = f"{kind}-t{THREADS if kind == 'cpu' else 0}-r{chunk_rows(kind)}-v{NUMERICS_VERSION}"
    return tag if batch is None else f"{tag}-b{batch}"


#: the batch size of each model whose rows depend on their position in a chunk (see the module docstring)
_POSITIONAL: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()


def positional_batch(model: object) -> int | None:
    """The batch size ``model``'s numbers depend on (None: they depend on none, or it was not checked)."""
    return _POSITIONAL.get(model)


def set_positional_batch(model: object, batch: int) -> None:
    """Record that ``model``'s numbers depend on the batch size, and the one they are computed with."""
    _POSITIONAL[model] = int(batch)


@contextmanager
def fixed_threads() -> Iterator[None]:
    """Run the body on :data:`THREADS` torch thread(s); the caller's setting is restored once no
    computation of this process is inside any more (so threads running side by side never see
    each other's restore)."""
    global _DEPTH, _SAVED
    with _LOCK:
        if _DEPTH == 0:
            _SAVED = torch.get_num_threads()
        _DEPTH += 1
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)
    if torch.backends.cudnn.benchmark or not torch.backends.cudnn.deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0 and _SAVED != torch.get_num_threads():
                torch.set_num_threads(_SAVED)


def with_fixed_threads(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run inside :func:`fixed_threads`."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with fixed_threads():
            return fn(*args, **kwargs)

    return wrapper


def row_invariant(fn: Callable[[torch.Tensor], torch.Tensor], row: torch.Tensor) -> bool:
    """Whether ``fn`` computes ``row`` (C, H, W) to the same bits at every position of a chunk, forward and
    backward: one pass over a chunk holding ``row`` at every position (which other rows share a chunk never
    matters; where a row sits may)."""
    rows = chunk_rows(row.device)
    x = row.detach()[None].expand(rows, *row.shape).clone().requires_grad_(True)
    with fixed_threads(), torch.enable_grad():
        out = fn(x)
        out.square().sum().backward()
    same = bool((out.detach() == out.detach()[:1]).all()) and bool((x.grad == x.grad[:1]).all())
    return same


#: the smaller chunks :func:`exact_chunks` tries (for the last, partly filled chunk of an attack's step)
TAIL_ROWS = (16, 8, 4)
_EXACT: weakref.WeakKeyDictionary[object, dict[tuple[object, ...], tuple[int, ...]]] = weakref.WeakKeyDictionary()


def exact_chunks(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 key: object | None = None) -> tuple[int, ...]:
    """The chunk sizes of :data:`TAIL_ROWS` at which ``model`` computes every row of ``x`` (forward and backward) to
    the same bits as in chunks of :func:`chunk_rows` rows (the kernels a convolution or product picks depend on
    the batch's size, not on its values; the check runs one chunk of real rows per size). Checked once per
    ``key`` (the module whose arithmetic decides, default ``model``; a linear head on it computes by rows, see
    :func:`linear_rows`), chunk, input shape and dtype; on the CPU only (on a GPU a small
    chunk costs about what a full one does). An attack computes the last, partly filled chunk of a step in such
    a chunk instead of padding it to the full size."""
    if x.device.type != "cpu" or x.shape[0] == 0:
        return ()
    rows = chunk_rows(x.device)
    memo = (rows, tuple(x.shape[1:]), x.dtype)
    try:
        return _EXACT[key if key is not None else model][memo]
    except (KeyError, TypeError):
        pass
    sample = x[torch.arange(rows, device=x.device) % x.shape[0]].detach()

    def grads() -> tuple[torch.Tensor, torch.Tensor]:
        xi = sample.clone().requires_grad_(True)
        with fixed_threads(), torch.enable_grad():
            out = model(xi)
            (grad,) = torch.autograd.grad(out.float().square().sum(), xi)
        return out.detach(), grad

    ref = grads()
    exact = []
    for size in TAIL_ROWS:
        if size < rows:
            with rows_per_chunk(size):
                got = grads()
            if all(torch.equal(a, b) for a, b in zip(ref, got)):
                exact.append(size)
    try:
        _EXACT.setdefault(key if key is not None else model, {})[memo] = tuple(exact)
    except TypeError:
        pass
    return tuple(exact)


def linear_rows(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``z @ weight.T (+ bias)`` as a product and a sum along each row: every row is computed alike wherever it
    sits in its batch (a matrix product's kernels may treat rows by their position, see the module docstring).
    Holds rows x outputs x inputs numbers at once: for the small outputs of heads and projections."""
    out = (z[:, None, :] * weight[None]).sum(-1)
    return out if bias is None else out + bias


def by_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` computed on chunks of exactly :func:`chunk_rows` rows (zero rows pad the last; their
    outputs are dropped), so that each row's result is the same whatever batch it arrived in.
    Differentiable: each chunk's graph is kept for the caller's backward pass."""
    rows = chunk_rows(x.device)
    n = x.shape[0]
    if n == rows:
        return fn(x)
    outs = []
    for lo in range(0, max(n, 1), rows):
        part = x[lo:lo + rows]
        short = rows - part.shape[0]
        if short:
            part = torch.cat([part, part.new_zeros((short, *part.shape[1:]))])
        out = fn(part)
        outs.append(out[:rows - short] if short else out)
    return outs[0] if len(outs) == 1 else torch.cat(outs)
