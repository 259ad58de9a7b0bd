"""timm models by name (``"timm:<model>"``), with weights from a local file, the local cache or the hub.

Offline fails fast: before timm is asked for pretrained weights, the local Hugging Face
and torch-hub caches are checked (a hit is loaded from its file, with no network), then
whether the hub is reachable at all (one TCP connect, decided once per process and host
for a minute; ``HF_HUB_OFFLINE=1`` answers "no" at once). Only a reachable hub is
asked to download, so an offline machine gets :class:`BackboneUnavailableError` within
about 1.5 s instead of a minute of client retries.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BackboneUnavailableError, CheckpointError
from .checkpoints import (
    check_safetensors_file,
    check_state_dtypes,
    load_safetensors,
    load_state_dict_into,
    read_safetensors_header,
)
from .wrapper import INTERPOLATIONS, Backbone, _timm_pre_logits

TIMM_PREFIX = "timm:"
HUB_HOST = "huggingface.co"
HUB_TIMEOUT_S = 1.5
_HUB_STATUS: dict[str, tuple[float, bool]] = {}
_HUB_LOCK = threading.Lock()


def hub_offline_forced() -> bool:
    """``HF_HUB_OFFLINE`` is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(host: str = HUB_HOST, timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:443`` opens within ``timeout`` s (the answer is kept for 60 s)."""
    if hub_offline_forced():
        return False
    now = time.monotonic()
    with _HUB_LOCK:
        hit = _HUB_STATUS.get(host)
    if hit is not None and now - hit[0] < 60:
        return hit[1]
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.2)
    ok = bool(result and result[0])
    with _HUB_LOCK:
        _HUB_STATUS[host] = (now, ok)
    return ok


def cached_weights_file(model_name: str) -> Path | None:
    """The local file holding timm's pretrained weights for ``model_name``, if already on this machine."""
    try:
        import timm
        import torch
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # noqa: BLE001 - an unknown name or config: nothing cached
        return None
    if cfg is None:
        return None
    if getattr(cfg, "file", None) and Path(cfg.file).is_file():
        return Path(cfg.file)
    hub = getattr(cfg, "hf_hub_id", None)
    if hub:
        hit = try_to_load_from_cache(hub, "model.safetensors")
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    url = getattr(cfg, "url", None)
    if url:
        p = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if p.is_file() and p.suffix == ".safetensors":
            return p
    return None


def hub_weights_cached(repo_id: str) -> bool:
    """Whether ``model.safetensors`` of the Hugging Face repo ``repo_id`` is in the local cache
    (a file-system lookup: neither timm nor the network is touched)."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, "model.safetensors")
    return isinstance(hit, str) and Path(hit).is_file()


def timm_weights_available_offline(model_name: str, hub_only: bool = False) -> bool:
    """Whether ``timm:<model_name>`` can be created with pretrained weights and no network.

    ``hub_only``: the model's only loadable weights are ``model.safetensors`` of the repo
    ``timm/<model_name>`` (true of :data:`rtcore.models.registry.TIMM_EXAMPLES`, tested), so the
    answer needs no timm import (about a second at start-up)."""
    if hub_only:
        return hub_weights_cached(f"timm/{model_name}")
    return cached_weights_file(model_name) is not None


def _timm_hf_file(model_name: str) -> str:
    """Where timm would look for the pretrained weights, for error messages."""
    try:
        import timm

        cfg = timm.models.get_pretrained_cfg(model_name)
        hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if hub:
            return f"'model.safetensors' of the Hugging Face repo '{hub}'"
        url = getattr(cfg, "url", None) if cfg is not None else None
        if url:
            return f"the file {url}"
    except Exception:  # noqa: BLE001 - only used to improve a message
        pass
    return f"the pretrained weights of '{model_name}'"


def _unavailable(model_name: str, why: str) -> BackboneUnavailableError:
    return BackboneUnavailableError(
        f"pretrained weights for timm model {model_name!r} are not available: timm needs "
        f"{_timm_hf_file(model_name)}, which is not in the local cache "
        f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}), and {why}. "
        f"Fix: run once with network to fill the cache, or download the file elsewhere and pass "
        f"weights='/path/model.safetensors' (CLI: --weights), or use pretrained=False (CLI: --no-pretrained) "
        f"for random weights."
    )


def check_timm_name(model_name: str) -> str:
    """``model_name`` if timm knows it, else ValueError naming it."""
    import timm

    if not model_name or not (timm.is_model(model_name.split(".")[0]) or timm.is_model(model_name)):
        raise ValueError(f"timm has no model {model_name!r}; see timm.list_models() for names (e.g. 'resnet18.a1_in1k')")
    return model_name


def _file_num_classes(model_name: str, path: Path) -> int | None:
    """The rows of the classifier stored in ``path`` (timm's ``classifier`` key of the model's pretrained config),
    so a checkpoint of a 10-class model loads with its own head; None when the file has no such tensor."""
    try:
        import timm

        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # noqa: BLE001 - no config: leave the head as timm builds it
        return None
    names = getattr(cfg, "classifier", None) if cfg is not None else None
    for name in ([names] if isinstance(names, str) else list(names or ()))[:1]:
        info = read_safetensors_header(path).get(f"{name}.weight")
        shape = info.get("shape") if isinstance(info, dict) else None
        if isinstance(shape, list) and len(shape) == 2:
            return int(shape[0])
    return None


def _create_from_file(model_name: str, path: Path, model_kwargs: dict[str, Any]) -> Any:
    import timm

    if "num_classes" not in model_kwargs:
        rows = _file_num_classes(model_name, path)
        if rows is not None:
            model_kwargs = {**model_kwargs, "num_classes": rows}
    overlay: dict[str, Any] = {"file": str(path)}
    if "num_classes" in model_kwargs:
        overlay["num_classes"] = model_kwargs["num_classes"]
    try:
        net = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **model_kwargs)
    except (RuntimeError, KeyError, ValueError) as e:
        # name the missing, unexpected and mis-shaped keys against a randomly initialised model
        bare = timm.create_model(model_name, pretrained=False, **model_kwargs)
        load_state_dict_into(bare, load_safetensors(path), str(path))
        raise CheckpointError(
            f"checkpoint {path.name!r} does not match timm model {model_name!r}: {str(e).splitlines()[0][:500]}"
        ) from e
    # timm casts what it loads: refuse integer tensors that went into float weights (and the reverse)
    check_state_dtypes(net, {k: str(v["dtype"]) for k, v in read_safetensors_header(path).items()}, str(path))
    return net


def create_timm_backbone(
    model_name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str | None = None,
    card: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> Backbone:
    """A timm model as a backbone: features are ``forward_head(forward_features(x), pre_logits=True)``.

    ``weights`` is a local safetensors file loaded through timm's own pretrained path
    (``pretrained_cfg_overlay=dict(file=...)``); without it, ``pretrained=True`` uses the
    local cache, or downloads when the hub is reachable. The preprocessing is timm's eval transform,
    from its data config (``timm.data.resolve_model_data_config``): mean, std and input size (unless
    given), the interpolation (bicubic for most models), the centre crop (``crop_pct``) and
    antialiasing (timm resizes with PIL, which antialiases). A ``crop_mode`` other than ``center``
    resizes straight to the input size. A model with a ``card`` (trained by :mod:`rtcore.train`) keeps the
    transform it was trained with: a plain bilinear resize to its input size.
    """
    import timm
    from timm.data import resolve_model_data_config

    check_timm_name(model_name)
    if weights is not None:
        path = check_safetensors_file(weights)
        net = _create_from_file(model_name, path, model_kwargs)
        source = f"timm {model_name} with weights {path}"
    elif pretrained:
        cached = cached_weights_file(model_name)
        if cached is not None:
            net = _create_from_file(model_name, cached, model_kwargs)
        elif hub_offline_forced():
            raise _unavailable(model_name, "HF_HUB_OFFLINE is set")
        elif not hub_reachable():
            raise _unavailable(model_name, f"{HUB_HOST} cannot be reached from this machine")
        else:
            try:
                net = timm.create_model(model_name, pretrained=True, **model_kwargs)
            except Exception as e:  # noqa: BLE001 - any hub failure becomes one clear message
                raise _unavailable(model_name, f"the download failed ({type(e).__name__}: "
                                               f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
        source = f"timm {model_name} (pretrained)"
    else:
        net = timm.create_model(model_name, pretrained=False, **model_kwargs)
        source = f"timm {model_name} (random init)"
    cfg = resolve_model_data_config(net)
    center = cfg.get("crop_mode", "center") == "center"
    # a model rtcore trained (it has a card) keeps the transform it was trained with: a plain bilinear resize
    resize: dict[str, Any] = {} if card is not None else dict(
        interpolation=cfg["interpolation"] if cfg.get("interpolation") in INTERPOLATIONS else "bilinear",
        crop_pct=float(cfg["crop_pct"]) if center and cfg.get("crop_pct") else None, antialias=True)
    return Backbone(
        net,
        name=name or f"{TIMM_PREFIX}{model_name}",
        input_size=input_size or cfg["input_size"],
        mean=mean or cfg["mean"],
        std=std or cfg["std"],
        features=_timm_pre_logits,
        card=card,
        source=source,
        **resize,
    )
