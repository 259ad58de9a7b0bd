"""The transfer methods and the fine-tuning recipe, with the checks that name a bad value and its fix."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from ..registry import Registry

@dataclass(frozen=True)
class TransferMethod:
    """A transfer method: what it trains (``none``: the backbone stays frozen, ``all`` its parameters,
    ``last-k`` its last k blocks), how it initialises the head it fine-tunes (``head_init``: None,
    ``zeros`` or ``probe``) and whether it fits the linear probe (whose kind then matters)."""

    name: str
    description: str
    trains: Literal["none", "all", "last-k"]
    head_init: str | None
    uses_probe: bool


_METHODS: Registry[TransferMethod] = Registry("transfer method")


def register_transfer(method: TransferMethod, *, overwrite: bool = False) -> TransferMethod:
    """Add a transfer method (its training is :func:`rtcore.transfer.adapt`'s: ``trains`` says which parameters)."""
    return _METHODS.register(method, overwrite=overwrite)


def list_transfers() -> list[str]:
    """The transfer methods: ``lp``, ``ft``, ``lp-ft``, ``ft-last-k``."""
    return _METHODS.names()


def transfer_info(name: object) -> TransferMethod:
    """The entry of a transfer method (ValueError naming the valid ones if unknown)."""
    return _METHODS.info(name)


for _m in (
    TransferMethod("lp", "linear probe on the frozen base backbone (the backbone is unchanged)", "none", None, True),
    TransferMethod("ft", "full fine-tuning: every parameter of g and a fresh zero-initialised head", "all", "zeros",
                   False),
    TransferMethod("lp-ft", "fit the linear probe first, then fine-tune every parameter of g with the head "
                            "initialised from it", "all", "probe", True),
    TransferMethod("ft-last-k", "fine-tune only the last k blocks of g with a fresh zero-initialised head (the rest "
                                "stays frozen)", "last-k", "zeros", False),
):
    register_transfer(_m)

#: the registry read as old names (kept for compatibility; entries registered later appear in the views)
TRANSFER_METHODS: tuple[str, ...] = tuple(list_transfers())
METHOD_DESCRIPTIONS: Mapping[str, str] = _METHODS.view("description")
HEAD_INIT: Mapping[str, str | None] = _METHODS.view("head_init")
USES_PROBE: Mapping[str, bool] = _METHODS.view("uses_probe")

Optimizer = Literal["adamw", "sgd"]


def check_method(method: object) -> str:
    """``method`` if it is a registered transfer method, else ValueError naming it and the choices."""
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"transfer method {method!r} is unknown; use one of {list_transfers()} "
                         f"(e.g. method='ft-last-k', k=2 to fine-tune the last two blocks)")
    return method


def method_label(method: str, k: int | None) -> str:
    """``ft-last-2`` for ``ft-last-k`` with k = 2, else the method name."""
    return f"ft-last-{k}" if transfer_info(method).trains == "last-k" else method


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"FineTuneRecipe {name}={value!r} must be an int >= 1")
    return value


def _nonneg_float(name: str, value: object, positive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):  # type: ignore[operator]
        want = "> 0" if positive else ">= 0"
        raise ValueError(f"FineTuneRecipe {name}={value!r} must be a finite number {want}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FineTuneRecipe:
    """How ``ft``, ``lp-ft`` and ``ft-last-k`` train: small and deterministic on purpose.

    ``epochs`` over the task's train split in a seeded shuffle (``seed``; None: the ``seed`` given
    to :func:`rtcore.transfer.adapt`), mini-batches of ``batch_size``, cross-entropy of the linear
    head on g's features. ``optimizer``: ``"adamw"`` (decoupled weight decay) or ``"sgd"`` (with
    ``momentum``; weight decay added to the gradient). The learning rate follows a cosine from
    ``lr`` to 0 over all steps, computed from the global step (so a resumed run gets the same
    schedule); the head learns at ``lr * head_lr_scale`` (a fresh head has far to go, the
    pretrained weights only a little). Every BatchNorm keeps its running statistics (the network
    runs in eval mode; dropout is off), so batches do not interact and frozen parts stay
    bit-identical. The defaults fine-tune a bundled SmallCNN on a 3000-image task in about 25 s
    on two CPU cores.
    """

    epochs: int = field(default=3, metadata={"help": "passes over the task's train split", "kind": "number"})
    batch_size: int = field(default=128, metadata={"help": "training images per step", "kind": "number"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (cosine to 0)", "kind": "number"})
    weight_decay: float = field(default=1e-4, metadata={"help": "weight decay", "kind": "number"})
    optimizer: Optimizer = field(default="adamw", metadata={"help": "adamw or sgd", "kind": "choice",
                                                             "choices": lambda: ("adamw", "sgd")})
    momentum: float = field(default=0.9, metadata={"help": "sgd only: momentum", "kind": "number"})
    head_lr_scale: float = field(default=10.0, metadata={"help": "the head's learning rate / lr", "kind": "number"})
    #: None: the seed given to :func:`rtcore.transfer.adapt` (a spec's ``seed``); not a spec field
    seed: int | None = None

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _nonneg_float("lr", self.lr, positive=True)
        _nonneg_float("weight_decay", self.weight_decay)
        _nonneg_float("head_lr_scale", self.head_lr_scale, positive=True)
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"FineTuneRecipe optimizer={self.optimizer!r} is unknown; use 'adamw' or 'sgd'")
        if not 0 <= _nonneg_float("momentum", self.momentum) < 1:
            raise ValueError(f"FineTuneRecipe momentum={self.momentum!r} must be in [0, 1)")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"FineTuneRecipe seed={self.seed!r} must be a non-negative int or None (use adapt's seed)")

    def resolved(self, seed: int) -> FineTuneRecipe:
        """The recipe with its seed filled in from ``adapt``'s ``seed`` when it has none."""
        return self if self.seed is not None else replace(self, seed=seed)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_k(k: object, n_blocks: int, backbone: str, block_names: list[str]) -> int:
    """``k`` if it is an int in ``1..n_blocks``, else ValueError naming it, the blocks and the fix."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_blocks:
        raise ValueError(f"k={k!r} is out of range for backbone {backbone!r}: it has {n_blocks} blocks "
                         f"{block_names}; use k in 1..{n_blocks} (k={n_blocks} trains every block, "
                         f"or use method='ft')")
    return k
