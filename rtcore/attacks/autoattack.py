"""AutoAttack (Croce & Hein, ICML 2020; the ``pyautoattack`` package) as rtcore's end-to-end search.

Used by :func:`rtcore.attacks.attack` when ``settings.autoattack`` is set (the 'autoattack'
strength): per eps, one ``AutoAttack.run_standard_evaluation`` per attack of the version
(APGD-CE + APGD-T for "custom"; with "standard" also FAB-T and Square), each on the points the
previous attacks left robust, which is exactly what one call with all the attacks does, with a
progress report after each. The targeted attacks use ``min(9, K - 1)`` target classes; APGD-T
is left out when the task has fewer than 4 classes (its targeted DLR loss needs 4 logits).

What comes back is never trusted as it is: every point is projected onto the ball and [0, 1]
(a no-op up to float rounding) and :func:`rtcore.attacks.end_to_end.run_attack` recomputes
robustness on the original model. pyautoattack seeds the global torch RNG; that state is
restored afterwards. It is an optional dependency: ``pip install pyautoattack==0.2.0``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import torch
from torch import nn

from ..errors import RtcoreError
from .engine import project
from .search import ProgressFn
from .settings import AUTOATTACK_VERSIONS, AttackSetup

LOG = logging.getLogger(__name__)
LOG.addHandler(logging.NullHandler())  # pyautoattack's warnings go to the application's handlers, if any
AA_NORMS = {"linf": "Linf", "l2": "L2"}
PACKAGE, PACKAGE_VERSION = "pyautoattack", "0.2.0"  # the optional dependency (also the third-party backbone's source)
INSTALL_HINT = f"pip install {PACKAGE}=={PACKAGE_VERSION}"


class AttackUnavailableError(RtcoreError, RuntimeError):
    """An attack needs an optional package that is not installed."""


def autoattack_available() -> bool:
    """Whether pyautoattack can be imported (found without importing it)."""
    return PACKAGE in sys.modules or importlib.util.find_spec(PACKAGE) is not None


def attacks_for(version: str, n_classes: int) -> list[str]:
    """The AutoAttack attacks run for ``version`` on a ``n_classes``-way classifier."""
    if version not in AUTOATTACK_VERSIONS:
        raise ValueError(f"AutoAttack version {version!r} is unknown; use one of {list(AUTOATTACK_VERSIONS)}")
    names = list(AUTOATTACK_VERSIONS[version])
    if n_classes < 4:  # the targeted DLR loss of APGD-T reads the 4th largest logit
        names.remove("apgd-t")
    return names


def make_autoattack(model: nn.Module, eps: float, norm: str, version: str, n_classes: int, seed: int,
                    device: torch.device) -> object:
    """A configured ``pyautoattack.AutoAttack`` (restarts and targets as in AutoAttack's standard version)."""
    if not autoattack_available():
        raise AttackUnavailableError(f"the 'autoattack' strength needs the pyautoattack package; install it with "
                                     f"`{INSTALL_HINT}`, or pick another strength ('fast', 'standard', 'strong')")
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm=AA_NORMS[norm], eps=float(eps), version="custom",  # type: ignore[arg-type]
                    attacks=attacks_for(version, n_classes), seed=int(seed), device=device)
    targets = max(1, min(9, n_classes - 1))
    aa.apgd.n_restarts = 1
    aa.apgd_targeted.n_restarts = 1
    aa.apgd_targeted.n_target_classes = targets
    aa.fab.n_restarts = 1
    aa.fab.n_target_classes = targets
    aa.square.n_queries = 5000
    aa.verbose = False
    aa.logger = LOG
    aa.apgd.logger = aa.apgd_targeted.logger = LOG
    return aa


def autoattack_search(search: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, setup: AttackSetup,
                      progress: ProgressFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """AutoAttack at one eps on ``x`` (all points taken as candidates); returns one point per
    input, inside the ball and [0, 1] (the input itself where nothing was found), and whether
    AutoAttack found it misclassified (on ``search``)."""
    cfg, norm = setup.settings, setup.norm
    with torch.no_grad():
        n_classes = int(search(x[:1]).shape[1])
    names = attacks_for(cfg.autoattack, n_classes)
    x_adv = x.clone()
    live = torch.arange(x.shape[0], device=x.device)
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    tracer = sys.gettrace()
    try:
        with torch.random.fork_rng(devices=devices):
            for k, name in enumerate(names):
                if live.numel():
                    aa = make_autoattack(search, eps, norm, cfg.autoattack, n_classes, setup.seed, x.device)
                    aa.attacks_to_run = [name]  # type: ignore[attr-defined]
                    xa, ya = aa.run_standard_evaluation(x[live], y[live], batch_size=cfg.batch_size)  # type: ignore[attr-defined]
                    fooled = ya.to(y.device) != y[live]
                    x_adv[live[fooled]] = xa.to(x_adv)[fooled]
                    live = live[~fooled]
                if progress is not None:
                    progress((k + 1) / len(names))
    finally:
        sys.settrace(tracer)  # pyautoattack's dynamic-defence check clears any tracer
    eps_rows = torch.full((x.shape[0],), float(eps), device=x.device)
    fooled = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    fooled[live] = False
    return project(x_adv.detach(), x, eps_rows, norm), fooled
