"""A sweep across a backbone zoo as a value: :class:`SweepSpec`, expanded into one :class:`SweepUnit` per
(backbone, task, probe, transfer) (and per norm, n, attack and seed when those are lists too).

A sweep file holds the keys of an evaluation spec (:mod:`rtcore.runs.spec`), with lists where the
sweep varies them::

    backbones = ["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard",
                 {backbone = "fmnist-cnn-simclr", weights = "my-simclr.safetensors", label = "my-simclr"}]
    tasks = ["fmnist-novel", "shapes"]
    eps = ["1/255", "2/255", "4/255", "8/255"]      # the grid every unit computes
    norm = "linf"                                   # or a list
    n = 200                                         # or a list
    attack = "fast"                                 # or a list
    probes = ["logistic", "robust"]                 # `probe` (one value) works too
    transfers = ["lp"]                              # `transfer` (one value) works too
    seed = 0                                        # or a list

Every unit is an :class:`~rtcore.runs.spec.EvalSpec` with one backbone and one task over the eps grid,
so every rule is :class:`EvalSpec`'s own: the expansion builds all of them before any work and
reports every distinct problem at once, each naming the bad value.

Applicability, as the probe and transfer registries define it (and :class:`EvalSpec` checks): probes
apply to the transfer methods that fit a linear probe (``lp``, ``lp-ft``); ``ft`` and ``ft-last-k``
train their own head and get one unit each; Delta-aware probes (``robust``) pair with ``lp`` only.
``probe_C`` goes to the probes that take a C, ``probe_eps`` to Delta-aware probes, ``transfer_k`` to
``ft-last-k``; a key that applies to no unit is an error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from ..models.ref import BackboneRef
from ..probes import probe_info
from ..transfer.recipe import transfer_info
from .spec import EvalSpec
from .spec_files import read_spec_file

#: sweep keys that may hold a list (the axes), with the singular key an evaluation spec uses
AXES: dict[str, str] = {"backbones": "backbone", "tasks": "tasks", "norm": "norm", "n": "n", "attack": "attack",
                        "probes": "probe", "transfers": "transfer", "seed": "seed"}
#: singular spellings accepted for one value (as an evaluation spec writes them)
ALIASES: dict[str, str] = {"backbone": "backbones", "probe": "probes", "transfer": "transfers"}
#: evaluation-spec keys a sweep passes to every unit where they apply (one value each)
OPTIONS: tuple[str, ...] = ("probe_C", "probe_eps", "transfer_k", "head_attack", "loss_attack", "sanity",
                            "sanity_subset", "download")
#: keys of a backbone table in ``backbones``
BACKBONE_KEYS: tuple[str, ...] = ("backbone", "weights", "pretrained", "label")
#: at most this many distinct problems are listed in one error
MAX_PROBLEMS = 12
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


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
    """The axes of a sweep (tuples), the eps grid and the options every unit gets; checked on construction
    by building every unit's :class:`EvalSpec` (see the module docstring)."""

    backbones: tuple[BackboneRef, ...]
    tasks: tuple[str, ...]
    eps: tuple[Any, ...]
    norm: tuple[str, ...] = ("linf",)
    n: tuple[int, ...] = (500,)
    attack: tuple[Any, ...] = ("standard",)
    probes: tuple[str, ...] = ("logistic",)
    transfers: tuple[str, ...] = ("lp",)
    seed: tuple[int, ...] = (0,)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("backbones", "tasks", "norm", "n", "attack", "probes", "transfers", "seed"):
            set_(self, name, _as_axis(getattr(self, name), name))
        set_(self, "eps", tuple(self.eps) if isinstance(self.eps, (list, tuple)) else (self.eps,))
        set_(self, "backbones", tuple(_backbone_ref(b) for b in self.backbones))
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown sweep options {unknown}; valid: {list(OPTIONS)}")
        set_(self, "options", dict(self.options))
        _no_duplicates("backbones", [b.display for b in self.backbones])
        for name in ("tasks", "norm", "n", "probes", "transfers", "seed"):
            _no_duplicates(name, list(getattr(self, name)))
        _no_duplicates("attack", [json.dumps(a, sort_keys=True, default=str) for a in self.attack])
        self.units  # noqa: B018 - builds (and so checks) every unit now, before any work

    # ---------------------------------------------------------------- expansion
    def _pairs(self) -> list[tuple[str, str]]:
        """The (transfer, probe) pairs the sweep runs (see the module docstring); unknown names are left to
        :class:`EvalSpec` to report."""
        pairs: list[tuple[str, str]] = []
        for transfer in self.transfers:
            method = _lookup(transfer_info, transfer)
            if method is not None and not method.uses_probe:
                pairs.append((transfer, "logistic"))
                continue
            usable = [p for p in self.probes if not (method is not None and method.trains != "none"
                                                     and _probe_prop(p, "takes_radius"))]
            if not usable:
                raise ValueError(f"transfer {transfer!r} can use none of probes {list(self.probes)} (Delta-aware "
                                 f"probes need the frozen backbone, transfer 'lp'); add another probe or drop "
                                 f"{transfer!r}")
            pairs += [(transfer, p) for p in usable]
        return pairs

    @staticmethod
    def _applies(key: str, transfer: str, probe: str) -> bool:
        """Whether the option ``key`` applies to a unit with this transfer method and probe."""
        method = _lookup(transfer_info, transfer)
        if key == "probe_C":
            return _probe_prop(probe, "takes_C") and (method is None or method.uses_probe)
        if key == "probe_eps":
            return _probe_prop(probe, "takes_radius")
        if key == "transfer_k":
            return method is not None and method.trains == "last-k"
        return True

    def _options_for(self, probe: str, transfer: str) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if self._applies(k, transfer, probe)}

    def _check_options_apply(self, pairs: Sequence[tuple[str, str]]) -> None:
        what = {"probe_C": "probes that take a C (e.g. logistic) with transfer lp or lp-ft",
                "probe_eps": "Delta-aware probes (probe 'robust')", "transfer_k": "transfer 'ft-last-k'"}
        for key, text in what.items():
            if key in self.options and not any(self._applies(key, t, p) for t, p in pairs):
                raise ValueError(f"{key}={self.options[key]!r} applies to {text}, which this sweep does not run "
                                 f"(probes {list(self.probes)}, transfers {list(self.transfers)}); drop {key}")

    @cached_property
    def units(self) -> tuple[SweepUnit, ...]:
        """Every unit, in the order backbone, task, norm, n, attack, seed, transfer, probe; built (and
        checked) once. Raises ``ValueError`` listing every distinct problem."""
        pairs = self._pairs()
        self._check_options_apply(pairs)
        problems: dict[str, None] = {}
        units: list[SweepUnit] = []
        for ref, task, norm, n, attack, seed, (transfer, probe) in itertools.product(
                self.backbones, self.tasks, self.norm, self.n, self.attack, self.seed, pairs):
            try:
                spec = EvalSpec(backbone=ref, tasks=(task,), eps=self.eps, norm=norm, n=n, attack=attack,
                                probe=probe, transfer=transfer, seed=seed, **self._options_for(probe, transfer))
            except ValueError as e:
                problems.setdefault(str(e))
                if len(problems) >= MAX_PROBLEMS:
                    break
                continue
            units.append(_unit(spec))
        if problems:
            listed = list(problems)
            if len(listed) == 1:
                raise ValueError(listed[0])
            more = " (and possibly more)" if len(listed) >= MAX_PROBLEMS else ""
            raise ValueError(f"the sweep has {len(listed)} problems{more}:\n" + "\n".join(f"  - {p}" for p in listed))
        ids = [u.id for u in units]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"the sweep lists the same evaluation more than once ({dup}); list each value once")
        return tuple(units)

    def digest(self) -> str:
        """sha256 over the units' digests, in order."""
        return hashlib.sha256("\n".join(u.digest for u in self.units).encode()).hexdigest()

    # ---------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        """The sweep as a table of plain values (what a sweep file holds; a one-value axis as that value)."""
        backbones = [d["backbone"] if set(d) == {"backbone"} else d for d in (r.to_dict() for r in self.backbones)]
        first = self.units[0].spec.to_dict()

        def one(values: list[Any]) -> Any:
            return values if len(values) > 1 else values[0]

        attacks = [a if isinstance(a, str) else _plain_settings(a) for a in self.attack]
        out: dict[str, Any] = {"backbones": backbones, "tasks": list(self.tasks), "eps": first["eps"],
                               "norm": one(list(self.norm)), "n": one(list(self.n)), "attack": one(attacks),
                               "probes": list(self.probes), "transfers": list(self.transfers),
                               "seed": one(list(self.seed))}
        out.update(self.options)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        """A sweep from a table of keys (see the module docstring); unknown keys name the valid ones."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a sweep spec must be a table of keys (backbones, tasks, eps, ...), "
                             f"got {type(data).__name__}")
        data = dict(data)
        for single, plural in ALIASES.items():
            if single in data:
                if plural in data:
                    raise ValueError(f"give either {single!r} or {plural!r}, not both")
                data[plural] = data.pop(single)
        misplaced = sorted({"weights", "label", "pretrained"} & set(data))
        if misplaced:
            raise ValueError(f"{misplaced} belong to one backbone: write backbones = [{{backbone = \"NAME\", "
                             f"weights = \"FILE.safetensors\", label = \"NAME\"}}]")
        allowed = {*AXES, "eps", *OPTIONS}
        unknown = sorted(set(data) - allowed)
        if unknown:
            hint = {"probe": "probes", "transfer": "transfers", "seeds": "seed", "norms": "norm",
                    "attacks": "attack", "task": "tasks"}
            fix = [f"{k!r} -> {hint[k]!r}" for k in unknown if k in hint]
            raise ValueError(f"unknown sweep keys {unknown}{' (' + ', '.join(fix) + ')' if fix else ''}; "
                             f"valid keys: {sorted(allowed | set(ALIASES))}")
        missing = [k for k in ("backbones", "tasks", "eps") if k not in data]
        if missing:
            raise ValueError(f"the sweep has no {missing}; a sweep needs at least backbones, tasks and eps")
        defaults = {f.name: f.default for f in fields(EvalSpec)}
        kw: dict[str, Any] = {"backbones": data["backbones"], "tasks": data["tasks"], "eps": data["eps"]}
        for key in ("norm", "n", "attack", "seed"):
            kw[key] = data.get(key, defaults[key])
        kw["probes"] = data.get("probes", defaults["probe"])
        kw["transfers"] = data.get("transfers", defaults["transfer"])
        kw["options"] = {k: data[k] for k in OPTIONS if k in data}
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def load_sweep_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and check a sweep file (``.toml`` or ``.json``); errors name the file and the problem.
    Relative weights and ``folder:`` / ``npz:`` paths are read relative to the current folder."""
    p = Path(path).expanduser()
    data = read_spec_file(p)
    try:
        return SweepSpec.from_dict(data)
    except ValueError as e:
        raise ValueError(f"sweep file {str(p)!r}: {e}") from None


