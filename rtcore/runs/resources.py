"""Where a spec runs and how much it holds at once: its device, its batch size, out-of-memory retries.

From one chunk up none of this changes a number: every row is computed in fixed chunks
(:mod:`rtcore.numerics`), so a batch of 32 or of 4096 images gives the same bits; the batch size only bounds
memory. A batch below the chunk (a large model on a small device) becomes the chunk
(:func:`rtcore.numerics.rows_per_chunk`): memory bounded by the batch, other arithmetic, named in the cache keys.
``"auto"`` takes a batch that fits a share of the device's free memory, measured on one chunk of the backbone's
forward and backward pass; a unit that runs out of memory anyway is rerun with half the batch
(:func:`halving_on_oom`), down to one chunk (a smaller batch only where the spec asks for one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch

from ..models import Backbone, resolve_device
from ..numerics import chunk_rows

__all__ = ["MAX_BATCH", "MEMORY_SHARE", "auto_batch_size", "free_memory", "halving_on_oom", "is_out_of_memory",
           "spec_device"]

#: the share of free memory an automatic batch may take
MEMORY_SHARE = 0.25
#: the largest automatic batch (more only adds latency to progress reports)
MAX_BATCH = 1024
T = TypeVar("T")


def spec_device(device: str) -> torch.device:
    """A spec's ``device`` as a torch device (``auto``: CUDA when present, else the CPU)."""
    return resolve_device(None if device == "auto" else device)


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: CUDA's free memory, or the machine's available memory for the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _chunk_bytes(g: Backbone, shape: tuple[int, ...]) -> int:
    """Bytes one chunk of rows holds through a forward and backward pass of ``g`` (measured on CUDA; on the
    CPU the outputs of every module, counted three times: activations, their gradients, workspace)."""
    rows = chunk_rows(g.device)
    x = torch.rand((rows, *shape), device=g.device, requires_grad=True)
    if g.device.type == "cuda":
        torch.cuda.synchronize(g.device)
        before = torch.cuda.memory_allocated(g.device)
        torch.cuda.reset_peak_memory_stats(g.device)
        g(x).square().sum().backward()
        torch.cuda.synchronize(g.device)
        return max(int(torch.cuda.max_memory_allocated(g.device) - before), 1)
    total = [0]

    def count(_m: torch.nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    hooks = [m.register_forward_hook(count) for m in g.modules()]
    try:
        g(x).square().sum().backward()
    finally:
        for h in hooks:
            h.remove()
    return max(3 * total[0], 1)


def auto_batch_size(g: Backbone, shape: tuple[int, ...]) -> int:
    """A batch (a multiple of the chunk) whose forward and backward pass takes at most
    :data:`MEMORY_SHARE` of the free memory of ``g``'s device; at least one chunk, at most :data:`MAX_BATCH`."""
    rows = chunk_rows(g.device)
    per_row = _chunk_bytes(g, shape) / rows
    fit = int(MEMORY_SHARE * free_memory(g.device) / per_row)
    return max(rows, min(MAX_BATCH, fit) // rows * rows)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says the device (or the machine) ran out of memory."""
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def halving_on_oom(run: Callable[[int], T], batch: int, minimum: int, on_retry: Callable[[int], None] | None = None) -> T:
    """``run(batch)``; on running out of memory, free what can be freed and ``run`` again with half the batch,
    down to ``minimum`` (then the error is raised with the fix)."""
    while True:
        try:
            return run(batch)
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
            if batch <= minimum:
                raise MemoryError(f"out of memory with a batch of {batch} images, the smallest there is; free memory "
                                  f"on the device or use a smaller backbone or input size") from err
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        batch = max(minimum, batch // 2)
        if on_retry is not None:
            on_retry(batch)
