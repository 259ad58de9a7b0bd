"""A backbone reference: the one value that names a backbone (registry or timm name, weights, label).

A :class:`BackboneRef` is what a spec, a sweep, the CLI and the dashboard carry around; the
loaded :class:`~rtcore.models.wrapper.Backbone` (and its content fingerprint, which the cache keys
use) comes from :meth:`BackboneRef.create`. A user module that has no name to be created from is
referenced by :meth:`BackboneRef.of_module`: such a reference cannot be written to a spec file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .wrapper import Backbone

#: the ``name`` of a reference to a module given in Python (not creatable from a name)
MODULE_PREFIX = "module:"


@dataclass(frozen=True)
class BackboneRef:
    """``name``: a registry name or ``timm:<model>``; ``weights``: a local safetensors file loaded into
    that architecture; ``pretrained=False``: random weights; ``label``: the name shown in tables
    (default: the name, with the weights file's name when given)."""

    name: str
    weights: str | None = None
    pretrained: bool = True
    label: str | None = None
    #: for references to a given module: its fingerprint (the module itself is not part of the value)
    fingerprint: str | None = field(default=None, compare=True)

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
        """The name shown in tables and plots."""
        if self.label:
            return self.label
        if self.weights is not None:
            return f"{self.name}+{Path(self.weights).name}"
        return self.name

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
        return out
