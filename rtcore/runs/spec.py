"""The evaluation as a value: :class:`EvalSpec` names everything that changes a number, declared once.

A spec is built from keywords (the library), from command-line flags, or from a TOML/JSON file a
user writes by hand::

    backbone = "fmnist-cnn-pgd-linf-0.1"
    tasks = ["fmnist-seen", "shapes"]
    norm = "linf"
    eps = ["1/255", "2/255", 0.0156862745]    # numbers, or fractions such as "8/255"
    n = 200                                   # or "all"
    attack = "fast"

    [finetune]                                # transfer methods that train (ft, lp-ft, ft-last-k)
    epochs = 5

Each field is declared once, in the class body below, with its help, its file key, whether it
changes a number, where it applies and whether a sweep may vary it (:mod:`.fields`); the command
line, the file schema, :meth:`EvalSpec.to_dict`, :meth:`EvalSpec.command`, the sweep axes and the
keyword API are derived from those declarations.

Values are checked as they take effect (:meth:`EvalSpec.__post_init__`): normalised first (eps
``"8/255"`` is 0.0313725..., ``n = "all"`` is each task's test-set size), then checked for ranges,
duplicates after normalising, ``n`` against each task's test set, and applicability (a field set
where it does not apply is an error); every distinct problem is listed in one :class:`SpecError`,
before any work. :meth:`EvalSpec.digest` is a stable sha256 of what changes the numbers (weights and
user data by their content), the same in every process and on every machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..attacks import STRENGTHS, AttackSettings
from ..attacks.settings import PRECISIONS
from ..config import NORMS, check_eps, check_norm, eps_text
from ..data import task_test_size
from ..models.ref import BackboneRef
from ..numerics import CHUNK_ROWS
from ..probes import list_probes
from ..transfer.recipe import FineTuneRecipe, list_transfers, transfer_info
from ..validation import check_count, check_seed
from .fields import declared, flag_text, groups, option
from .spec_checks import (RULES, Rule, SpecError, check_attack, check_bool, check_choice, check_eps_list,
                          check_backbone_ref, check_batch_size, check_device, check_n, check_probe_c, check_tasks,
                          check_transfer_k, n_problem, pair_problem, parse_eps_text)
from .spec_files import file_digest, interpreter, read_spec_file, task_identity, toml_text

__all__ = ["PRECISIONS", "RULES", "EvalSpec", "Rule", "SpecError", "check_attack", "check_backbone_ref",
           "check_batch_size", "check_device", "check_n", "check_probe_c", "check_tasks", "check_transfer_k",
           "file_digest", "interpreter", "load_spec", "parse_eps_text", "read_spec_file", "task_identity"]

#: bump when the meaning of a spec field changes (it enters :meth:`EvalSpec.digest`)
SPEC_VERSION = 2


# ------------------------------------------------------------------------------------------ the spec

def _check_finetune(value: object) -> FineTuneRecipe:
    if isinstance(value, Mapping):
        known = [d.key.split(".", 1)[1] for d in declared(EvalSpec) if d.table == "finetune"]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown finetune keys {unknown}; valid: {known}")
        value = FineTuneRecipe(**value)
    if not isinstance(value, FineTuneRecipe):
        raise ValueError(f"finetune={value!r} must be a table of {[f.name for f in fields(FineTuneRecipe)]}")
    if value.seed is not None:
        raise ValueError(f"finetune seed={value.seed!r}: the spec's seed seeds the fine-tuning; leave it out")
    return value



@dataclass(frozen=True, kw_only=True)
class EvalSpec:
    """One evaluation: a backbone, tasks, a threat model and eps grid, ``n`` test points per task, an attack
    strength, a linear head (probe kind and its parameters) or a transfer method, a seed, and how it runs
    (device, batch size, precision). Keyword-only; every field is described by its declaration below
    (``rtcore.runs.fields.declared(EvalSpec)`` lists them with their help). A bad value raises
    :class:`SpecError` (a ValueError) listing every problem with its fix.
    """

    backbone: BackboneRef = option(help="the backbone and its weights", group="flat", sweep="values",
                                   plural="backbones", required=True)
    tasks: tuple[str, ...] = option(help="task names, folder:PATH or npz:PATH", kind="list", sweep="split",
                                    required=True)
    eps: tuple[float, ...] = option(help="budgets in [0, 1] pixel units: numbers or fractions, e.g. 1/255 2/255 "
                                         "8/255", kind="list", required=True)
    norm: str = option("linf", help="threat model", kind="choice", choices=lambda: NORMS, sweep="values")
    n: int | str = option(500, help="test points per task (a seeded subset), or all", kind="number",
                          sweep="values")
    attack: str | AttackSettings = option("standard", help="attack strength (a [attack] table of AttackSettings "
                                                           "in a file)", kind="choice", choices=lambda: STRENGTHS,
                                          sweep="values")
    probe: str = option("logistic", help="linear head: logistic (C on a held-out split), logistic-std, robust "
                                         "(Delta-aware)", kind="choice", choices=list_probes, sweep="values",
                        plural="probes", applies="probe")
    probe_C: float | str = option("auto", help="the probe's C instead of choosing it on held-out data",
                                  kind="number", applies="probe_C", sweep="values")
    probe_eps: float | None = option(None, help="the budget whose training-point Delta sets a robust probe's "
                                                "radius (default 2/255 linf, 0.2 l2)", applies="probe_eps")
    transfer: str = option("lp", help="lp: probe the frozen backbone; ft, lp-ft, ft-last-k: fine-tune it per task "
                                      "first", kind="choice", choices=list_transfers, sweep="values",
                           plural="transfers")
    transfer_k: int | None = option(None, help="ft-last-k: the number of last blocks it trains (default 1)",
                                    kind="number", applies="transfer_k", sweep="values")
    finetune: FineTuneRecipe = option(FineTuneRecipe(), help="how ft, lp-ft and ft-last-k train", group="table",
                                      prefix="ft-", applies="finetune")
    seed: int = option(0, help="seed of the test subset, the probe's split and the attacks", kind="number",
                       sweep="values")
    precision: str = option("float32", help="arithmetic of the attacks' search (float32, or bfloat16 / float16 "
                                            "autocast; reported numbers are recomputed in float32)",
                            kind="choice", choices=lambda: PRECISIONS, sweep="values")
    head_attack: bool = option(True, help="also run the head-subspace attack (bound_head)", kind="flag")
    loss_attack: bool = option(True, help="also run the cross-entropy attack (adv_loss)", kind="flag")
    sanity: bool = option(False, help="also run the sanity checks (monotone/large eps, noise, more steps, Square)",
                          kind="flag")
    sanity_subset: int = option(128, help="test points the sanity checks use", kind="number", applies="sanity")
    device: str = option("auto", help="auto (CUDA when present), cpu, cuda or cuda:N", digest=False)
    batch_size: int | str = option("auto", help="images per batch, or auto (from free memory); bounds memory. "
                                                "From one chunk (32 on a CPU, 256 on a GPU) up it changes no number; "
                                                "a smaller batch is the chunk, other arithmetic, keyed apart",
                                   kind="number", digest=False)
    download: bool = option(False, help="allow dataset downloads", kind="flag", digest=False)
    #: tasks given as Task objects in Python: (name, content digest, test size) (not writable to a file)
    given_tasks: tuple[tuple[str, str, int], ...] = field(default=())

    def __post_init__(self) -> None:
        problems: list[str] = []
        set_ = object.__setattr__

        def fix(name: str, check: Callable[[Any], Any]) -> None:
            try:
                set_(self, name, check(getattr(self, name)))
            except SpecError as e:
                problems.extend(e.problems)
            except ValueError as e:
                problems.append(str(e))

        set_(self, "given_tasks", tuple((str(n), str(d), int(k)) for n, d, k in self.given_tasks))
        fix("backbone", check_backbone_ref)
        fix("norm", check_norm)
        norm = self.norm if self.norm in NORMS else "linf"
        fix("eps", lambda e: check_eps_list(e, norm))
        fix("tasks", lambda t: check_tasks(t, {n for n, _, _ in self.given_tasks}))
        fix("n", check_n)
        fix("seed", check_seed)
        fix("attack", check_attack)
        fix("probe", check_choice("probe", list_probes))
        fix("probe_C", check_probe_c)
        if self.probe_eps is not None:
            fix("probe_eps", lambda e: check_eps(parse_eps_text(e), norm)[0][0])
        fix("transfer", check_choice("transfer", list_transfers))
        if self.transfer_k is not None:
            fix("transfer_k", check_transfer_k)
        fix("finetune", _check_finetune)
        fix("precision", check_choice("precision", lambda: PRECISIONS))
        for name in ("head_attack", "loss_attack", "sanity", "download"):
            fix(name, check_bool(name))
        fix("sanity_subset", lambda v: check_count(v, "sanity_subset"))
        fix("device", check_device)
        fix("batch_size", check_batch_size)
        if not problems:
            problems += self._relations()
        if problems:
            raise SpecError(problems)
        if self.transfer_k is None and transfer_info(self.transfer).trains == "last-k":
            set_(self, "transfer_k", 1)

    def _relations(self) -> list[str]:
        """Rules between fields, once every value is valid: applicability, the probe and transfer pair,
        ``n`` against each task's test set."""
        problems = []
        for d in declared(EvalSpec):
            rule = RULES.get(d.option.applies or "")
            if rule is not None and d.table is None and d.get(self) != d.default and not rule.test(self):
                problems.append(f"{d.key}={d.get(self)!r} applies to {rule.where}; this spec does not run one "
                                f"(probe={self.probe!r}, transfer={self.transfer!r}): drop {d.key} ({d.flag})")
        for name, (opt, kind) in groups(EvalSpec).items():
            rule = RULES.get(opt.applies or "")
            if rule is not None and getattr(self, name) != kind() and not rule.test(self):
                problems.append(f"{name} settings apply to {rule.where}; transfer={self.transfer!r} trains nothing: "
                                f"drop the [{name}] table (--ft-* flags)")
        if isinstance(self.attack, AttackSettings) and self.attack.precision != "float32":
            problems.append(f"the [attack] table sets precision={self.attack.precision!r}; the spec's own key sets "
                            f"it: write precision = {self.attack.precision!r} at the top of the spec instead")
        pair = pair_problem(self.probe, self.transfer)
        if pair:
            problems.append(pair)
        for task, size in self.test_sizes().items():
            p = n_problem(self.n, task, size)
            if p:
                problems.append(p)
        return problems

    # ---------------------------------------------------------------- derived values
    def test_sizes(self) -> dict[str, int | None]:
        """Each task's number of test images, where known without loading it (None otherwise)."""
        given = {n: k for n, _, k in self.given_tasks}
        return {t: given[t] if t in given else task_test_size(t) for t in self.tasks}

    def n_for(self, test_size: int) -> int:
        """The test points drawn from a task with ``test_size`` test images (``n = "all"``: every one)."""
        if self.n == "all":
            return test_size
        problem = n_problem(self.n, "this task", test_size)
        if problem:
            raise ValueError(problem)
        return int(self.n)

    @property
    def strength(self) -> str:
        """The strength's name as the tables record it (the settings' key for custom settings)."""
        return self.attack if isinstance(self.attack, str) else repr(self.attack.key())

    def settings(self) -> AttackSettings:
        """The attack settings of :attr:`attack`."""
        from ..attacks import create_strength

        s = create_strength(self.attack) if isinstance(self.attack, str) else self.attack
        return s if s.precision == self.precision else replace(s, precision=self.precision)

    def with_(self, **changes: Any) -> EvalSpec:
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)

    # ---------------------------------------------------------------- files
    def _plain(self, for_digest: bool = False) -> dict[str, Any]:
        """The declared fields that differ from their defaults (required ones always), as plain values."""
        out: dict[str, Any] = {}
        for d in declared(EvalSpec):
            if for_digest and not d.option.digest:
                continue
            value = d.get(self)
            if d.default is not MISSING and value == d.default and not d.option.required:
                continue
            if d.key == "transfer_k" and self.transfer == "ft-last-k" and value == 1:
                continue
            value = _plain_value(value, d.key)
            if d.table:
                out.setdefault(d.table, {})[d.key.split(".", 1)[1]] = value
            else:
                out[d.key] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """The spec as a table of plain values (what a spec file holds); fields at their default are left
        out. A module backbone or a Task object given in Python has no file form."""
        if self.backbone.is_module:
            self.backbone.to_dict()  # raises, naming the fix
        if self.given_tasks:
            raise ValueError(f"tasks {[n for n, _, _ in self.given_tasks]} were given as Task objects and cannot be "
                             f"written to a spec file; save them as an image folder or .npz and refer to them as "
                             f"'folder:PATH' / 'npz:PATH'")
        return self._plain()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalSpec:
        """A spec from :meth:`to_dict`'s form; an unknown key is an error naming the valid keys."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a spec must be a table of keys (backbone, tasks, eps, ...), got {type(data).__name__}")
        return cls(**keywords(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def to_toml(self) -> str:
        """The spec as TOML (flat keys, then the tables: ``[attack]`` custom settings, ``[finetune]``)."""
        return toml_text(self.to_dict())

    def digest(self) -> str:
        """sha256 of what changes the numbers (the fields declared ``digest=True``, and a batch size below a
        device's chunk, which becomes the chunk): stable across processes and machines. Files (weights, user
        data) enter by their content, so a moved file keeps the digest and a changed one does not; a module
        backbone by its fingerprint, a Task object by its tensors' digest; ``n = "all"`` as each task's size, so
        it equals the same number written out."""
        d = self._plain(for_digest=True)
        if "weights" in d:
            d["weights"] = file_digest(d["weights"])
        given = {n: dg for n, dg, _ in self.given_tasks}
        d["tasks"] = [f"given:{given[t]}" if t in given else task_identity(t) for t in self.tasks]
        if self.backbone.is_module:
            d["backbone"] = f"module:{self.backbone.fingerprint}"
        d["eps"] = [repr(float(e)) for e in self.eps]
        d["n"] = [self.n if self.n != "all" else size for size in self.test_sizes().values()]
        if isinstance(self.batch_size, int) and self.batch_size < max(CHUNK_ROWS.values()):
            d["rows_per_chunk"] = self.batch_size  # a batch below a device's chunk is that chunk: other arithmetic
        d["spec_version"] = SPEC_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()

    def command(self, *, out: str | None = None, samples_out: str | None = None,
                python: str | None = None) -> str:
        """The ``python -m rtcore evaluate`` command line that builds this spec from flags."""
        if not isinstance(self.attack, str):
            raise ValueError("custom AttackSettings have no command-line form; write the spec to a file "
                             "(EvalSpec.to_toml) and run `python -m rtcore evaluate --spec FILE`")
        plain = self.to_dict()  # raises for a module backbone or Task objects: they have no command-line form
        words = [python or "python", "-m", "rtcore", "evaluate"]
        for d in declared(EvalSpec):
            where = plain.get(d.table, {}) if d.table else plain
            key = d.key.split(".", 1)[1] if d.table else d.key
            if key in where and d.option.flag:
                words += flag_text(d, where[key])
        words += [*(["--out", out] if out else []), *(["--samples-out", samples_out] if samples_out else [])]
        return shlex.join(words)


def keywords(data: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`EvalSpec` keywords from a file's table: the backbone's keys gathered into a
    :class:`BackboneRef`; an unknown key, or a missing required one, is an error naming the valid keys."""
    flat = [d for d in declared(EvalSpec) if d.table is None]
    tables = {name for name, (opt, _) in groups(EvalSpec).items() if opt.group == "table"}
    allowed = {d.key for d in flat} | tables
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown spec keys {unknown}; valid keys: {sorted(allowed)}")
    missing = [d.key for d in flat if d.option.required and d.key not in data]
    if missing:
        raise ValueError(f"the spec has no {missing[0]!r}; a spec needs at least backbone, tasks and eps")
    kw: dict[str, Any] = {}
    ref_keys = {d.key: d.path[-1] for d in flat if d.path[0] == "backbone"}
    for d in flat:
        if d.key in data and d.path[0] != "backbone":
            kw[d.path[0]] = data[d.key]
    for t in tables:
        if t in data:
            kw[t] = data[t]
    ref = {ref_keys[k]: v for k, v in data.items() if k in ref_keys}
    if isinstance(ref.get("name"), BackboneRef):
        if len(ref) > 1:
            raise SpecError([f"give {sorted(k for k in data if k in ref_keys and k != 'backbone')} inside the "
                             f"BackboneRef, not beside it"])
        kw["backbone"] = ref["name"]
    else:
        try:
            kw["backbone"] = BackboneRef(**ref)
        except (TypeError, ValueError) as e:
            raise SpecError([str(e)]) from None
    return kw


def _plain_value(value: Any, key: str = "") -> Any:
    """A field value as a file holds it (eps as k/255 where they are, tuples as lists, AttackSettings as a
    table without unset fields)."""
    if key in ("eps", "probe_eps"):
        return [eps_text(e) for e in value] if isinstance(value, tuple) else eps_text(value)
    if isinstance(value, AttackSettings):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(value).items() if v is not None}
    if isinstance(value, tuple):
        return list(value)
    return value


def load_spec(path: str | os.PathLike[str]) -> EvalSpec:
    """Read a spec file (``.toml`` or ``.json``); errors name the file and every problem."""
    p = Path(path).expanduser()
    data = read_spec_file(p)
    try:
        return EvalSpec.from_dict(data)
    except ValueError as e:
        raise named_in(e, f"spec file {str(p)!r}") from None


def named_in(err: ValueError, where: str) -> ValueError:
    """``err`` with ``where`` (a file) named in its message, every problem still listed."""
    if isinstance(err, SpecError):
        return SpecError(err.problems, where) if len(err.problems) > 1 else SpecError([f"{where}: {err.problems[0]}"])
    return ValueError(f"{where}: {err}")

