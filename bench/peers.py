"""The peer libraries of bench/attacks.py and bench/strength.py (torchattacks, foolbox with eagerpy,
pyautoattack, adv-lib), imported only when used: torchattacks, foolbox and adv-lib are benchmark
dependencies (bench/requirements.txt); pyautoattack is an optional runtime dependency of rtcore (its
'autoattack' strength)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

PEER_MODULES = ("torchattacks", "foolbox", "eagerpy", "pyautoattack", "adv_lib")


def _importable(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except Exception:  # noqa: BLE001
        return False


def torchattacks_available() -> bool:
    return "torchattacks" in sys.modules or _importable("torchattacks")


def autoattack_available() -> bool:
    return "pyautoattack" in sys.modules or _importable("pyautoattack")


def peer_version(mod: str) -> str | None:
    """The installed version of a peer, None when it is missing or broken."""
    if mod == "adv_lib":
        _stub_visdom()
    try:
        return str(__import__(mod).__version__)
    except Exception:  # noqa: BLE001 - a peer that is missing or broken is just not listed
        return None


def make_torchattacks(model: nn.Module, eps: float, steps: int, alpha: float) -> Any:  # -> torchattacks.PGD
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)


def foolbox_model(module: nn.Module, device: torch.device) -> Any:  # -> foolbox.PyTorchModel
    import foolbox as fb

    return fb.PyTorchModel(module, bounds=(0, 1), device=device)


def foolbox_linf_pgd(steps: int, abs_stepsize: float | None = None, rel_stepsize: float | None = None) -> Any:
    """``foolbox.attacks.LinfPGD`` with a random start and a constant step: ``abs_stepsize`` (the
    step in input units) or ``rel_stepsize`` (a fraction of each eps)."""
    import foolbox as fb

    if abs_stepsize is not None:
        return fb.attacks.LinfPGD(abs_stepsize=abs_stepsize, steps=steps, random_start=True)
    return fb.attacks.LinfPGD(rel_stepsize=rel_stepsize, steps=steps, random_start=True)


def foolbox_feature_attack(steps: int, rel_stepsize: float) -> tuple[Any, type]:
    """The feature loss written with foolbox, as the paper's code did: LinfPGD with
    ``get_loss_fn`` overridden to ``0.5 ||g(x') - g(x)||^2`` and a criterion that never
    succeeds (so every step runs). The "labels" carried by the criterion are g(x)."""
    import eagerpy as ep
    import foolbox as fb

    class NeverAdversarial(fb.criteria.Misclassification):
        def __call__(self, perturbed: Any, outputs: Any) -> Any:
            outputs_, restore_type = ep.astensor_(outputs)
            return restore_type(ep.zeros(outputs_, (len(outputs_),)) > 1)

    class FeatureLinfPGD(fb.attacks.LinfPGD):
        def get_loss_fn(self, model: Any, labels: Any) -> Callable[[Any], Any]:
            def loss_fn(inputs: Any) -> Any:
                d = model(inputs) - labels
                return 0.5 * (d * d).sum()
            return loss_fn

    return FeatureLinfPGD(rel_stepsize=rel_stepsize, steps=steps, random_start=True), NeverAdversarial


def autoattack_apgd_ce(model: nn.Module, eps: float, steps: int, device: torch.device, seed: int = 0) -> Any:
    """AutoAttack's APGD-CE (``pyautoattack.autopgd_base.APGDAttack``, the first attack of every
    AutoAttack version) with ``steps`` iterations and 1 restart: the same work as the other rows.
    Built directly rather than through ``AutoAttack(...)`` because APGD's step-size checkpoints are
    computed from ``n_iter`` in its constructor. Returns a callable ``(x, y) -> x_adv``."""
    from pyautoattack.autopgd_base import APGDAttack

    apgd = APGDAttack(model, n_iter=steps, norm="Linf", n_restarts=1, eps=eps, seed=seed, loss="ce",
                      eot_iter=1, rho=0.75, device=device)
    return lambda x, y: apgd.perturb(x, y)


def _stub_visdom() -> None:
    """adv-lib imports visdom (a plotting server) at import time for its loggers, which the attacks
    here never use; visdom 0.2.x does not build on current setuptools, so adv-lib is installed with
    ``--no-deps`` and an empty module stands in for it (only when visdom is missing)."""
    import types

    if "visdom" not in sys.modules and not _importable("visdom"):
        sys.modules["visdom"] = types.ModuleType("visdom")


def adv_lib_available() -> bool:
    _stub_visdom()
    return "adv_lib" in sys.modules or _importable("adv_lib")


def adv_lib_pgd(model: nn.Module, eps: float, steps: int, alpha: float) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """adv-lib's linf PGD (``pgd_linf``: random start, cross-entropy, 1 restart) with the constant step ``alpha``."""
    _stub_visdom()
    from adv_lib.attacks import pgd_linf

    return lambda x, y: pgd_linf(model, x, y, eps, steps=steps, absolute_step_size=alpha)


def fmn_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 100) -> torch.Tensor:
    """adv-lib's fast minimum-norm attack (FMN, Pintor et al., NeurIPS 2021), linf, ``steps`` steps and
    the library's other defaults: per point the smallest breaking perturbation it found (x where none)."""
    _stub_visdom()
    from adv_lib.attacks import fmn

    return fmn(model, x, y, norm=float("inf"), steps=steps)
