"""Backbones shipped inside installed third-party packages, converted once to safetensors.

``autoattack-resnet18-cifar10``: the CIFAR-10 ResNet-18 that pyautoattack 0.2.0 ships as its
example model (``pyautoattack/examples/model_test.pt``, architecture ``ResNet18`` in
``pyautoattack/examples/resnet.py``). Nothing is downloaded: the architecture file and the
weights come from the installed package. On first use the pickled state dict is checked against
its known sha256, read with ``torch.load(..., weights_only=True)`` (tensors only, no code) and
written as safetensors to ``<cache_dir>/converted/`` (atomic write; the cache folder the caller
gives, else the default one) with a sidecar JSON holding both digests. Every later load re-hashes
the converted file and compares it with the sidecar; a file that does not match is converted
again. With ``use_cache=False``, or a cache folder that cannot be written (a warning is logged),
the conversion is done in memory and nothing is written. Features are the penultimate layer (512-d, after the
global average pooling), inputs 3x32x32 in [0, 1] with no normalisation (the package's
example feeds ``ToTensor()`` images straight in); Fashion-MNIST images are repeated to three
channels and resized to 32x32 by the :class:`Backbone` wrapper.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_write, file_sha256
from .._packages import AUTOATTACK_INSTALL_HINT as INSTALL_HINT
from .._packages import AUTOATTACK_PACKAGE as PACKAGE
from .._packages import AUTOATTACK_VERSION as PACKAGE_VERSION
from .._packages import autoattack_available as package_available
from ..config import resolve_cache_dir
from ..errors import BackboneUnavailableError, CacheDirError, CheckpointError
from .checkpoints import load_safetensors, load_state_dict_into
from .wrapper import Backbone

log = logging.getLogger(__name__)

AUTOATTACK_RESNET18 = "autoattack-resnet18-cifar10"
WEIGHTS_FILE = "examples/model_test.pt"
ARCH_FILE = "examples/resnet.py"
#: sha256 of pyautoattack 0.2.0's examples/model_test.pt
PT_SHA256 = "399f52da9f914c323fa5a6096d60f460a3449a59b64a6405200c1e629f8425a7"


def package_file(relative: str) -> Path:
    """A file inside the installed pyautoattack package; BackboneUnavailableError naming the fix otherwise."""
    spec = importlib.util.find_spec(PACKAGE) if package_available() else None
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailableError(f"backbone {AUTOATTACK_RESNET18!r} comes from the {PACKAGE} package, which "
                                       f"is not installed; install it with `{INSTALL_HINT}`")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise BackboneUnavailableError(f"backbone {AUTOATTACK_RESNET18!r} needs {str(path)!r}, which the installed "
                                       f"{PACKAGE} does not have; reinstall it with `{INSTALL_HINT}`")
    return path


def _resnet_module() -> ModuleType:
    """pyautoattack/examples/resnet.py (``examples`` is not a package: loaded from its file)."""
    name = "rtcore_pyautoattack_examples_resnet"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, package_file(ARCH_FILE))
    if spec is None or spec.loader is None:
        raise BackboneUnavailableError(f"cannot load the architecture file {ARCH_FILE} of {PACKAGE}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules[name] = mod
    return mod


def converted_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the converted safetensors file lives: ``<cache_dir>/converted/`` (default cache dir when None;
    its sidecar JSON has the same stem)."""
    return resolve_cache_dir(cache_dir) / "converted" / f"{AUTOATTACK_RESNET18}.safetensors"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _valid(path: Path) -> bool:
    try:
        meta = json.loads(_sidecar(path).read_text())
        return (path.is_file() and meta.get("source_sha256") == PT_SHA256
                and file_sha256(path) == meta.get("sha256"))
    except (OSError, ValueError, AttributeError):
        return False


def package_state() -> dict[str, torch.Tensor]:
    """The package's pickled state dict, checked against its known sha256 and read with
    ``torch.load(weights_only=True)`` (tensors only: no code runs); nothing is written."""
    pt = package_file(WEIGHTS_FILE)
    digest = file_sha256(pt)
    if digest != PT_SHA256:
        raise CheckpointError(f"{str(pt)!r} has sha256 {digest[:16]}..., not the {PT_SHA256[:16]}... of "
                              f"{PACKAGE} {PACKAGE_VERSION}; reinstall it with `{INSTALL_HINT}`")
    state = torch.load(pt, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(pt)!r} is not a state dict of tensors")
    return {str(k): v.contiguous() for k, v in state.items()}


