"""Checkpoint files: safetensors only (never unpickled), fully checked before they reach a network.

:func:`check_safetensors_file` reads only the header and checks it completely (the file's size
within the input memory budget of :mod:`rtcore.budget`, the header's size limit,
JSON, dtypes, shapes, byte ranges that tile the data section exactly), so a truncated file,
a garbage header or a huge header is refused with :class:`CheckpointError` naming the file,
before any tensor is read. A path that is not a regular file (a directory, a FIFO, a device such
as ``/dev/zero``) is named as what it is, found with ``stat`` alone (a FIFO is never opened).
:func:`load_state_dict_into` lists every missing, unexpected and mis-shaped key and refuses a
tensor whose kind of dtype (floating, integer, bool) differs from the model's
(:func:`check_state_dtypes`): integer weights are never cast silently into a float model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from .._io import not_a_file
from ..budget import input_budget
from ..errors import CheckpointError

MAX_HEADER_BYTES = 16 * 1024**2
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_PICKLE_HINT = ("pickled .pt/.pth/.bin/.ckpt files are refused because unpickling can run code; convert it once "
                "where you trust it: safetensors.torch.save_file(torch.load(path, weights_only=True), "
                "'model.safetensors')")


def _bad(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path.name!r} ({str(path)!r}) is not a valid safetensors file: {why}")


def checkpoint_path(path: object) -> Path:
    """``path`` as a Path if it names a regular file; CheckpointError saying what it is otherwise."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or not str(os.fspath(path)).strip():
        raise CheckpointError(f"weights={path!r} ({type(path).__name__}) must be the path of a .safetensors file")
    p = Path(path)
    problem = not_a_file(p)
    if problem is None:
        return p
    hint = "give the path of a .safetensors file"
    if problem.startswith("is a directory"):
        inside = sorted(q.name for q in p.glob("*.safetensors"))[:5]
        hint = f"give the file inside it ({', '.join(inside)})" if inside else hint + " (it holds none)"
    raise CheckpointError(f"checkpoint {str(p)!r} {problem}; {hint}")


def read_safetensors_header(path: str | os.PathLike[str]) -> dict[str, dict[str, object]]:
    """The checked header ``{name: {"dtype", "shape", "data_offsets"}}`` of a safetensors file."""
    p = checkpoint_path(path)
    size = p.stat().st_size
    problem = input_budget().bytes_problem(f"checkpoint {p.name!r} ({size} bytes)", size)
    if problem:
        raise CheckpointError(problem)
    try:
        fh = open(p, "rb")
    except OSError as e:
        raise CheckpointError(f"checkpoint {str(p)!r} cannot be read ({e.strerror or e}); give a readable "
                              f".safetensors file") from e
    with fh:
        head = fh.read(8)
        if len(head) < 8:
            raise _bad(p, f"it has only {size} bytes; {_PICKLE_HINT}")
        n = int.from_bytes(head, "little")
        looks_pickled = head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1] in (2, 3, 4, 5))
        if looks_pickled and not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
            raise _bad(p, f"it is a pickled PyTorch checkpoint (zip or pickle), not safetensors; {_PICKLE_HINT}")
        if n > MAX_HEADER_BYTES:
            raise _bad(p, f"its header claims {n} bytes, above the {MAX_HEADER_BYTES // 1024**2} MB limit "
                          f"(a real header is a few kB); {_PICKLE_HINT}")
        if n < 2 or n > size - 8:
            raise _bad(p, f"its header length {n} does not fit a file of {size} bytes (truncated, or not "
                          f"safetensors); {_PICKLE_HINT}")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(p, f"its header is not JSON ({e}); {_PICKLE_HINT}") from None
    if not isinstance(header, dict):
        raise _bad(p, "its header is not a JSON object")
    data_len = size - 8 - n
    spans = []
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    for name, info in tensors.items():
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
            raise _bad(p, f"tensor {name!r} has a malformed entry {str(info)[:120]}")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise _bad(p, f"tensor {name!r} has unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise _bad(p, f"tensor {name!r} has a malformed shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)):
            raise _bad(p, f"tensor {name!r} has malformed data offsets {offs!r}")
        begin, end = offs
        if not 0 <= begin <= end <= data_len:
            raise _bad(p, f"tensor {name!r} lies at bytes {begin}..{end} but the data section has {data_len} "
                          f"bytes (the file is truncated)")
        if end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise _bad(p, f"tensor {name!r} of shape {shape} and dtype {dtype} needs "
                          f"{math.prod(shape) * _DTYPE_BYTES[dtype]} bytes, its offsets give {end - begin}")
        spans.append((begin, end))
    pos = 0
    for begin, end in sorted(spans):
        if begin != pos:
            raise _bad(p, "its tensors overlap or leave gaps in the data section")
        pos = end
    if pos != data_len:
        raise _bad(p, f"its data section has {data_len} bytes but the tensors cover {pos} (truncated or padded)")
    return tensors


