"""The checks of a spec's values, each as it takes effect, and the rules of where a field applies.

Each check returns the normalised value or raises a ``ValueError`` that names the value and the fix;
:class:`SpecError` gathers every distinct problem of a spec or sweep file, so all are listed before any work.
:data:`RULES` says which fields apply to which probe and transfer method (the spec and the sweep both read it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..attacks import STRENGTHS, AttackSettings
from ..config import check_eps, eps_key
from ..data import check_task_ref, task_display_name
from ..models.ref import BackboneRef
from ..probes import probe_info
from ..transfer.recipe import transfer_info
from ..validation import check_count

__all__ = ["RULES", "Rule", "SpecError", "check_attack", "check_backbone_ref", "check_batch_size", "check_bool",
           "check_choice", "check_device", "check_eps_list", "check_n", "check_probe_c", "check_tasks",
           "check_transfer_k", "n_problem", "pair_problem", "parse_eps_text"]

class SpecError(ValueError):
    """A spec (or sweep) with problems: ``problems`` lists each distinct one; the message lists them all."""

    def __init__(self, problems: Iterable[str], what: str = "the spec") -> None:
        self.problems = list(dict.fromkeys(problems))
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{what} has {len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


# ------------------------------------------------------------------------------------------ value checks

def parse_eps_text(value: object) -> object:
    """Text as an eps: ``"8/255"`` -> 8/255, ``"0.03"`` -> 0.03 (spec files and the command line write eps
    this way). Non-text values are returned unchanged for :func:`rtcore.config.check_eps`; text that is not
    a number or a fraction, or a fraction over zero, raises ValueError naming the fault."""
    if not isinstance(value, str):
        return value
    num, slash, den = value.partition("/")
    try:
        top = float(num)
        bottom = float(den) if slash else 1.0
    except ValueError:
        raise ValueError(f"eps={value!r} is not a number; write a number in [0, 1] such as 0.0314, or a fraction "
                         f"such as 8/255") from None
    if bottom == 0:
        raise ValueError(f"eps={value!r} divides by zero; write a fraction such as 8/255")
    return top / bottom


def check_tasks(tasks: object, given: Iterable[str] = ()) -> tuple[str, ...]:
    """A non-empty list of distinct task references (one name is one task, never a list of letters);
    names in ``given`` are tasks given as objects."""
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, Iterable):
        raise ValueError(f"tasks={tasks!r} must be a list of task names")
    tasks = list(tasks)  # read once: a generator is a list of tasks too
    known = set(given)
    problems, out = [], []
    for t in tasks:
        if not isinstance(t, str) or not t.strip():
            problems.append(f"task {t!r} must be a task name (see `python -m rtcore list`) or a "
                            f"'folder:PATH' / 'npz:PATH' reference")
            continue
        try:
            out.append(t if t in known else check_task_ref(t))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise SpecError(problems)
    if not out:
        raise ValueError("tasks is empty; give at least one task name (see rtcore.list_tasks())")
    seen: set[str] = set()
    dup = [t for t in out if t in seen or seen.add(t)]  # type: ignore[func-returns-value]
    if dup:
        raise ValueError(f"tasks {sorted(set(dup))} are given more than once ({list(out)}); give each task once")
    shown = [t if t in known else task_display_name(t) for t in out]
    clash = sorted({s for s in shown if shown.count(s) > 1})
    if clash:
        which = [t for t, s in zip(out, shown) if s in clash]
        raise ValueError(f"tasks {which} would all be named {clash} in the tables; rename a folder or file so that "
                         f"every task has its own name")
    return tuple(out)


def check_backbone_ref(backbone: object, weights: object = None, pretrained: bool = True,
                       label: str | None = None) -> BackboneRef:
    """A :class:`BackboneRef` from a ref or a name (plus weights), with the name and weights file checked."""
    from ..models import check_safetensors_file
    from ..models.registry import check_backbone_name

    if isinstance(backbone, BackboneRef):
        if weights is not None:
            raise ValueError("give the weights inside the BackboneRef, not as well as weights=")
        ref = backbone
    elif isinstance(backbone, str):
        ref = BackboneRef(backbone, weights=None if weights is None else str(weights), pretrained=pretrained,
                          label=label)
    else:
        raise ValueError(f"backbone={backbone!r} ({type(backbone).__name__}) must be a registry name, "
                         f"'timm:<model>' or a BackboneRef")
    if not ref.is_module:
        check_backbone_name(ref.name)
    if ref.weights is not None:
        check_safetensors_file(ref.weights)
    return ref


def check_attack(attack: object) -> str | AttackSettings:
    """A strength name of :data:`rtcore.STRENGTHS` or :class:`AttackSettings` (a dict of its fields in files)."""
    if isinstance(attack, AttackSettings):
        return attack
    if isinstance(attack, Mapping):
        try:
            return AttackSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in attack.items()})
        except TypeError as e:
            raise ValueError(f"attack={dict(attack)!r}: {e}; the fields are "
                             f"{[f.name for f in fields(AttackSettings)]}") from None
    if attack not in STRENGTHS:
        raise ValueError(f"attack={attack!r} is unknown; use one of {list(STRENGTHS)}")
    return str(attack)


def check_probe_c(value: object) -> float | str:
    """``"auto"`` or a positive finite number."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or float(value) <= 0:
        raise ValueError(f"probe_C={value!r} must be 'auto' or a positive number (inverse regularisation strength)")
    return float(value)


