"""Loading a :class:`rtcore.models.ref.BackboneRef` for the dashboard, and the checkpoint uploads of its
sidebar (stored, checked and pruned by :mod:`rtcore.models.uploads`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rtcore import Backbone, BackboneUnavailableError
from rtcore.models import TIMM_PREFIX
from rtcore.models.ref import BackboneRef
from rtcore.models.uploads import UPLOAD_TTL_S, offline_problem, timm_arch
from rtcore.models.uploads import CheckpointUploadError as UploadError
from rtcore.models.uploads import checkpoint_upload_dir as upload_dir
from rtcore.models.uploads import is_checkpoint_upload as _uploaded
from rtcore.models.uploads import prune_checkpoint_uploads as prune_uploads
from rtcore.models.uploads import save_checkpoint_upload as save_upload
from rtcore.models.uploads import touch_checkpoint_upload as touch_upload

__all__ = ["UploadError", "describe_device", "load_backbone", "prune_uploads", "save_upload", "touch_upload",
           "upload_dir", "upload_ref"]


def upload_ref(arch: str, path: str | os.PathLike[str], filename: str) -> BackboneRef:
    """The reference of an uploaded checkpoint for a timm architecture."""
    a = timm_arch(arch)
    if _uploaded(path):
        if not Path(path).is_file():
            raise UploadError(f"the uploaded checkpoint {Path(filename).name!r} is no longer stored on the server "
                              f"(unused for more than {UPLOAD_TTL_S / 3600:.0f} hours); upload it again")
        touch_upload(path)
    return BackboneRef(f"{TIMM_PREFIX}{a}", str(path), label=f"{TIMM_PREFIX}{a} + {Path(filename).name}")


def load_backbone(ref: BackboneRef, device: str | torch.device | None = None) -> Backbone:
    """Create the backbone of ``ref`` (CUDA when present): BackboneUnavailableError at once for timm weights
    that cannot be had offline, CheckpointError for a checkpoint that does not fit, ValueError for a bad name."""
    problem = offline_problem(ref.name, ref.weights)
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