def as_sweep_spec(spec: SweepSpec | Mapping[str, Any] | str | os.PathLike[str]) -> SweepSpec:
    """A :class:`SweepSpec` from itself, a table of keys, or the path of a sweep file."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return SweepSpec.from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return load_sweep_spec(spec)
    raise ValueError(f"sweep spec {spec!r} ({type(spec).__name__}) must be a SweepSpec, a dict of keys or the "
                     f"path of a .toml / .json sweep file")


# ---------------------------------------------------------------- helpers

def _as_axis(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} is an empty list; give at least one value")
        return tuple(value)
    return (value,)


def _backbone_ref(entry: Any) -> BackboneRef:
    if isinstance(entry, BackboneRef):
        return entry
    if isinstance(entry, str):
        return BackboneRef(entry)
    if isinstance(entry, Mapping):
        unknown = sorted(set(entry) - set(BACKBONE_KEYS))
        if unknown or "backbone" not in entry:
            raise ValueError(f"backbone entry {dict(entry)!r}: a table needs 'backbone' and may have "
                             f"{list(BACKBONE_KEYS[1:])}" + (f"; unknown keys {unknown}" if unknown else ""))
        try:
            return BackboneRef(entry["backbone"], weights=entry.get("weights"), pretrained=entry.get("pretrained", True),
                               label=entry.get("label"))
        except ValueError as e:
            raise ValueError(f"backbone entry {dict(entry)!r}: {e}") from None
    raise ValueError(f"backbone entry {entry!r} ({type(entry).__name__}) must be a name or a table "
                     f"{{backbone = \"NAME\", weights = \"FILE\"}}")


def _lookup(info: Any, name: Any) -> Any:
    """A registry entry, or None for a name the registry does not know (the spec check reports it)."""
    try:
        return info(name)
    except (ValueError, KeyError, TypeError):
        return None


def _probe_prop(name: str, prop: str) -> bool:
    entry = _lookup(probe_info, name)
    return bool(getattr(entry, prop, False)) if entry is not None else False


def _plain_settings(attack: Any) -> Any:
    """Custom attack settings as a plain table (a dict stays a dict)."""
    if isinstance(attack, Mapping):
        return dict(attack)
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(attack).items()}


def _no_duplicates(name: str, values: Sequence[Any]) -> None:
    seen: set[Any] = set()
    dup = [v for v in values if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
    if dup:
        raise ValueError(f"{name} lists {sorted(set(map(str, dup)))} more than once; give each value once")


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
