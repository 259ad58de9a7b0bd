"""A backbone reference: the one value that names a backbone (registry, timm or torchvision name, weights,
label) and how images reach it (input size, interpolation, crop, mean/std) and where its features are read.

A :class:`BackboneRef` is what a spec, a sweep, the CLI and the dashboard carry around; the
loaded :class:`~rtcore.models.wrapper.Backbone` (and its content fingerprint, which the cache keys
use) comes from :meth:`BackboneRef.create`. A user module that has no name to be created from is
referenced by :meth:`BackboneRef.of_module`: such a reference cannot be written to a spec file.

The preprocessing fields (:data:`PREPROCESSING_FIELDS`) default to None: the model's own (timm's
data config with its bicubic interpolation and centre crop, torchvision's weights transform, a
bundled model's card). Each one set is applied with :meth:`Backbone.with_preprocessing` and enters
the backbone's fingerprint (so the cache never mixes results), its display name and :meth:`to_dict`.
Each field declares its help and whether a sweep may vary it in its ``dataclasses.field`` metadata,
from which the spec file keys, the flags and the sweep axes are derived.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .features import FEATURE_LAYERS, feature_fn
from .wrapper import INTERPOLATIONS, Backbone, check_preprocessing

#: the ``name`` of a reference to a module given in Python (not creatable from a name)
MODULE_PREFIX = "module:"


@dataclass(frozen=True)
class BackboneRef:
    """``name``: a registry name or ``timm:<model>``; ``weights``: a local safetensors file loaded into
    that architecture; ``pretrained=False``: random weights; ``label``: the name shown in tables
    (default: the name, with the weights file's name when given)."""

    name: str = field(metadata={"help": "registry name or timm:<model> (see `python -m rtcore list`)", "key": "backbone",
                                "required": True})
    weights: str | None = field(default=None, metadata={"help": "local safetensors weights for the backbone's "
                                                                "architecture"})
    pretrained: bool = field(default=True, metadata={"help": "the pretrained weights (--no-pretrained: the "
                                                             "architecture with random weights)", "kind": "flag"})
    label: str | None = field(default=None, metadata={"help": "the backbone's name in the tables (default: its "
                                                              "registry name)", "digest": False})
    #: for references to a given module: its fingerprint (the module itself is not part of the value)
    fingerprint: str | None = field(default=None, compare=True)
    # -- preprocessing and feature layer: None (the default) is the model's own (timm's data config, torchvision's
    # -- weights transform, the model card); each one set changes the backbone's fingerprint
    input_size: tuple[int, int] | None = field(default=None, metadata={
        "help": "the image size the network takes, H W or one number (default: the model's)", "kind": "list",
        "sweep": True})
    interpolation: str | None = field(default=None, metadata={
        "help": "how images are resized to the input size: bilinear or bicubic (default: the model's)",
        "kind": "choice", "choices": lambda: INTERPOLATIONS, "sweep": True})
    crop_pct: float | None = field(default=None, metadata={
        "help": "resize to size/crop_pct, then crop the centre, as timm's eval transform (default: the model's)",
        "kind": "number", "sweep": True})
    antialias: bool | None = field(default=None, metadata={
        "help": "antialias when shrinking, as PIL does (default: the model's)", "kind": "flag", "sweep": False})
    mean: tuple[float, ...] | None = field(default=None, metadata={
        "help": "per-channel mean subtracted inside the backbone (default: the model's)", "kind": "list",
        "sweep": False})
    std: tuple[float, ...] | None = field(default=None, metadata={
        "help": "per-channel std divided by inside the backbone (default: the model's)", "kind": "list",
        "sweep": False})
    normalize: bool = field(default=True, metadata={
        "help": "mean/std inside the backbone (--no-normalize: none, the network normalises itself)",
        "kind": "flag", "sweep": False})
    feature_layer: str | None = field(default=None, metadata={
        "help": "where features are read: pre_logits, pooled, logits or a module name such as layer3 "
                "(default: the model's)", "sweep": True})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"backbone={self.name!r} must be a registry name or 'timm:<model>' "
                             f"(see `python -m rtcore list`)")
        if not isinstance(self.pretrained, bool):
            raise ValueError(f"pretrained={self.pretrained!r} must be true or false")
        if self.label is not None and (not isinstance(self.label, str) or not self.label.strip()):
            raise ValueError(f"label={self.label!r} must be a non-empty name, or left out")
        if self.weights is not None:
            if not isinstance(self.weights, (str, os.PathLike)) or not str(self.weights).strip():
                raise ValueError(f"weights={self.weights!r} must be the path of a .safetensors file")
            object.__setattr__(self, "weights", str(self.weights))
            if not self.pretrained:
                raise ValueError("give either weights=<file> (--weights) or pretrained=False (--no-pretrained), "
                                 "not both")
        for name, value in _checked_preprocessing(self).items():
            object.__setattr__(self, name, value)

    @classmethod
    def of_module(cls, g: Backbone) -> BackboneRef:
        """A reference to an already created backbone (identified by its fingerprint)."""
        return cls(f"{MODULE_PREFIX}{g.name}", label=g.name, fingerprint=g.fingerprint())

    @property
    def is_module(self) -> bool:
        """True for a reference to a module given in Python (it cannot be created from its name)."""
        return self.name.startswith(MODULE_PREFIX)

    @property
    def display(self) -> str:
        """The name shown in tables and plots (the preprocessing set, in brackets, after the name)."""
        if self.label:
            return self.label
        base = self.name if self.weights is None else f"{self.name}+{Path(self.weights).name}"
        pre = self.preprocessing()
        if not pre:
            return base
        return f"{base}[{', '.join(f'{k}={_text(v)}' for k, v in pre.items())}]"

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing and feature-layer fields set (not the model's own), in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name in PREPROCESSING_FIELDS and getattr(self, f.name) != f.default}

    def create(self, device: str | torch.device | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
               use_cache: bool = True) -> Backbone:
        """Create the backbone (CUDA when present unless ``device`` is given), named ``label`` when one is given;
        ``cache_dir`` / ``use_cache``: where converted weights may be kept (see :func:`create_backbone`)."""
        if self.is_module:
            raise ValueError(f"backbone {self.display!r} was given as a module; pass the module itself "
                             f"(it cannot be re-created from its name)")
        from .registry import create_backbone

        g = create_backbone(self.name, device, pretrained=self.pretrained, weights=self.weights, cache_dir=cache_dir,
                            use_cache=use_cache)
        pre = self.preprocessing()
        if pre:
            layer = pre.pop("feature_layer", None)
            g = g.with_preprocessing(**pre, features=None if layer is None else feature_fn(g.net, layer))
        if self.label:
            g.name = self.label
        return g

    def to_dict(self) -> dict[str, Any]:
        """The fields a spec file holds (no label when it is the default, no module references)."""
        if self.is_module:
            raise ValueError(f"backbone {self.display!r} is a module given in Python and cannot be written to a "
                             f"spec file; register it with rtcore.register_backbone and refer to it by name")
        out: dict[str, Any] = {"backbone": self.name}
        if self.weights is not None:
            out["weights"] = self.weights
        if not self.pretrained:
            out["pretrained"] = False
        if self.label:
            out["label"] = self.label
        for k, v in self.preprocessing().items():
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackboneRef:
        """The reference a spec file's keys describe (:meth:`to_dict`'s inverse); ValueError naming an unknown key."""
        keys = {"backbone": "name", **{f.name: f.name for f in fields(cls) if f.name not in ("name", "fingerprint")}}
        unknown = sorted(set(data) - set(keys))
        if unknown:
            raise ValueError(f"unknown backbone keys {unknown}; valid keys: {sorted(keys)}")
        if "backbone" not in data:
            raise ValueError("a backbone entry needs 'backbone' (its registry name, timm:<model> or "
                             "torchvision:<model>)")
        return cls(**{keys[k]: v for k, v in data.items()})


#: the fields that change how images reach the network and where its features are read
PREPROCESSING_FIELDS: tuple[str, ...] = ("input_size", "interpolation", "crop_pct", "antialias", "mean", "std",
                                         "normalize", "feature_layer")


def _text(v: object) -> str:
    """A field's value in a display name: sizes as ``224x224``, numbers as ``0.5,0.5,0.5``."""
    if not isinstance(v, tuple):
        return str(v)
    return "x".join(map(str, v)) if all(isinstance(x, int) for x in v) else ",".join(f"{x:g}" for x in v)


def _numbers(name: str, value: object, kind: type) -> tuple[Any, ...]:
    """A tuple of ``kind`` from a number, a sequence of numbers or numeric texts, or a text "a,b" / "a b" / "HxW"."""
    items = value.replace(",", " ").replace("x", " ").split() if isinstance(value, str) else \
        [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        out = tuple(kind(x) if not isinstance(x, bool) else None for x in items)  # type: ignore[union-attr]
        if any(x is None for x in out) or (kind is int and any(float(x) != float(y) for x, y in zip(out, items))):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be {'whole numbers' if kind is int else 'numbers'}, e.g. "
                         f"{'224 or [224, 224]' if kind is int else '[0.485, 0.456, 0.406]'}") from None
    return out


def _checked_preprocessing(ref: BackboneRef) -> dict[str, Any]:
    """The preprocessing fields of ``ref`` in canonical form (tuples, floats); ValueError naming a bad one."""
    out: dict[str, Any] = {}
    if ref.input_size is not None:
        size = _numbers("input_size", ref.input_size, int)
        if len(size) not in (1, 2) or min(size) < 1:
            raise ValueError(f"input_size={ref.input_size!r} must be one or two positive sizes (H W), e.g. 224")
        out["input_size"] = size * 2 if len(size) == 1 else size
    for name in ("mean", "std"):
        value = getattr(ref, name)
        if value is not None:
            v = _numbers(name, value, float)
            if len(v) not in (1, 3) or not all(math.isfinite(x) for x in v) or (name == "std" and min(v) <= 0):
                raise ValueError(f"{name}={value!r} must be 1 or 3 finite numbers{' above 0' if name == 'std' else ''}"
                                 f", one per channel")
            out[name] = v
    if not isinstance(ref.normalize, bool):
        raise ValueError(f"normalize={ref.normalize!r} must be true or false")
    if not ref.normalize and (ref.mean is not None or ref.std is not None):
        raise ValueError("normalize=false (--no-normalize) takes no mean or std; give one or the other")
    if ref.crop_pct is not None:
        try:
            out["crop_pct"] = float(ref.crop_pct)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            out["crop_pct"] = ref.crop_pct
    check_preprocessing(ref.interpolation or "bilinear", out.get("crop_pct"),
                        False if ref.antialias is None else ref.antialias)
    if ref.feature_layer is not None and (not isinstance(ref.feature_layer, str) or not ref.feature_layer.strip()):
        raise ValueError(f"feature_layer={ref.feature_layer!r} must be one of {list(FEATURE_LAYERS)} or a module "
                         f"name such as 'layer3'")
    if ref.is_module and any(getattr(ref, k) != BackboneRef.__dataclass_fields__[k].default
                             for k in PREPROCESSING_FIELDS):
        raise ValueError("a backbone given as a module takes its preprocessing from the module; set it with "
                         "Backbone.with_preprocessing, not on the reference")
    return out
