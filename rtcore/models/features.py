"""Which layer of a network is the representation g: one home for the feature-layer names.

A backbone's features are one vector per image. Where they are read from is named by a string
(:attr:`rtcore.BackboneRef.feature_layer`, ``--feature-layer``):

* ``"pre_logits"``: what the classifier head reads. timm models: ``forward_head(forward_features(x),
  pre_logits=True)``; any other network: the input of its last ``nn.Linear`` (torchvision's ``fc``,
  ``classifier.N``, ``heads.head``), read by a forward pre-hook;
* ``"pooled"``: ``forward_features(x)`` averaged over its spatial positions (a CNN's (N, C, H, W)) or its
  tokens after the prefix (class) tokens (a ViT's (N, T, D)); for networks with ``forward_features``;
* ``"logits"``: the network's own output, ``net(x)``;
* any other string: the output of the submodule of that name (``net.get_submodule``, e.g. ``"layer3"``,
  ``"blocks.6"``), pooled the same way, read by a forward hook. The rest of the network is not run.

Each rule is a plain function (or a ``functools.partial`` of one with the module's name), so a
backbone's fingerprint (:func:`rtcore.models.identity.callable_identity`) covers which layer it reads.
"""

from __future__ import annotations

import functools
import torch
from torch import nn

from .wrapper import FeatureFn, _call_forward, _timm_pre_logits

__all__ = ["FEATURE_LAYERS", "feature_fn", "pool_tokens"]

#: the named feature layers; any other string names a submodule
FEATURE_LAYERS: tuple[str, ...] = ("pre_logits", "pooled", "logits")


class _Stop(Exception):
    """Raised by a hook once the wanted activation is read: the layers after it are not computed."""


def pool_tokens(f: torch.Tensor, prefix_tokens: int = 0) -> torch.Tensor:
    """One vector per image: (N, C, H, W) averaged over H and W; (N, T, D) averaged over the tokens after the
    first ``prefix_tokens``; (N, m) as it is."""
    if f.ndim == 4:
        return f.mean(dim=(2, 3))
    if f.ndim == 3:
        return f[:, prefix_tokens:].mean(dim=1)
    return f


def pooled_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``forward_features`` pooled by :func:`pool_tokens` (timm's prefix tokens left out)."""
    return pool_tokens(net.forward_features(x), int(getattr(net, "num_prefix_tokens", 0)))  # type: ignore[operator]


def _read_activation(net: nn.Module, x: torch.Tensor, module: str, inputs: bool) -> torch.Tensor:
    """The output (or, ``inputs=True``, the first input) of the submodule ``module`` for ``x``, pooled."""
    got: list[torch.Tensor] = []

    def keep(value: object) -> None:
        v = value[0] if isinstance(value, tuple) else value
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"module {module!r} gives a {type(v).__name__}, not a tensor; pick another feature "
                             f"layer")
        got.append(v)
        raise _Stop

    sub = net.get_submodule(module)
    handle = (sub.register_forward_pre_hook(lambda _m, a: keep(a)) if inputs
              else sub.register_forward_hook(lambda _m, _a, out: keep(out)))
    try:
        net(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not got:
        raise ValueError(f"module {module!r} is not used by the network's forward; pick another feature layer")
    return pool_tokens(got[0])


def module_output(net: nn.Module, x: torch.Tensor, *, module: str) -> torch.Tensor:
    """The output of the submodule ``module``, pooled by :func:`pool_tokens`."""
    return _read_activation(net, x, module, inputs=False)


def linear_input(net: nn.Module, x: torch.Tensor, *, module: str) -> torch.Tensor:
    """What the classifier ``module`` (an ``nn.Linear``) reads: the pre-logits features of a plain network."""
    return _read_activation(net, x, module, inputs=True)


def _last_linear(net: nn.Module) -> str | None:
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def feature_fn(net: nn.Module, layer: str) -> FeatureFn:
    """The feature function reading ``layer`` (see the module docstring) from ``net``; ValueError naming the
    valid choices when ``net`` has no such layer."""
    if not isinstance(layer, str) or not layer.strip():
        raise ValueError(f"feature_layer={layer!r} must be one of {list(FEATURE_LAYERS)} or a submodule's name")
    is_timm = callable(getattr(net, "forward_head", None)) and callable(getattr(net, "forward_features", None))
    if layer == "logits":
        return _call_forward
    if layer == "pre_logits":
        if is_timm:
            return _timm_pre_logits
        last = _last_linear(net)
        if last is None:
            raise ValueError(f"feature_layer='pre_logits': {type(net).__name__} has no nn.Linear classifier whose "
                             f"input could be read; name a submodule instead (e.g. {_some_modules(net)})")
        return functools.partial(linear_input, module=last)
    if layer == "pooled":
        if not callable(getattr(net, "forward_features", None)):
            raise ValueError(f"feature_layer='pooled' needs a network with forward_features (timm's); "
                             f"{type(net).__name__} has none: use 'pre_logits' or a submodule's name "
                             f"(e.g. {_some_modules(net)})")
        return pooled_features
    try:
        net.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"feature_layer={layer!r} is neither one of {list(FEATURE_LAYERS)} nor a submodule of "
                         f"{type(net).__name__} (its top-level modules: {_some_modules(net)})") from None
    return functools.partial(module_output, module=layer)


def _some_modules(net: nn.Module, k: int = 8) -> str:
    names = [n for n, _ in net.named_children()]
    return ", ".join(repr(n) for n in names[:k]) + (", ..." if len(names) > k else "") or "none"
