"""A sweep across a backbone zoo: an evaluation spec whose fields may hold lists, expanded into one
:class:`SweepUnit` per combination.

A sweep file holds the keys of an evaluation spec (:mod:`rtcore.runs.spec`), with lists where the
sweep varies them (the fields declared with ``sweep`` in :class:`~rtcore.runs.spec.EvalSpec`)::

    backbones = ["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard",
                 {backbone = "fmnist-cnn-simclr", weights = "my-simclr.safetensors", label = "my-simclr"}]
    tasks = ["fmnist-novel", "shapes"]              # one unit per task
    eps = ["1/255", "2/255", "4/255", "8/255"]      # the grid every unit computes
    norm = "linf"                                   # or a list
    n = 200                                         # or a list
    attack = "fast"                                 # or a list
    probes = ["logistic", "robust"]                 # `probe` (one value) works too
    transfers = ["lp"]                              # `transfer` (one value) works too
    seed = 0                                        # or a list

Every unit is an :class:`~rtcore.runs.spec.EvalSpec` with one backbone and one task over the eps grid,
so every rule is the spec's own. A field that applies only to some units (``probe_C`` to probes that
take a C, ``probe_eps`` to Delta-aware probes, ``transfer_k`` to ``ft-last-k``, ``[finetune]`` to the
methods that train, ``probe`` to the methods that fit one) goes to the units where it applies, by the
spec's own rules (:data:`~rtcore.runs.spec.RULES`); one that applies to no unit is an error. A probe
that cannot serve a transfer method (a Delta-aware probe with a method that trains the backbone) is
left out of that method's units. The expansion reports every distinct problem of every value at once
(:class:`~rtcore.runs.spec.SpecError`), and two units that compute the same thing (``n = 1500`` and
``n = "all"`` on a task of 1500 test images, one backbone listed twice) are an error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..models.ref import BackboneRef
from ..transfer.recipe import transfer_info
from .fields import declared, sweep_axes
from .spec import RULES, EvalSpec, SpecError, keywords, named_in, pair_problem
from .spec_files import read_spec_file

#: at most this many distinct problems are listed in one error
MAX_PROBLEMS = 12
#: a sweep with more units than this is refused unless the caller raises the cap (``max_units``, ``--max-units``)
MAX_UNITS = 5000
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
#: keys in a sweep file that users mistype, and the key they mean
HINTS = {"seeds": "seed", "norms": "norm", "attacks": "attack", "task": "tasks", "ns": "n"}


def _axes() -> dict[str, Any]:
    """The keys a sweep may vary, with their plural spellings."""
    return sweep_axes(EvalSpec)


@dataclass(frozen=True)
class SweepUnit:
    """One unit of a sweep: an :class:`EvalSpec` with one backbone and one task over the eps grid.

    ``id``: a readable, unique file name stem (``<backbone>--<task>--<probe>--<transfer>--<digest[:10]>``);
    ``digest``: the spec's :meth:`EvalSpec.digest`; ``group``: units that share the feature attack
    and the training features (same backbone, inputs, norm, attack, seed, frozen backbone) have the
    same group, and the first of a group runs before the others (they then read its cache entries).
    """

    id: str
    spec: EvalSpec
    digest: str
    group: str

    @property
    def backbone(self) -> str:
        return self.spec.backbone.display

    @property
    def task(self) -> str:
        return self.spec.tasks[0]

    def labels(self) -> dict[str, Any]:
        """The unit's coordinates, as the failure table records them."""
        s = self.spec
        return {"unit": self.id, "backbone": self.backbone, "task": self.task, "probe": s.probe,
                "transfer": s.transfer, "norm": s.norm, "n": s.n, "attack": s.strength, "seed": s.seed}

    def describe(self) -> str:
        s = self.spec
        return f"{self.backbone} · {self.task} · {s.probe} · {s.transfer}"


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: ``table`` holds the keys of an evaluation spec, the swept ones as tuples (file keys,
    singular: ``backbone``, ``probe``, ``transfer``). Checked on construction by building every unit;
    ``max_units`` caps the expansion (checked before any unit is built)."""

    table: Mapping[str, Any]
    max_units: int = MAX_UNITS

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", _normalise(self.table))
        count = math.prod(len(self.table[k]) for k in self._axis_keys())
        if count > self.max_units:
            sizes = " x ".join(f"{len(self.table[k])} {k}" for k in self._axis_keys() if len(self.table[k]) > 1)
            raise SpecError([f"the sweep expands to {count} units ({sizes}), above the cap of {self.max_units}; "
                             f"split it, or raise the cap (--max-units {count}, or max_units={count})"])
        self.units  # noqa: B018 - builds (and so checks) every unit now, before any work

    def _axis_keys(self) -> list[str]:
        return [k for k in _axes() if k in self.table]

    # ---------------------------------------------------------------- expansion
    @cached_property
    def units(self) -> tuple[SweepUnit, ...]:
        """Every unit, in the order of the axes (backbone, task, norm, n, attack, probe, ..., transfer, seed),
        built and checked once. Raises :class:`SpecError` listing every distinct problem."""
        keys = self._axis_keys()
        fixed = {k: v for k, v in self.table.items() if k not in keys}
        problems: dict[str, None] = {}
        used: dict[str, bool] = {k: False for k in self._optional_keys()}
        units: dict[str, SweepUnit] = {}
        origin: dict[str, dict[str, Any]] = {}
        for values in itertools.product(*(self.table[k] for k in keys)):
            combo = {**fixed, **dict(zip(keys, values))}
            effective = self._applicable(combo, used)
            if effective is None:
                continue
            try:
                spec = EvalSpec(**keywords(effective))
            except SpecError as e:
                problems.update(dict.fromkeys(e.problems))
                if len(problems) >= MAX_PROBLEMS:
                    break
                continue
            except ValueError as e:
                problems.setdefault(str(e))
                continue
            unit = _unit(spec)
            seen = origin.get(unit.digest)
            if seen is not None and seen != effective:
                diff = {k: (seen.get(k), effective.get(k)) for k in set(seen) | set(effective)
                        if seen.get(k) != effective.get(k)}
                problems.setdefault(" and ".join(f"{k}={a!r} and {k}={b!r}" for k, (a, b) in sorted(diff.items()))
                                    + f" are the same evaluation (e.g. of {unit.task}); list each value once")
            origin.setdefault(unit.digest, effective)
            units.setdefault(unit.digest, unit)
        if not problems:
            for key, applied in used.items():
                if not applied and key in self.table:
                    rule = RULES[_applies(key)]
                    problems.setdefault(f"{key}={self.table[key]!r} applies to {rule.where}, which this sweep does "
                                        f"not run (probes {list(self.table.get('probe', ('logistic',)))}, "
                                        f"transfers {list(self.table.get('transfer', ('lp',)))}); drop {key}")
            transfers = list(self.table.get("transfer", ("lp",)))
            for probe in self.table.get("probe", ()):
                if not any(u.spec.probe == probe for u in units.values()):
                    why = [pair_problem(probe, t) or f"transfer={t!r} trains its own head" for t in transfers]
                    problems.setdefault(f"probe {probe!r} serves none of the transfers {transfers} "
                                        f"({'; '.join(why)}); add another transfer or drop it")
        if problems:
            listed = list(problems)
            more = " (and possibly more)" if len(listed) >= MAX_PROBLEMS else ""
            raise SpecError(listed, f"the sweep{more}")
        return tuple(units.values())

    def _optional_keys(self) -> list[str]:
        """The keys of this sweep that apply only where a rule says so."""
        return [k for k in self.table if _applies(k) and k != "probe"]

    @staticmethod
    def _applicable(combo: dict[str, Any], used: dict[str, bool]) -> dict[str, Any] | None:
        """The combination with every key that does not apply to it left out (None: the probe cannot serve
        the transfer method, so the combination is not a unit); marks in ``used`` the keys that applied."""
        probe, transfer = combo.get("probe", "logistic"), combo.get("transfer", "lp")
        view = SimpleNamespace(probe=probe, transfer=transfer, sanity=combo.get("sanity", False))
        try:
            if pair_problem(probe, transfer) and RULES["probe"].test(view):
                return None
            out = {}
            for k, v in combo.items():
                rule = _applies(k)
                if rule and not RULES[rule].test(view):
                    continue
                if k in used:
                    used[k] = True
                out[k] = v
        except ValueError:  # an unknown probe or transfer: the spec names it
            return dict(combo)
        return out

    def digest(self) -> str:
        """sha256 over the units' digests, in order."""
        return hashlib.sha256("\n".join(u.digest for u in self.units).encode()).hexdigest()

    # ---------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        """The sweep as a table of plain values (what a sweep file holds; a one-value axis as that value)."""
        out: dict[str, Any] = {}
        for k, v in self.table.items():
            if k == "backbone":
                out["backbones"] = [_ref_entry(r) for r in v]
            elif k == "tasks":
                out[k] = list(v)
            elif k in _axes():
                values = [_plain(x) for x in v]
                out[k] = values if len(values) > 1 else values[0]
            else:
                out[k] = _plain(v)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], max_units: int = MAX_UNITS) -> SweepSpec:
        """A sweep from a table of keys (see the module docstring); unknown keys name the valid ones."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a sweep spec must be a table of keys (backbones, tasks, eps, ...), "
                             f"got {type(data).__name__}")
        return cls(dict(data), max_units)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _normalise(data: Mapping[str, Any]) -> dict[str, Any]:
    """The file's table with plural keys made singular, every swept key a tuple, every key checked (all problems
    at once)."""
    axes = _axes()
    plurals = {opt.plural: key for key, (opt, _) in axes.items() if opt.plural}
    out: dict[str, Any] = {}
    problems = []
    for k, v in data.items():
        key = plurals.get(k, k)
        if key in out:
            problems.append(f"give either {key!r} or {k!r}, not both")
            continue
        out[key] = v
    flat = {d.key: d for d in declared(EvalSpec) if d.table is None}
    ref_keys = sorted(k for k, d in flat.items() if d.path[0] == "backbone" and k != "backbone")
    misplaced = sorted(set(out) & set(ref_keys))
    if misplaced:
        problems.append(f"{misplaced} belong to one backbone: write backbones = [{{backbone = \"NAME\", "
                        f"weights = \"FILE.safetensors\", label = \"NAME\"}}]")
    tables = sorted({d.table for d in declared(EvalSpec) if d.table})
    allowed = (set(flat) - set(ref_keys)) | set(tables) | set(plurals)
    unknown = sorted(set(out) - allowed - set(misplaced))
    if unknown:
        fix = [f"{k!r} -> {HINTS[k]!r}" for k in unknown if k in HINTS]
        problems.append(f"unknown sweep keys {unknown}{' (' + ', '.join(fix) + ')' if fix else ''}; valid keys: "
                        f"{sorted(allowed)}")
    missing = [k for k in ("backbone", "tasks", "eps") if k not in out]
    if missing:
        problems.append(f"the sweep has no {[{'backbone': 'backbones'}.get(k, k) for k in missing]}; a sweep needs at "
                        f"least backbones, tasks and eps")
    for key in list(out):
        if key in axes:
            values = out[key]
            if key == "attack" and isinstance(values, Mapping):
                values = [values]
            values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
            if not values:
                problems.append(f"{key} is an empty list; give at least one value")
            shown = [json.dumps(_plain(v), sort_keys=True, default=str) for v in values]
            twice = sorted({v for v in shown if shown.count(v) > 1})
            if twice:
                problems.append(f"{key} lists {', '.join(twice)} more than once; give each value once")
            out[key] = values
        elif key in allowed and key not in ("eps", *tables) and isinstance(out[key], (list, tuple)):
            problems.append(f"{key}={list(out[key])!r}: {key} cannot vary in a sweep; give one value")
    if "backbone" in out:
        refs = []
        for entry in out["backbone"]:
            try:
                refs.append(_backbone_ref(entry, ref_keys))
            except ValueError as e:
                problems.append(str(e))
        out["backbone"] = tuple(refs)
    if problems:
        raise SpecError(problems, "the sweep")
    return out


def _applies(key: str) -> str | None:
    """The applicability rule of a sweep key (a field's, or its table's)."""
    for d in declared(EvalSpec):
        if d.key == key or d.table == key:
            return d.option.applies if d.table is None else _group_rule(key)
    return None


def _group_rule(table: str) -> str | None:
    from .fields import groups

    opt, _ = groups(EvalSpec)[table]
    return opt.applies


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if hasattr(v, "__dataclass_fields__"):
        from dataclasses import asdict

        return {k: list(x) if isinstance(x, tuple) else x for k, x in asdict(v).items() if x is not None}
    return v


def _ref_entry(ref: BackboneRef) -> Any:
    d = ref.to_dict()
    return d["backbone"] if set(d) == {"backbone"} else d


def load_sweep_spec(path: str | os.PathLike[str], max_units: int = MAX_UNITS) -> SweepSpec:
    """Read and check a sweep file (``.toml`` or ``.json``); errors name the file and the problem.
    Relative weights and ``folder:`` / ``npz:`` paths are read relative to the current folder."""
    p = Path(path).expanduser()
    data = read_spec_file(p)
    try:
        return SweepSpec.from_dict(data, max_units)
    except ValueError as e:
        raise named_in(e, f"sweep file {str(p)!r}") from None


def as_sweep_spec(spec: SweepSpec | Mapping[str, Any] | str | os.PathLike[str],
                  max_units: int = MAX_UNITS) -> SweepSpec:
    """A :class:`SweepSpec` from itself, a table of keys, or the path of a sweep file."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return SweepSpec.from_dict(spec, max_units)
    if isinstance(spec, (str, os.PathLike)):
        return load_sweep_spec(spec, max_units)
    raise ValueError(f"sweep spec {spec!r} ({type(spec).__name__}) must be a SweepSpec, a dict of keys or the "
                     f"path of a .toml / .json sweep file")


