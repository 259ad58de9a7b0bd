"""What running a spec's units produces: the tables (:class:`Evaluation`), how one unit went
(:class:`UnitReport`), and what every unit of one task shares (:class:`TaskState`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from ..data import Task
from ..models import Backbone
from ..probes import LinearProbe
from ..sanity import SanityFlag
from ..tables import HeadInfo
from .plan import Unit


@dataclass
class Evaluation:
    """``summary``: one row per (backbone, task, probe, norm, eps); ``samples``: one row per test point;
    ``gallery[(task, eps)]``: clean images and the feature-attack images of the first points;
    ``recomputed``: cache entries that failed verification and were recomputed;
    ``sanity[task]``: the sanity flags of the task's evaluation (:mod:`rtcore.sanity`), when asked for;
    ``class_names[task]``: the names of the task's labels."""

    summary: pd.DataFrame
    samples: pd.DataFrame
    gallery: dict[tuple[str, float], dict[str, torch.Tensor]] = field(default_factory=dict)
    recomputed: list[str] = field(default_factory=list)
    sanity: dict[str, list[SanityFlag]] = field(default_factory=dict)
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class TaskState:
    """What every unit of one task shares: the test subset, the model and head, the clean features."""

    task: Task
    idx: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    g: Backbone
    head: LinearProbe
    info: HeadInfo
    f0: torch.Tensor

    @property
    def m(self) -> int:
        return int(self.f0.shape[1])


@dataclass(frozen=True)
class UnitReport:
    """How a unit went: its wall time and whether it computed anything (else all was cached)."""

    unit: Unit
    seconds: float
    computed: bool