def check_safetensors_file(path: str | os.PathLike[str]) -> Path:
    """The path, if it is a well-formed safetensors file; :class:`CheckpointError` naming it otherwise."""
    read_safetensors_header(path)
    return Path(path)


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a state dict from a checked safetensors file."""
    from safetensors.torch import load_file

    p = check_safetensors_file(path)
    try:
        return load_file(str(p))
    except Exception as e:  # noqa: BLE001 - the header was checked; anything else is still the file's fault
        raise _bad(p, f"{type(e).__name__}: {e}") from e


_FLOAT_CODES = {"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"}


def _kind(dtype: torch.dtype | str) -> str:
    """``floating``, ``integer`` or ``bool``, for a torch dtype or a safetensors dtype code (``"I32"``)."""
    if isinstance(dtype, str):
        return "bool" if dtype == "BOOL" else ("floating" if dtype in _FLOAT_CODES else "integer")
    if dtype == torch.bool:
        return "bool"
    return "floating" if (dtype.is_floating_point or dtype.is_complex) else "integer"


def check_state_dtypes(net: nn.Module, dtypes: dict[str, torch.dtype | str], source: str) -> None:
    """Every tensor of a checkpoint has the same kind of dtype (floating, integer, bool) as the model's
    tensor it goes into; CheckpointError naming the tensors and dtypes otherwise. Floating to floating
    (e.g. float64 or float16 into float32) is a cast and allowed."""
    own = net.state_dict()
    bad = sorted(f"{k} ({dtypes[k]} in the file, {own[k].dtype} in the model)" for k in set(own) & set(dtypes)
                 if _kind(dtypes[k]) != _kind(own[k].dtype))
    if bad:
        raise CheckpointError(
            f"checkpoint {Path(source).name!r} holds tensors of another kind of dtype than {type(net).__name__}: "
            f"{', '.join(bad[:4])}{f' (+{len(bad) - 4} more)' if len(bad) > 4 else ''}; loading would cast them "
            f"silently (integer values into float weights). Save the float weights (state[k].float()) or pick the "
            f"checkpoint saved from this architecture.")


def load_state_dict_into(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load; a mismatch becomes a CheckpointError listing the missing, unexpected and mis-shaped keys,
    or the tensors whose kind of dtype differs from the model's (:func:`check_state_dtypes`)."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

    problems = [f"missing keys: {few(missing)}" if missing else "",
                f"unexpected keys: {few(unexpected)}" if unexpected else "",
                f"wrong shapes: {few(shapes)}" if shapes else ""]
    problems = [x for x in problems if x]
    if problems:
        raise CheckpointError(f"checkpoint {Path(source).name!r} does not match the architecture "
                              f"{type(net).__name__}: {'; '.join(problems)}. Pick the architecture the checkpoint "
                              f"was saved from.")
    check_state_dtypes(net, {k: v.dtype for k, v in state.items()}, source)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {Path(source).name!r} does not load into {type(net).__name__}: "
                              f"{str(e).splitlines()[0][:300]}") from e