# ---------------------------------------------------------------- helpers

def _backbone_ref(entry: Any, keys: Sequence[str]) -> BackboneRef:
    """A backbone of the sweep's list: a name, or a table of ``backbone`` and the reference's keys."""
    if isinstance(entry, BackboneRef):
        return entry
    if isinstance(entry, str):
        return BackboneRef(entry)
    if isinstance(entry, Mapping):
        unknown = sorted(set(entry) - {"backbone", *keys})
        if unknown or "backbone" not in entry:
            raise ValueError(f"backbone entry {dict(entry)!r}: a table needs 'backbone' and may have "
                             f"{list(keys)}" + (f"; unknown keys {unknown}" if unknown else ""))
        try:
            return keywords({"tasks": ("-",), "eps": (0,), **entry})["backbone"]
        except ValueError as e:
            raise ValueError(f"backbone entry {dict(entry)!r}: {e}") from None
    raise ValueError(f"backbone entry {entry!r} ({type(entry).__name__}) must be a name or a table "
                     f"{{backbone = \"NAME\", weights = \"FILE\"}}")


def slug(text: str, width: int = 40) -> str:
    """A file-name-safe short form of ``text``."""
    return _SLUG.sub("_", text).strip("_")[:width] or "x"


def _unit(spec: EvalSpec) -> SweepUnit:
    digest = spec.digest()
    uid = "--".join([slug(spec.backbone.display), slug(spec.tasks[0]), spec.probe, spec.transfer, digest[:10]])
    if transfer_info(spec.transfer).trains == "none":  # the frozen backbone: probes share its feature attack
        shared = spec.with_(probe="logistic", probe_C="auto", probe_eps=None, head_attack=True, loss_attack=True,
                            sanity=False)
        group = "lp-" + shared.digest()
    else:
        group = "own-" + digest
    return SweepUnit(uid, spec, digest, group)
