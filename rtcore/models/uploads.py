"""Uploaded checkpoints: size-limited, safetensors only (checked before anything is stored), stored by
content under the cache folder and pruned when unused; the checks a checkpoint's architecture name and
a timm backbone's offline availability get before any loading.

The dashboard's upload widget calls :func:`save_checkpoint_upload`; nothing here is specific to it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

from .._io import TMP_PREFIX, UPLOAD_TTL_S, atomic_write, prune_unused, upload_size_problem
from ..config import resolve_cache_dir
from ..errors import BackboneUnavailableError, CheckpointError
from .checkpoints import check_safetensors_file
from .hub import TIMM_PREFIX, hub_reachable, timm_weights_available_offline
from .ref import BackboneRef
from .wrapper import Backbone

log = logging.getLogger(__name__)

#: the largest checkpoint accepted by default
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
_UPLOAD_NAME = re.compile(r"^[0-9a-f]{24}-[A-Za-z0-9_.-]+\.safetensors$")


class CheckpointUploadError(CheckpointError):
    """An uploaded checkpoint was refused (too large, wrong type, not safetensors, no longer stored)."""


def checkpoint_upload_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where accepted uploads are stored: ``uploads/`` in the cache folder (content-addressed)."""
    return resolve_cache_dir(cache_dir) / "uploads"


def save_checkpoint_upload(filename: str, data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES,
                dest: str | os.PathLike[str] | None = None) -> Path:
    """Check an uploaded checkpoint and store it in :func:`checkpoint_upload_dir` (or ``dest``); return its path.

    Refused with :class:`CheckpointUploadError`, storing nothing: empty or above ``max_bytes``, a name not ending in
    ``.safetensors`` (pickles can run code), or content that is not a well-formed safetensors file. The
    stored name is its sha256, so a re-upload reuses it; each save deletes uploads unused for
    :data:`UPLOAD_TTL_S`.
    """
    problem = upload_size_problem(filename, data, max_bytes)
    if problem:
        raise CheckpointUploadError(problem)
    if not filename.lower().endswith(".safetensors"):
        raise CheckpointUploadError(
            f"{filename!r} is not a .safetensors file; pickled checkpoints (.pt, .pth, .bin, .ckpt) are refused "
            "because loading them can run code. Convert it where you trust it: "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')")
    folder = Path(dest) if dest is not None else checkpoint_upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    prune_checkpoint_uploads(folder)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(filename).stem)[:60] or "checkpoint"
    with tempfile.TemporaryDirectory(dir=folder, prefix=TMP_PREFIX) as tmp:
        candidate = Path(tmp) / f"{stem}.safetensors"
        candidate.write_bytes(data)
        try:
            check_safetensors_file(candidate)
        except CheckpointError as e:
            raise CheckpointUploadError(f"upload refused, not a safetensors file: {e}") from e
    path = folder / f"{hashlib.sha256(data).hexdigest()[:24]}-{stem}.safetensors"
    if path.is_file():
        touch_checkpoint_upload(path)
    else:
        atomic_write(path, data)
    return path


def touch_checkpoint_upload(path: str | os.PathLike[str]) -> None:
    """Mark an upload as used now, so that :func:`prune_checkpoint_uploads` keeps it."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune_checkpoint_uploads(folder: str | os.PathLike[str] | None = None, older_than_s: float = UPLOAD_TTL_S) -> int:
    """Delete uploads (and leftover temporaries) in ``folder`` unused for ``older_than_s``; return how many.
    Only files named as :func:`save_checkpoint_upload` names them are touched."""
    root = Path(folder) if folder is not None else checkpoint_upload_dir()

    def owned(p: Path) -> bool:
        return p.name.startswith(TMP_PREFIX) or (p.is_file() and _UPLOAD_NAME.match(p.name) is not None)

    removed = prune_unused(root, older_than_s, owned)
    if removed:
        log.info("removed %d unused upload(s) from %s", removed, root)
    return removed


def is_checkpoint_upload(path: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``path`` is an upload stored in ``folder`` (default :func:`checkpoint_upload_dir`): then it is
    touched when used, and may be pruned."""
    p = Path(path)
    root = Path(folder) if folder is not None else checkpoint_upload_dir()
    return bool(_UPLOAD_NAME.match(p.name)) and p.parent.resolve() == root.resolve()


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


def offline_problem(name: str, weights: str | None = None) -> str | None:
    """A message when a timm backbone needs a download that cannot happen; None when it may load."""
    if not name.startswith(TIMM_PREFIX) or weights is not None:
        return None
    model = name[len(TIMM_PREFIX):]
    if timm_weights_available_offline(model) or hub_reachable():
        return None
    return (f"The pretrained weights of {name!r} are not on this machine and huggingface.co cannot be "
            f"reached, so this backbone is unavailable offline. Fix: run once with network to fill the Hugging "
            f"Face cache, or pick 'upload a checkpoint' and give a local .safetensors file with the architecture "
            f"{model.split('.')[0]!r}, or choose a bundled backbone.")


def checkpoint_ref(arch: str, path: str | os.PathLike[str], filename: str) -> BackboneRef:
    """The reference of an uploaded checkpoint of the timm architecture ``arch``, labelled with its file name
    (:class:`CheckpointUploadError` once the pruning removed it: upload it again)."""
    a = timm_arch(arch)
    if is_checkpoint_upload(path):
        if not Path(path).is_file():
            raise CheckpointUploadError(f"the uploaded checkpoint {Path(filename).name!r} is no longer stored on the "
                                        f"server (unused for more than {UPLOAD_TTL_S / 3600:.0f} hours); upload it "
                                        f"again")
        touch_checkpoint_upload(path)
    return BackboneRef(f"{TIMM_PREFIX}{a}", str(path), label=f"{TIMM_PREFIX}{a} + {Path(filename).name}")


def load_ref(ref: BackboneRef, device: str | None = None) -> Backbone:
    """Create the backbone of ``ref`` (CUDA when present), marking an uploaded checkpoint as in use:
    BackboneUnavailableError at once for timm weights that cannot be had offline (:func:`offline_problem`),
    CheckpointError for a checkpoint that does not fit, ValueError for a bad name."""
    problem = offline_problem(ref.name, ref.weights)
    if problem:
        raise BackboneUnavailableError(problem)
    if ref.weights is not None and is_checkpoint_upload(ref.weights):
        touch_checkpoint_upload(ref.weights)
    return ref.create(device)
