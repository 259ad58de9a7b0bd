"""Spec fields declared once, and every form derived from the declarations.

A field of :class:`~rtcore.runs.spec.EvalSpec` (or of a value nested in it: the
:class:`~rtcore.models.ref.BackboneRef`, the fine-tuning recipe) carries an :class:`Option` in its
``dataclasses.field`` metadata: its help, its file key, whether it changes a number (then it enters
the digest), the rule that says where it applies, whether a sweep may vary it. From those
declarations, and from nothing else, come:

* the file schema (:func:`file_keys`, ``to_dict`` / ``from_dict``),
* the command line (:func:`add_arguments`, :func:`namespace_values`, ``command()``),
* the sweep axes (:func:`sweep_axes`),
* the keyword API (:func:`keyword_signature`).

This is the shape of OmegaConf's structured configs (one dataclass is the schema of the file and of
the overrides) and of Ray Tune's ``grid_search`` (a sweep is the same config with lists where it
varies), without a config framework: plain dataclasses and their metadata.

A nested value is declared with ``group="flat"`` (its keys sit at the top of the file, as the
backbone's ``weights`` and ``label`` do) or ``group="table"`` (a TOML table / JSON object named after
the field, e.g. ``[finetune]``; its flags get a prefix, e.g. ``--ft-epochs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal

__all__ = ["Declared", "Option", "add_arguments", "declared", "file_keys", "keyword_signature", "namespace_values",
           "groups", "option", "sweep_axes", "text_value"]

Kind = Literal["text", "number", "flag", "list", "choice"]
SweepRole = Literal["no", "values", "split"]


@dataclass(frozen=True)
class Option:
    """What a field is, for every form of a spec.

    ``help``: one line. ``key``: the file key (default: the attribute name). ``kind``: how command-line
    text becomes a value ("text", "number" (int or float, or a word such as "auto"), "flag" (a
    boolean: ``--x`` / ``--no-x``), "list" (one or more texts), "choice" (one of ``choices()``)).
    ``digest``: whether the field changes a number. ``applies``: the name of the rule that says
    where the field applies (:data:`rtcore.runs.spec.RULES`); set elsewhere it is an error.
    ``sweep``: "values" (a sweep may give a list: one unit per value), "split" (the field is a list
    and a sweep makes one unit per element) or "no". ``plural``: the sweep file's plural key
    (``backbones``, ``probes``, ``transfers``). ``group``: for a nested dataclass value, "flat" or
    "table" (see the module docstring); ``prefix``: its flags' prefix. ``flag``: False for a field
    the command line does not take. ``required``: the file and the flags must give it.
    """

    help: str
    key: str | None = None
    kind: Kind = "text"
    digest: bool = True
    applies: str | None = None
    sweep: SweepRole = "no"
    plural: str | None = None
    group: Literal["flat", "table"] | None = None
    prefix: str = ""
    flag: bool = True
    required: bool = False
    choices: Callable[[], Sequence[str]] | None = None
    metavar: str | None = None

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> Option | None:
        """The option of a field's metadata: an :class:`Option` under ``"option"``, or a plain dict
        with at least ``help`` (``sweep`` may be a bool); None for an internal field."""
        if "option" in metadata:
            return metadata["option"]
        if "help" not in metadata:
            return None
        md = dict(metadata)
        if isinstance(md.get("sweep"), bool):
            md["sweep"] = "values" if md["sweep"] else "no"
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in md.items() if k in known})


def option(default: Any = MISSING, *, default_factory: Any = MISSING, compare: bool = True, **kw: Any) -> Any:
    """A dataclass field with an :class:`Option` (see there for the keywords)."""
    return field(default=default, default_factory=default_factory, compare=compare,
                 metadata={"option": Option(**kw)})


@dataclass(frozen=True)
class Declared:
    """One declared field, flattened: ``path`` of attribute names from the spec (``("backbone", "weights")``),
    ``key`` its file key (``weights``; ``finetune.epochs`` inside a table), ``flag`` its command-line
    flag (``--weights``, ``--ft-epochs``), its :class:`Option` and default, and ``table`` the
    table it sits in (None at the top)."""

    path: tuple[str, ...]
    key: str
    flag: str
    option: Option
    default: Any
    table: str | None = None

    @property
    def dest(self) -> str:
        """The argparse destination (unique, dotted)."""
        return "spec." + ".".join(self.path)

    def get(self, obj: Any) -> Any:
        for name in self.path:
            obj = getattr(obj, name)
        return obj


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def declared(cls: type) -> list[Declared]:
    """Every declared field of the dataclass ``cls``, nested groups flattened, in declaration order."""
    return list(_walk(cls, (), None, ""))


def _walk(cls: type, path: tuple[str, ...], table: str | None, prefix: str) -> Iterator[Declared]:
    hints = None
    for f in dataclasses.fields(cls):
        opt = Option.of(f.metadata)
        if opt is None:
            continue
        if opt.group is not None:
            if hints is None:
                hints = _nested_types(cls)
            inner = hints[f.name]
            sub_table = table if opt.group == "flat" else (opt.key or f.name)
            yield from _walk(inner, (*path, f.name), sub_table, prefix + opt.prefix)
            continue
        key = opt.key or f.name
        flag = "--" + (prefix + key).replace("_", "-")
        yield Declared((*path, f.name), f"{table}.{key}" if table else key, flag, opt, _default(f), table)


def _nested_types(cls: type) -> dict[str, type]:
    """The dataclass types of ``cls``'s group fields (from their annotations)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        opt = Option.of(f.metadata)
        if opt is not None and opt.group is not None:
            if not dataclasses.is_dataclass(hints[f.name]):
                raise TypeError(f"{cls.__name__}.{f.name}: a group field must be annotated with a dataclass type")
            out[f.name] = hints[f.name]
    return out


