"""Uploaded checkpoints (size-limited, safetensors only, pruned when unused), the offline check of timm
weights, and loading a :class:`rtcore.models.ref.BackboneRef` (the library's one backbone reference)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch

from rtcore import Backbone, BackboneUnavailableError, CheckpointError
from rtcore._io import TMP_PREFIX, atomic_write
from rtcore.config import default_cache_dir
from rtcore.models import TIMM_PREFIX, check_safetensors_file
from rtcore.models.hub import hub_reachable, timm_weights_available_offline
from rtcore.models.ref import BackboneRef

from .state import MAX_UPLOAD_BYTES

log = logging.getLogger(__name__)

UPLOAD_TTL_S = 24 * 3600.0  # an upload not used for this long is deleted at the next save
_UPLOAD_NAME = re.compile(r"^[0-9a-f]{24}-[A-Za-z0-9_.-]+\.safetensors$")


class UploadError(ValueError):
    """An uploaded checkpoint was refused (too large, wrong type, not safetensors)."""


def upload_dir() -> Path:
    """Where accepted uploads are stored: ``uploads/`` in the result cache folder (content-addressed)."""
    return default_cache_dir() / "uploads"


def save_upload(filename: str, data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES,
                dest: str | os.PathLike[str] | None = None) -> Path:
    """Check an uploaded checkpoint and store it in :func:`upload_dir` (or ``dest``); return its path.

    Refused with :class:`UploadError`, storing nothing: empty or above ``max_bytes``, a name not ending in
    ``.safetensors`` (pickles can run code), or content that is not a well-formed safetensors file. The
    stored name is its sha256, so a re-upload reuses it; each save deletes uploads unused for
    :data:`UPLOAD_TTL_S`.
    """
    size = len(data)
    if size == 0:
        raise UploadError(f"the uploaded file {filename!r} is empty")
    if size > max_bytes:
        raise UploadError(f"the uploaded file {filename!r} is {size / 1e6:.1f} MB, above the "
                          f"{max_bytes / 1e6:.0f} MB limit")
    if not filename.lower().endswith(".safetensors"):
        raise UploadError(
            f"{filename!r} is not a .safetensors file; pickled checkpoints (.pt, .pth, .bin, .ckpt) are refused "
            "because loading them can run code. Convert it where you trust it: "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')")
    folder = Path(dest) if dest is not None else upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    prune_uploads(folder)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(filename).stem)[:60] or "checkpoint"
    with tempfile.TemporaryDirectory(dir=folder, prefix=TMP_PREFIX) as tmp:
        candidate = Path(tmp) / f"{stem}.safetensors"
        candidate.write_bytes(data)
        try:
            check_safetensors_file(candidate)
        except CheckpointError as e:
            raise UploadError(f"upload refused, not a safetensors file: {e}") from e
    path = folder / f"{hashlib.sha256(data).hexdigest()[:24]}-{stem}.safetensors"
    if path.is_file():
        touch_upload(path)
    else:
        atomic_write(path, data)
    return path


def touch_upload(path: str | os.PathLike[str]) -> None:
    """Mark an upload as used now, so that :func:`prune_uploads` keeps it."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune_uploads(folder: str | os.PathLike[str] | None = None, older_than_s: float = UPLOAD_TTL_S) -> int:
    """Delete uploads (and leftover temporaries) in ``folder`` unused for ``older_than_s``; return how many.
    Only files named as :func:`save_upload` names them are touched."""
    root = Path(folder) if folder is not None else upload_dir()
    if not root.is_dir():
        return 0
    now, removed = time.time(), 0
    for p in root.iterdir():
        try:
            if now - p.stat().st_mtime <= older_than_s:
                continue
            if p.name.startswith(TMP_PREFIX) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.is_file() and (_UPLOAD_NAME.match(p.name) or p.name.startswith(TMP_PREFIX)):
                p.unlink()
            else:
                continue
            removed += 1
        except OSError:
            continue
    if removed:
        log.info("removed %d unused upload(s) from %s", removed, root)
    return removed


def _uploaded(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return bool(_UPLOAD_NAME.match(p.name)) and p.parent.resolve() == upload_dir().resolve()


def timm_arch(name: str) -> str:
    """A timm architecture name given by a user (``timm:`` prefix optional), checked against timm."""
    import timm

    arch = name.strip().removeprefix(TIMM_PREFIX)
    if not arch:
        raise ValueError("give the timm architecture the checkpoint was saved from, e.g. 'resnet18'")
    if not (timm.is_model(arch) or timm.is_model(arch.split(".")[0])):
        close = timm.list_models(f"*{arch.split('.')[0][:12]}*")[:5]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise ValueError(f"timm has no architecture {arch!r}{hint}")
    return arch


def upload_ref(arch: str, path: str | os.PathLike[str], filename: str) -> BackboneRef:
    """The reference of an uploaded checkpoint for a timm architecture."""
    a = timm_arch(arch)
    if _uploaded(path):
        if not Path(path).is_file():
            raise UploadError(f"the uploaded checkpoint {Path(filename).name!r} is no longer stored on the server "
                              f"(unused for more than {UPLOAD_TTL_S / 3600:.0f} hours); upload it again")
        touch_upload(path)
    return BackboneRef(f"{TIMM_PREFIX}{a}", str(path), label=f"{TIMM_PREFIX}{a} + {Path(filename).name}")


def offline_problem(ref: BackboneRef) -> str | None:
    """A message when a timm backbone needs a download that cannot happen; None when it may load."""
    if not ref.name.startswith(TIMM_PREFIX) or ref.weights is not None:
        return None
    model = ref.name[len(TIMM_PREFIX):]
    if timm_weights_available_offline(model) or hub_reachable():
        return None
    return (f"The pretrained weights of {ref.name!r} are not on this machine and huggingface.co cannot be "
            f"reached, so this backbone is unavailable offline. Fix: run once with network to fill the Hugging "
            f"Face cache, or pick 'upload a checkpoint' and give a local .safetensors file with the architecture "
            f"{model.split('.')[0]!r}, or choose a bundled backbone.")


def load_backbone(ref: BackboneRef, device: str | torch.device | None = None) -> Backbone:
    """Create the backbone of ``ref`` (CUDA when present): BackboneUnavailableError at once for timm weights
    that cannot be had offline, CheckpointError for a checkpoint that does not fit, ValueError for a bad name."""
    problem = offline_problem(ref)
    if problem:
        raise BackboneUnavailableError(problem)
    if ref.weights is not None and _uploaded(ref.weights):
        touch_upload(ref.weights)
    return ref.create(device)


def describe_device(g: Backbone) -> str:
    """``cuda (NVIDIA H100)`` or ``cpu (2 threads)``."""
    d = g.device
    if d.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(d)})"
    threads = torch.get_num_threads()
    return f"{d.type} ({threads} thread{'' if threads == 1 else 's'})"