def ensure_converted(cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """The verified converted weights under ``<cache_dir>/converted`` (default cache dir when None), and
    whether they were (re)converted by this call."""
    from safetensors.torch import save_file

    out = converted_path(cache_dir)
    if _valid(out):
        return out, False
    state = package_state()
    try:
        atomic_write(out, lambda tmp: save_file(state, tmp))
        meta = {"source": f"{PACKAGE} {PACKAGE_VERSION}: {WEIGHTS_FILE}", "source_sha256": PT_SHA256,
                "sha256": file_sha256(out)}
        atomic_write(_sidecar(out), json.dumps(meta, indent=1).encode())
    except OSError as e:
        raise CacheDirError(f"cannot write the converted weights to {str(out)!r} ({type(e).__name__}: {e}); pass "
                            f"a writable cache_dir (--cache-dir), or use_cache=False (--no-cache) to convert "
                            f"in memory") from e
    return out, True


def _converted_or_none(cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """The converted file, or None (with a warning) when the cache folder cannot take it: the weights are
    then converted in memory, with the same numbers."""
    try:
        return ensure_converted(cache_dir)[0]
    except CacheDirError as e:
        log.warning("%s; converting in memory instead", e)
        return None


def model_card() -> dict[str, Any]:
    """What is known (and not known) about the backbone."""
    return {
        "name": AUTOATTACK_RESNET18,
        "description": "ResNet-18 on CIFAR-10, the example model shipped with pyautoattack 0.2.0 (standard "
                       "training, not robust); features from the penultimate layer (512-d)",
        "origin": {"package": PACKAGE, "version": PACKAGE_VERSION, "file": WEIGHTS_FILE, "sha256": PT_SHA256,
                   "architecture": f"{ARCH_FILE}: ResNet18()", "format": "pickled state dict, read with "
                   "torch.load(weights_only=True), converted to safetensors in <cache>/converted/"},
        "training": {"data": "CIFAR-10 (10 classes, 32x32 RGB)",
                     "method": "standard (non-adversarial) training: the package uses it as the example of "
                               "an undefended 'pretrained PyTorch model on CIFAR-10'",
                     "unknown": "epochs, optimiser, augmentation, seed and clean / robust accuracy are not "
                                "stated in the package"},
        "input_size": [3, 32, 32], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
        "normalisation": "none: examples/eval.py feeds transforms.ToTensor() images in [0, 1]",
        "feature_dim": 512, "features": "penultimate layer: after avg_pool2d(4) of layer4, before `linear`",
        "robust": False,
    }


def _resnet_penultimate(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The ResNet's forward up to (and without) its linear classifier: (N, 512)."""
    out = F.relu(net.bn1(net.conv1(x)))  # type: ignore[operator]
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        out = layer(out)  # type: ignore[operator]
    return F.avg_pool2d(out, 4).flatten(1)


def create_autoattack_resnet18(weights: str | os.PathLike[str] | None = None, pretrained: bool = True,
                               cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True) -> Backbone:
    """The backbone (``weights``: another safetensors file for the same architecture;
    ``pretrained=False``: seeded random weights). The package's weights are converted once to
    ``<cache_dir>/converted`` (default cache dir when None); ``use_cache=False`` converts them in
    memory and writes nothing."""
    if weights is not None and not pretrained:
        raise ValueError("give either weights=<file> or pretrained=False, not both")
    if not package_available():
        raise BackboneUnavailableError(f"backbone {AUTOATTACK_RESNET18!r} needs the {PACKAGE} package (its "
                                       f"architecture and weights ship with it); install it with `{INSTALL_HINT}`")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = _resnet_module().ResNet18()
    card = model_card()
    if weights is not None:
        label, source = f"{AUTOATTACK_RESNET18}+{Path(weights).name}", f"weights {weights}"
        load_state_dict_into(net, load_safetensors(weights), str(weights))
    elif pretrained and use_cache and (path := _converted_or_none(cache_dir)) is not None:
        label, source = AUTOATTACK_RESNET18, f"{PACKAGE} {PACKAGE_VERSION} {WEIGHTS_FILE} (converted {path})"
        load_state_dict_into(net, load_safetensors(path), str(path))
    elif pretrained:
        label, source = AUTOATTACK_RESNET18, f"{PACKAGE} {PACKAGE_VERSION} {WEIGHTS_FILE} (converted in memory)"
        load_state_dict_into(net, package_state(), WEIGHTS_FILE)
    else:
        label, source = f"{AUTOATTACK_RESNET18} (random init)", "random init (seed 0)"
    return Backbone(net, name=label, input_size=card["input_size"], mean=card["mean"], std=card["std"],
                    features=_resnet_penultimate, card=card if pretrained and weights is None else {}, source=source)