def groups(cls: type) -> dict[str, tuple[Option, type]]:
    """The group fields of ``cls`` (nested dataclass values) by attribute name: their option and type."""
    types = _nested_types(cls)
    return {f.name: (Option.of(f.metadata), types[f.name]) for f in dataclasses.fields(cls)  # type: ignore[misc]
            if f.name in types}


def file_keys(cls: type) -> list[str]:
    """The keys a spec file may hold (a table's keys dotted: ``finetune.epochs``)."""
    return [d.key for d in declared(cls)]


def sweep_axes(cls: type) -> dict[str, tuple[Option, tuple[str, ...]]]:
    """The fields and groups a sweep may vary, by file key: their option and attribute path (a group,
    such as the backbone, varies as a whole: a sweep lists whole backbone references)."""
    out: dict[str, tuple[Option, tuple[str, ...]]] = {}
    for name, (opt, _) in groups(cls).items():
        if opt.sweep != "no":
            out[opt.key or name] = (opt, (name,))
    for d in declared(cls):
        if d.option.sweep != "no" and d.table is None and d.key not in out:
            out[d.key] = (d.option, d.path)
    return out


# ------------------------------------------------------------------------------------------ command line

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def text_value(text: str) -> Any:
    """Command-line text as a value: an integer, a float (also ``nan``/``inf`` so that the spec's check
    names them), else the text itself (``auto``, ``all``, ``8/255``)."""
    t = text.strip()
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    if _NUMBER.match(t) or t.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return float(t)
    return text


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per declared field of ``cls`` (defaults left to the spec: a flag not given is None)."""
    for d in declared(cls):
        opt = d.option
        if not opt.flag:
            continue
        text = opt.help.replace("%", "%%")
        if opt.required:
            text += " (required without --spec)"
        elif d.default not in (MISSING, None, False, ()) and opt.kind != "flag":
            text += f" (default {_shown(d.default)})"
        kw: dict[str, Any] = {"dest": d.dest, "help": text, "default": None}
        if opt.kind == "flag":
            kw["action"] = argparse.BooleanOptionalAction
        elif opt.kind == "list":
            kw["nargs"] = "+"
        elif opt.kind == "number":
            kw["type"] = text_value
        if opt.kind == "choice" and opt.choices is not None:
            kw["choices"] = list(opt.choices())
        if opt.kind not in ("flag", "choice"):
            kw["metavar"] = opt.metavar or d.key.rsplit(".", 1)[-1].upper()
        parser.add_argument(d.flag, **kw)


def _shown(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return type(value).__name__
    return str(value)


def namespace_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags given on the command line, as the file form's table (``finetune.epochs`` nested)."""
    out: dict[str, Any] = {}
    for d in declared(cls):
        value = getattr(args, d.dest, None)
        if value is None:
            continue
        if d.table:
            out.setdefault(d.table, {})[d.key.split(".", 1)[1]] = value
        else:
            out[d.key] = value
    return out


def flag_text(d: Declared, value: Any) -> list[str]:
    """The command-line words that give ``value`` to the field ``d``."""
    if d.option.kind == "flag":
        return [d.flag if value else "--no-" + d.flag[2:]]
    if isinstance(value, (list, tuple)):
        return [d.flag, *(_exact(v) for v in value)]
    return [d.flag, _exact(value)]


def _exact(v: Any) -> str:
    """The shortest text that reads back as the same value (``0``, ``0.05``, ``0.00392156862745098``)."""
    if isinstance(v, float):
        if math.isfinite(v) and v.is_integer():
            return str(int(v))
        return repr(v)
    return str(v)


def keyword_signature(cls: type, leading: Sequence[str], extra: Sequence[inspect.Parameter] = ()) -> inspect.Signature:
    """A signature listing ``leading`` positional fields then every other declared field as a keyword
    (file keys), then ``extra`` (for ``help()`` of the keyword API)."""
    params = []
    by_key = {d.key: d for d in declared(cls) if d.table is None}
    for name in leading:
        d = by_key[name]
        params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=inspect.Parameter.empty if d.default is MISSING else d.default))
    for d in declared(cls):
        if d.key in leading or d.table is not None:
            continue
        params.append(inspect.Parameter(d.key, inspect.Parameter.KEYWORD_ONLY,
                                        default=None if d.default is MISSING else d.default))
    tables = dict.fromkeys(d.table for d in declared(cls) if d.table)
    params += [inspect.Parameter(t, inspect.Parameter.KEYWORD_ONLY, default=None) for t in tables]
    return inspect.Signature([*params, *extra])
