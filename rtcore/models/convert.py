"""Converting a PyTorch checkpoint into a safetensors file a backbone loads (``python -m rtcore convert``).

Checkpoints as they are published: RobustBench's ``{"state_dict": {"module." + key: ...}}``, a
DataParallel/DDP model's ``module.`` prefix, ``torch.compile``'s ``_orig_mod.``, a training script's
``{"model": ..., "epoch": ..., "optimizer": ...}``, an input-normalisation layer (``mu``/``sigma``,
``normalize.mean``/``normalize.std``) in front of the network. :func:`convert_checkpoint`:

1. reads the file with ``torch.load(weights_only=True)`` only (a safetensors file with safetensors):
   a pickle that needs more is refused, naming the fix; the file's size is checked against the input
   memory budget first (:mod:`rtcore.budget`);
2. finds the state dict (the top level, or under :data:`NESTED_KEYS`, or the ``key=`` given);
3. takes out the normalisation tensors (:data:`NORMALISATION_NAMES`, at most 3 values each) and reports
   them as the mean/std to give the backbone reference (``--mean``/``--std``): the architecture has no
   place for them;
4. strips the leading name components that all keys share and the architecture does not have
   (``module.``, ``model.``, ``_orig_mod.``), floating tensors to float32;
5. loads the result into the named backbone exactly as an evaluation will (``weights=``: strict keys,
   shapes and dtypes) and only then writes ``dst`` atomically. Nothing is written on any error.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import TMP_PREFIX, atomic_write, not_a_file
from ..budget import input_budget
from ..errors import CheckpointError

__all__ = ["NESTED_KEYS", "NORMALISATION_NAMES", "ConvertReport", "convert_checkpoint", "read_checkpoint"]

#: where training scripts and RobustBench keep the state dict inside a checkpoint, in the order looked at
NESTED_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net", "network", "module", "ema")
#: last name components of input-normalisation tensors, and whether each is a mean or a std
NORMALISATION_NAMES: dict[str, str] = {"mu": "mean", "mean": "mean", "sigma": "std", "std": "std"}


@dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert_checkpoint` did. ``found_at``: the keys leading to the state dict (empty: the top
    level); ``stripped``: the name prefixes removed; ``tensors``: how many were written; ``cast``: floating
    tensors converted to float32; ``mean``/``std``: the normalisation found (give it to the backbone
    reference), with ``normalisation_keys`` the tensors it came from; ``ignored``: other top-level entries."""

    src: str
    dst: str
    backbone: str
    found_at: tuple[str, ...] = ()
    stripped: tuple[str, ...] = ()
    tensors: int = 0
    cast: int = 0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalisation_keys: tuple[str, ...] = ()
    ignored: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def read_checkpoint(src: str | os.PathLike[str]) -> Any:
    """The object in a checkpoint file: safetensors read as such, anything else with
    ``torch.load(weights_only=True)``; CheckpointError naming the file and the fix otherwise."""
    p = Path(src).expanduser()
    problem = not_a_file(p)
    if problem:
        raise CheckpointError(f"checkpoint {str(p)!r} {problem}; give the .pt/.pth/.ckpt/.safetensors file")
    budget = input_budget().bytes_problem(f"checkpoint {p.name!r}", p.stat().st_size)
    if budget:
        raise CheckpointError(budget)
    if p.suffix == ".safetensors":
        from .checkpoints import load_safetensors

        return load_safetensors(p)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, a zip or a pickle that is not torch's: one message
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {p.name!r} cannot be read with torch.load(weights_only=True), the only way rtcore reads "
            f"pickles ({first}). It holds Python objects besides tensors (an optimizer, a config class, a whole "
            f"model). Fix: where you trust the file, load it and save the weights alone: "
            f"torch.save(model.state_dict(), 'weights.pt'), then convert that") from None


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) for k in obj) and \
        all(isinstance(v, torch.Tensor) for v in obj.values())


def _find_state_dict(obj: Any, key: str | None, name: str) -> tuple[Mapping[str, torch.Tensor], tuple[str, ...]]:
    """The state dict inside ``obj`` and the keys leading to it."""
    path: list[str] = []
    if key is not None:
        for part in key.split("."):
            if not isinstance(obj, Mapping) or part not in obj:
                have = sorted(map(str, obj))[:12] if isinstance(obj, Mapping) else type(obj).__name__
                raise CheckpointError(f"checkpoint {name!r} has no entry {part!r} on the path key={key!r} (found: "
                                      f"{have})")
            obj, path = obj[part], [*path, part]
    while not _is_state_dict(obj):
        nested = next((k for k in NESTED_KEYS if isinstance(obj, Mapping) and k in obj), None)
        if nested is None:
            where = ".".join(path) or "the top level"
            have = sorted(map(str, obj))[:12] if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
            raise CheckpointError(f"checkpoint {name!r}: no state dict (names -> tensors) at {where} or under "
                                  f"{list(NESTED_KEYS)} (found: {have}). Fix: name where it is with key= (--key), "
                                  f"e.g. key='{have[0] if isinstance(have, list) and have else 'model'}'")
        obj, path = obj[nested], [*path, nested]
    return obj, tuple(path)


