"""The evaluation as a value: :class:`EvalSpec` names everything that changes a number, checked once.

A spec is built from keyword arguments (the library), from CLI flags, or from a TOML/JSON file a
user writes by hand::

    backbone = "fmnist-cnn-pgd-linf-0.1"
    tasks = ["fmnist-seen", "shapes"]
    norm = "linf"
    eps = ["1/255", "2/255", 0.0156862745]    # numbers, or "k/255" in a file
    n = 200
    attack = "fast"

Every rule is checked in :meth:`EvalSpec.__post_init__` (once, with a message that names the bad
value and the fix); the spec is frozen and hashable. :meth:`EvalSpec.digest` is a stable sha256 of
what changes the numbers (weights and user data files by their content, not their path), the same
in every process and on every machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..attacks import AttackSettings, STRENGTHS
from ..config import check_eps, check_norm, unique_eps
from ..data import check_task_ref, task_display_name
from ..models.ref import BackboneRef
from ..probes import list_probes, probe_info
from ..transfer.recipe import list_transfers, transfer_info
from ..validation import check_count, check_seed
from .spec_files import file_digest, interpreter, read_spec_file, task_identity, toml_value

__all__ = ["EvalSpec", "check_attack", "check_backbone_ref", "check_probe_c", "check_tasks", "check_transfer_k",
           "file_digest", "interpreter", "load_spec", "parse_eps_text", "read_spec_file", "task_identity"]

#: bump when the meaning of a spec field changes (it enters :meth:`EvalSpec.digest`)
SPEC_VERSION = 1
_K255 = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*255\s*$")


def parse_eps_text(value: object) -> object:
    """``"8/255"`` -> 8/255 (spec files and the CLI may write eps this way); anything else unchanged."""
    if isinstance(value, str):
        m = _K255.match(value)
        if m:
            return float(m.group(1)) / 255
    return value


def check_tasks(tasks: object, given: Iterable[str] = ()) -> tuple[str, ...]:
    """A non-empty list of distinct task references (one name is one task, never a list of letters);
    names in ``given`` are tasks given as objects."""
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, Iterable):
        raise ValueError(f"tasks={tasks!r} must be a list of task names")
    tasks = list(tasks)  # read once: a generator is a list of tasks too
    known = set(given)
    for t in tasks:
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"task {t!r} must be a task name (see `python -m rtcore list`) or a "
                             f"'folder:PATH' / 'npz:PATH' reference")
    out = [t if t in known else check_task_ref(t) for t in tasks]
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
    from ..models import TIMM_PREFIX, check_safetensors_file, list_backbones

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
        if ref.name.startswith(TIMM_PREFIX):
            if not ref.name[len(TIMM_PREFIX):].strip():
                raise ValueError(f"backbone={ref.name!r} names no timm model; write e.g. 'timm:resnet18'")
        elif ref.name not in list_backbones():
            raise ValueError(f"unknown backbone {ref.name!r}; valid names: {', '.join(list_backbones())} "
                             f"(or 'timm:<model>' for any timm model)")
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


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation: a backbone, tasks, a threat model and eps grid, n test points per task, an attack
    strength, a linear head (probe kind and its parameters) or a transfer method, and a seed.

    ``probe_eps`` (robust probe only): the budget whose training-point Delta sets its radius
    (default 2/255 linf, 0.2 l2). ``transfer_k``: the blocks ``ft-last-k`` trains (that method only).
    ``head_attack`` / ``loss_attack``: also run the head-subspace and cross-entropy attacks.
    ``sanity``: also run the sanity checks (on ``sanity_subset`` points for the subset checks).
    ``download``: allow dataset downloads (changes no number; not part of :meth:`digest`).
    Fields are normalised on construction (eps canonical and sorted, tasks a tuple, the backbone a
    :class:`BackboneRef`); a bad value raises ``ValueError`` naming it and the fix.
    """

    backbone: BackboneRef
    tasks: tuple[str, ...]
    eps: tuple[float, ...]
    norm: str = "linf"
    n: int = 500
    attack: str | AttackSettings = "standard"
    probe: str = "logistic"
    probe_C: float | str = "auto"
    probe_eps: float | None = None
    transfer: str = "lp"
    transfer_k: int | None = None
    seed: int = 0
    head_attack: bool = True
    loss_attack: bool = True
    sanity: bool = False
    sanity_subset: int = 128
    download: bool = False
    #: tasks given as Task objects in Python: (name, content digest) pairs (not writable to a file)
    given_tasks: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "backbone", check_backbone_ref(self.backbone))
        set_(self, "given_tasks", tuple((str(n), str(d)) for n, d in self.given_tasks))
        set_(self, "norm", check_norm(self.norm))
        eps = self.eps
        if isinstance(eps, (list, tuple)):
            eps = [parse_eps_text(e) for e in eps]
        else:
            eps = parse_eps_text(eps)
        set_(self, "eps", tuple(sorted(unique_eps(check_eps(eps, self.norm)[0]))))
        set_(self, "tasks", check_tasks(self.tasks, {n for n, _ in self.given_tasks}))
        set_(self, "n", check_count(self.n, "n"))
        set_(self, "seed", check_seed(self.seed))
        set_(self, "attack", check_attack(self.attack))
        if self.probe not in list_probes():
            raise ValueError(f"probe={self.probe!r} is unknown; use one of {list_probes()}")
        set_(self, "probe_C", check_probe_c(self.probe_C))
        kind = probe_info(self.probe)
        if self.probe_C != "auto" and not kind.takes_C:
            raise ValueError(f"probe={self.probe!r} has no C parameter (it fixes its own); drop probe_C (--probe-C)")
        if self.probe_eps is not None:
            if not kind.takes_radius:
                raise ValueError(f"probe_eps={self.probe_eps!r} sets the radius of Delta-aware probes "
                                 f"(probe='robust'); probe={self.probe!r} has none: drop it (--probe-eps) or use "
                                 f"--probe robust")
            set_(self, "probe_eps", check_eps(parse_eps_text(self.probe_eps), self.norm)[0][0])
        method = transfer_info(self.transfer)
        if not method.uses_probe and self.probe != "logistic":
            with_probe = [m for m in list_transfers() if transfer_info(m).uses_probe]
            raise ValueError(f"probe={self.probe!r} applies to the transfer methods {with_probe}; "
                             f"transfer={self.transfer!r} trains its own head: drop --probe")
        if method.trains != "none" and kind.takes_radius:
            raise ValueError(f"probe={self.probe!r} needs the frozen backbone's Delta (transfer='lp'); "
                             "use another probe with lp-ft")
        if self.transfer_k is not None:
            if method.trains != "last-k":
                raise ValueError(f"transfer_k={self.transfer_k!r} applies to transfer='ft-last-k' only; drop it "
                                 f"(--transfer-k) or use --transfer ft-last-k")
            set_(self, "transfer_k", check_transfer_k(self.transfer_k))
        elif method.trains == "last-k":
            set_(self, "transfer_k", 1)
        for name in ("head_attack", "loss_attack", "sanity", "download"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be true or false")
        set_(self, "sanity_subset", check_count(self.sanity_subset, "sanity_subset"))

    # ---------------------------------------------------------------- derived values
    @property
    def strength(self) -> str:
        """The strength's name as the tables record it (the settings' key for custom settings)."""
        return self.attack if isinstance(self.attack, str) else repr(self.attack.key())

    def settings(self) -> AttackSettings:
        """The attack settings of :attr:`attack`."""
        from ..attacks import resolve_settings

        return resolve_settings(self.attack)

    def with_(self, **changes: Any) -> EvalSpec:
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)

    # ---------------------------------------------------------------- files
    def _as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backbone": self.backbone.name}
        for key in ("weights", "label"):
            if getattr(self.backbone, key):
                out[key] = getattr(self.backbone, key)
        if not self.backbone.pretrained:
            out["pretrained"] = False
        out.update(tasks=list(self.tasks), norm=self.norm, eps=list(self.eps), n=self.n,
                   attack=self.attack if isinstance(self.attack, str) else _settings_dict(self.attack),
                   probe=self.probe, seed=self.seed)
        defaults = {f.name: f.default for f in fields(EvalSpec)}
        for name in ("probe_C", "probe_eps", "transfer", "transfer_k", "head_attack", "loss_attack", "sanity",
                     "sanity_subset", "download"):
            value = getattr(self, name)
            if value != defaults[name] and not (name == "transfer_k" and self.transfer == "ft-last-k" and value == 1):
                out[name] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """The spec as a flat dict of plain values (what a spec file holds); defaults of optional
        fields are left out. A module backbone or a Task object given in Python has no file form."""
        if self.backbone.is_module:
            self.backbone.to_dict()  # raises, naming the fix
        if self.given_tasks:
            raise ValueError(f"tasks {[n for n, _ in self.given_tasks]} were given as Task objects and cannot be "
                             f"written to a spec file; save them as an image folder or .npz and refer to them as "
                             f"'folder:PATH' / 'npz:PATH'")
        return self._as_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalSpec:
        """A spec from :meth:`to_dict`'s form; an unknown key is an error naming the valid keys."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a spec must be a table of keys (backbone, tasks, eps, ...), got {type(data).__name__}")
        allowed = {"backbone", "weights", "pretrained", "label", *(f.name for f in fields(cls))} - {"given_tasks"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown spec keys {unknown}; valid keys: {sorted(allowed)}")
        for key in ("backbone", "tasks", "eps"):
            if key not in data:
                raise ValueError(f"the spec has no {key!r}; a spec needs at least backbone, tasks and eps")
        kw = {k: v for k, v in data.items() if k not in ("backbone", "weights", "pretrained", "label")}
        ref = check_backbone_ref(data["backbone"], data.get("weights"), data.get("pretrained", True),
                                 data.get("label"))
        return cls(backbone=ref, **kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def to_toml(self) -> str:
        """The spec as TOML (flat keys; custom attack settings as an ``[attack]`` table at the end)."""
        items = self.to_dict().items()
        lines = [f"{k} = {toml_value(v)}" for k, v in items if not isinstance(v, dict)]
        for k, v in items:
            if isinstance(v, dict):
                lines += ["", f"[{k}]", *(f"{kk} = {toml_value(vv)}" for kk, vv in v.items())]
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        """sha256 of what changes the numbers: stable across processes and machines. Files (weights,
        user data) enter by their content, so a moved file keeps the digest and a changed one does not;
        a module backbone by its fingerprint, a Task object by its tensors' digest."""
        d = self._as_dict()
        for k in ("label", "download"):
            d.pop(k, None)
        if "weights" in d:
            d["weights"] = file_digest(d["weights"])
        given = dict(self.given_tasks)
        d["tasks"] = [f"given:{given[t]}" if t in given else task_identity(t) for t in d["tasks"]]
        if self.backbone.is_module:
            d["backbone"] = f"module:{self.backbone.fingerprint}"
        d["eps"] = [repr(float(e)) for e in d["eps"]]
        d["spec_version"] = SPEC_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()

    def command(self, *, out: str | None = None, samples_out: str | None = None,
                python: str | None = None) -> str:
        """The ``python -m rtcore evaluate`` command line that builds this spec from flags."""
        exe = python or "python"
        a = self._as_dict()
        parts = [exe, "-m", "rtcore", "evaluate", "--backbone", self.backbone.name,
                 *(["--weights", self.backbone.weights] if self.backbone.weights else []),
                 *(["--no-pretrained"] if not self.backbone.pretrained else []),
                 *(["--label", self.backbone.label] if self.backbone.label is not None else []),
                 "--tasks", *self.tasks, "--eps", *[_exact(e) for e in self.eps], "--norm", self.norm,
                 "--n", str(self.n)]
        if not isinstance(self.attack, str):
            raise ValueError("custom AttackSettings have no command-line form; write the spec to a file "
                             "(EvalSpec.to_toml) and run `python -m rtcore evaluate --spec FILE`")
        parts += ["--attack", self.attack, "--seed", str(self.seed), "--probe", self.probe]
        if "probe_C" in a:
            parts += ["--probe-C", _exact(self.probe_C) if not isinstance(self.probe_C, str) else self.probe_C]
        if self.probe_eps is not None:
            parts += ["--probe-eps", _exact(self.probe_eps)]
        if self.transfer != "lp":
            parts += ["--transfer", self.transfer]
        self.to_dict()  # raises for a module backbone or Task objects: they have no command-line form
        if self.transfer == "ft-last-k":
            parts += ["--transfer-k", str(self.transfer_k)]
        if not self.head_attack:
            parts.append("--no-head-attack")
        if not self.loss_attack:
            parts.append("--no-loss-attack")
        if self.sanity:
            parts.append("--sanity")
            if "sanity_subset" in a:
                parts += ["--sanity-subset", str(self.sanity_subset)]
        if self.download:
            parts.append("--download")
        if out:
            parts += ["--out", out]
        if samples_out:
            parts += ["--samples-out", samples_out]
        return shlex.join(parts)


def load_spec(path: str | os.PathLike[str]) -> EvalSpec:
    """Read a spec file (``.toml`` or ``.json``); errors name the file and the problem."""
    p = Path(path).expanduser()
    data = read_spec_file(p)
    try:
        return EvalSpec.from_dict(data)
    except ValueError as e:
        raise ValueError(f"spec file {str(p)!r}: {e}") from None


# ---------------------------------------------------------------- helpers

def _exact(e: float) -> str:
    """The shortest text that reads back as the same float (``0``, ``0.05``, ``0.00392156862745098``)."""
    text = repr(float(e))
    return text[:-2] if text.endswith(".0") else text


def _settings_dict(s: AttackSettings) -> dict[str, Any]:
    """The settings' fields (unset optional ones left out: TOML has no null)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items() if v is not None}
