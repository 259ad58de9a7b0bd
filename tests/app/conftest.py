"""Shared set-up of the dashboard tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import state

BACKBONE = "fmnist-cnn-standard"


def use_small_defaults(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """Small dashboard defaults through the environment overrides (n = 20, task shapes, 'fast',
    linf, the standard CNN when bundled) and the private result cache ``cache_dir``."""
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv(state.ENV_N, "20")
    monkeypatch.setenv(state.ENV_TASKS, "shapes")
    monkeypatch.setenv(state.ENV_ATTACK, "fast")
    monkeypatch.setenv(state.ENV_NORM, "linf")
    if BACKBONE in state.backbone_choices():
        monkeypatch.setenv(state.ENV_BACKBONE, BACKBONE)