def _take_normalisation(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, tuple[str, torch.Tensor]]:
    """Remove and return ``{"mean"|"std": (key, values)}``: small tensors named like a normalisation
    (:data:`NORMALISATION_NAMES`) that the architecture has no place for."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    for k in list(state):
        role = NORMALISATION_NAMES.get(k.rsplit(".", 1)[-1])
        has_place = k in own or any(k.endswith("." + o) for o in own)  # e.g. module.norm.mean for norm.mean
        if role and not has_place and state[k].numel() in (1, 3) and role not in out:
            out[role] = (k, state.pop(k).flatten().to(torch.float64))
    return out


def _strip_prefixes(state: dict[str, torch.Tensor], own: set[str]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Remove leading components every key shares while that matches more of the architecture's keys."""
    stripped: list[str] = []
    while state:
        heads = {k.split(".", 1)[0] for k in state}
        if len(heads) != 1 or any("." not in k for k in state):
            break
        head = next(iter(heads))
        shorter = {k.split(".", 1)[1]: v for k, v in state.items()}
        if len(own & set(shorter)) <= len(own & set(state)):
            break
        state, stripped = shorter, [*stripped, head + "."]
    return state, tuple(stripped)


def _architecture_keys(backbone: str) -> set[str]:
    from .registry import create_backbone

    try:
        g = create_backbone(backbone, "cpu", pretrained=False)
    except ValueError as e:
        if "pretrained" not in str(e):
            raise
        g = create_backbone(backbone, "cpu")  # a registered factory: its own weights, the keys are what count
    return set(g.net.state_dict())


def convert_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], backbone: str, *,
                       key: str | None = None) -> ConvertReport:
    """Convert the checkpoint ``src`` into ``dst`` (a ``.safetensors`` file) for the backbone ``backbone`` (a
    registry name, ``timm:<model>`` or ``torchvision:<model>``); see the module docstring for each step.

    ``key``: where the state dict is inside the checkpoint (dotted, e.g. ``"ema.model"``) when it is not found
    on its own. Returns a :class:`ConvertReport`; raises :class:`CheckpointError` naming the file and the fix
    (and writes nothing) when the file cannot be read safely or does not load strictly into the backbone.
    """
    from .checkpoints import load_safetensors
    from .registry import check_backbone_name, create_backbone

    check_backbone_name(backbone)
    out = Path(dst).expanduser()
    if out.suffix != ".safetensors":
        raise ValueError(f"dst={str(dst)!r} must end in .safetensors (the only format rtcore loads weights from)")
    if out.exists() and not out.is_file():
        raise ValueError(f"dst={str(dst)!r} exists and is not a file; give the path of the .safetensors to write")
    name = Path(src).name
    obj = read_checkpoint(src)
    found, path = _find_state_dict(obj, key, name)
    ignored = tuple(sorted(str(k) for k in obj if k != path[0])) if path and isinstance(obj, Mapping) else ()
    own = _architecture_keys(backbone)
    state = dict(found)
    norm = _take_normalisation(state, own)
    state, stripped = _strip_prefixes(state, own)
    cast = sum(1 for v in state.values() if v.is_floating_point() and v.dtype != torch.float32)
    tensors = {k: (v.float() if v.is_floating_point() else v).contiguous().clone() for k, v in state.items()}
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=TMP_PREFIX) as tmp:
        candidate = Path(tmp) / out.name
        meta = {"converted_from": name, "found_at": ".".join(path), "stripped": json.dumps(stripped)}
        save_file(tensors, str(candidate), metadata=meta)
        try:
            create_backbone(backbone, "cpu", weights=candidate)  # strict, as an evaluation loads it
        except CheckpointError as e:
            raise CheckpointError(f"{name} (state dict at {'.'.join(path) or 'the top level'}, prefixes stripped: "
                                  f"{list(stripped) or 'none'}) does not load into {backbone}: {e}") from None
        load_safetensors(candidate)  # the written bytes read back
        atomic_write(out, lambda tmp_path: shutil.copyfile(candidate, tmp_path))
    mean, std = norm.get("mean"), norm.get("std")
    return ConvertReport(str(src), str(out), backbone, path, stripped, len(tensors), cast,
                         None if mean is None else tuple(mean[1].tolist()),
                         None if std is None else tuple(std[1].tolist()),
                         tuple(v[0] for v in norm.values()), ignored)