def check_transfer_k(value: object) -> int:
    """A whole number >= 1 (the blocks ft-last-k trains; the backbone's block count is checked on loading)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"transfer_k={value!r} must be a whole number of blocks >= 1, e.g. 2")
    if isinstance(value, numbers.Integral) or float(value).is_integer():
        if int(value) >= 1:
            return int(value)
        raise ValueError(f"transfer_k={value!r} must be >= 1 (the number of last blocks ft-last-k trains)")
    raise ValueError(f"transfer_k={value!r} is not a whole number; give the number of blocks, e.g. 2")


def check_n(value: object) -> int | str:
    """``"all"`` or a positive whole number of test points."""
    if value == "all":
        return "all"
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)) \
            and float(value).is_integer():
        value = int(value)
    try:
        return check_count(value, "n")
    except ValueError:
        raise ValueError(f"n={value!r} must be a positive integer (test points per task, e.g. n=200) or \"all\" "
                         f"(every test point)") from None


def n_problem(n: int | str, task: str, size: int | None) -> str | None:
    """Why ``n`` test points cannot be drawn from a task with ``size`` test images (None: they can)."""
    if size is None or n == "all" or int(n) <= size:
        return None
    return (f"n={n} but task {task!r} has {size} test images; use n = {size} or n = \"all\" (every test image)")


def check_device(value: object) -> str:
    """``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, ``"mps"``. Whether the
    machine that runs the spec has that device is checked where it runs, before any work (a sweep's driver
    need not have the GPUs its workers have)."""
    import torch

    if value == "auto":
        return "auto"
    try:
        dev = torch.device(value) if isinstance(value, str) else None
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps") or (dev.type != "cuda" and dev.index is not None):
        raise ValueError(f"device={value!r} must be 'auto' (CUDA when present, else the CPU), 'cpu', 'cuda', "
                         f"'cuda:N' or 'mps'")
    return str(dev)


def check_batch_size(value: object) -> int | str:
    """``"auto"`` (from the device's free memory) or a positive whole number of images per batch."""
    if value == "auto":
        return "auto"
    try:
        return check_count(value, "batch_size")
    except ValueError:
        raise ValueError(f"batch_size={value!r} must be \"auto\" or a positive integer (images per batch, e.g. "
                         f"64); it bounds memory and never changes a number") from None


def check_bool(name: str) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be true or false")
        return value
    return check


def check_choice(name: str, valid: Callable[[], Iterable[str]]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in list(valid()):
            raise ValueError(f"{name}={value!r} is unknown; use one of {list(valid())}")
        return str(value)
    return check


# ------------------------------------------------------------------------------------------ where fields apply

@dataclass(frozen=True)
class Rule:
    """Where a field applies: ``test(spec)`` (reads only ``probe``, ``transfer`` and ``sanity``), and in words."""

    test: Callable[[Any], bool]
    where: str


def _uses_probe(s: Any) -> bool:
    return transfer_info(s.transfer).uses_probe


#: the applicability rules the fields name (:attr:`Option.applies`); a sweep routes its options by them
RULES: dict[str, Rule] = {
    "probe": Rule(_uses_probe, "the transfer methods that fit a linear probe (lp, lp-ft)"),
    "probe_C": Rule(lambda s: probe_info(s.probe).takes_C and _uses_probe(s),
                    "probes that take a C (e.g. logistic) with transfer lp or lp-ft"),
    "probe_eps": Rule(lambda s: probe_info(s.probe).takes_radius, "Delta-aware probes (probe 'robust')"),
    "transfer_k": Rule(lambda s: transfer_info(s.transfer).trains == "last-k", "transfer 'ft-last-k'"),
    "finetune": Rule(lambda s: transfer_info(s.transfer).trains != "none",
                     "the transfer methods that train (ft, lp-ft, ft-last-k)"),
    "sanity": Rule(lambda s: s.sanity is True, "sanity = true (--sanity)"),
}


def pair_problem(probe: str, transfer: str) -> str | None:
    """Why ``probe`` cannot serve ``transfer`` (None when it can): Delta-aware probes need the frozen backbone."""
    if probe_info(probe).takes_radius and transfer_info(transfer).trains != "none":
        return (f"probe={probe!r} needs the frozen backbone's Delta (transfer='lp'); transfer={transfer!r} changes "
                f"the backbone: use another probe with {transfer}")
    return None


def check_eps_list(eps: object, norm: str) -> tuple[float, ...]:
    """Each eps parsed and checked (every bad one named), then canonical and sorted; the same budget given
    twice, in any spelling ("8/255" and 0.0313725...), is an error."""
    items = list(eps) if isinstance(eps, (list, tuple)) else [eps]
    problems, values = [], []
    for e in items:
        try:
            values.append((e, check_eps(parse_eps_text(e), norm)[0][0]))
        except ValueError as err:
            problems.append(f"eps={e!r}: {err}" if isinstance(e, str) and "divides" not in str(err)
                            and "not a number" not in str(err) else str(err))
    if problems:
        raise SpecError(problems)
    if not values:
        raise ValueError("eps is an empty list; give at least one value in [0, 1], e.g. eps = [\"2/255\", \"8/255\"]")
    seen: dict[float, object] = {}
    dups = []
    for given, value in values:
        k = eps_key(value)
        if k in seen:
            dups.append(f"eps lists {k!r} twice (as {seen[k]!r} and {given!r}); give each budget once")
        seen.setdefault(k, given)
    if dups:
        raise SpecError(dups)
    return tuple(sorted(seen))
