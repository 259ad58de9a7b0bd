"""What a network computes, as one deterministic digest: the cache identity of a backbone.

A result computed from a backbone may be reused only for a backbone that computes the same
function. Weights alone do not say that: editing ``forward`` (``relu`` -> ``tanh``), a helper it
calls, a constant it reads or a float set in ``__init__`` changes the numbers and keeps every
weight. :func:`module_identity` therefore digests, for every submodule (sorted by name):

* its class, for each class of its MRO: module and qualified name; for a class of an installed
  library (``torch``, or a package in ``site-packages`` with a release, e.g. timm) nothing more than
  the library and its release (:func:`library_tag`); for any other class (the user's code, an
  editable install, a file loaded by path) the source text (:func:`inspect.getsource`) *and* the
  compiled code of each of its functions, and the values of its other class attributes. The code
  is what actually runs: it covers classes without source (defined in a REPL, by ``exec`` or
  compiled) and a source file edited after it was imported;
* the functions, classes and plain constants those functions read by name from their module's
  globals (an edited helper, ``SCALE = 2.0``), followed recursively;
* its plain attributes (numbers, strings, bools, None, tuples/lists/dicts/sets of them, tensors
  and arrays that are not buffers, callables, classes) and its forward/backward hooks;
* every parameter and every buffer, persistent or not: name, dtype, shape and a sha256 of the bytes.

:func:`callable_identity` digests a function the same way (code, source, defaults, closure
values, the same-module globals it reads).

The digest is deterministic across processes and machines (same Python minor version and library
releases): no ``id()``, no memory address, no ``repr`` of arbitrary objects; sets and mappings are
sorted. Limits: compiled code differs between Python minor versions, so code without source gets
another identity under another Python (a cache miss, never a wrong hit); an object of an unknown
type stored as an attribute contributes its class and its own attributes (three levels deep), not
hidden C state; a helper reached as an attribute of an imported module (``mylib.act(x)``) is not
followed, only one imported by name (``from mylib import act``); an edit inside an installed
library without a new release is not seen; global hooks
(``torch.nn.modules.module.register_module_forward_hook``) are not seen; the byte digest of a
tensor is kept until the tensor changes in place or gets new storage, and a write through
``tensor.data`` bypasses the version counter that tells; a module-level tensor, list, dict or
object that a function reads is not digested (only plain constants are). Behind every limit stands
the read-back check of :mod:`rtcore.cached`: cached features are used only if the current model
reproduces their first rows, and otherwise nothing cached for that fingerprint is used again.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib.metadata
import inspect
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any

import torch
from torch import nn

#: attribute names every ``nn.Module`` has (the machinery, not the model)
_MODULE_MACHINERY = frozenset(vars(nn.Module()))
#: hooks that change what a module computes or its gradients (digested as callables)
_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
#: attributes that record where weights came from, not what the network computes (timm's configs)
METADATA_ATTRS = frozenset({"pretrained_cfg", "default_cfg", "pretrained_cfg_overlay"})
_MAX_DEPTH = 3
_SIMPLE = (type(None), bool, int, float, complex, str, bytes)


class _Digest:
    """A sha256 fed with tagged, length-prefixed tokens (no two token sequences collide by concatenation)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, tag: str, data: str | bytes = b"") -> None:
        raw = data.encode() if isinstance(data, str) else data
        self._h.update(f"{tag}:{len(raw)}:".encode())
        self._h.update(raw)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


_LOCK = threading.Lock()
_PACKAGES: dict[str, str | None] = {}  # top-level package -> library tag (None: its code is read)
_SOURCES: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()  # functions only
#: byte digests by tensor (keyed by id, checked with a weak reference, dropped when the tensor dies)
_TENSORS: dict[int, tuple[weakref.ref[torch.Tensor], tuple[Any, ...], bytes]] = {}


def library_tag(obj: Any) -> str | None:
    """How code from an installed library is identified: by name and release, without reading it.

    ``torch`` and Python's builtins: by name (``"torch"``); a module installed in ``site-packages``
    (``dist-packages``) that belongs to a distribution with a version: ``"<dist>==<version>"``. None
    for everything else (the user's code, an editable install, a file loaded by path, a class defined
    inside a function or by ``exec``), which is read. ``__module__`` alone is not trusted (a class made
    by ``exec`` claims ``builtins``): the object must be the one its module holds under its name."""
    mod = getattr(obj, "__module__", None) or ""
    if not _importable(obj, mod):
        return None
    top = mod.partition(".")[0]
    if top == "builtins":
        return top
    if top == "torch":
        import torch

        return f"torch=={torch.__version__}"
    with _LOCK:
        if top in _PACKAGES:
            return _PACKAGES[top]
    tag: str | None = None
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None) if module is not None else None
    if file and ({"site-packages", "dist-packages"} & set(PurePath(file).parts)):
        try:
            dists = importlib.metadata.packages_distributions().get(top, [])
            if dists:
                tag = f"{dists[0]}=={importlib.metadata.version(dists[0])}"
        except Exception:  # noqa: BLE001 - broken metadata: the code is read instead
            tag = None
    with _LOCK:
        _PACKAGES[top] = tag
    return tag


def _importable(obj: Any, mod: str) -> bool:
    """Whether ``obj`` is what ``sys.modules[mod]`` holds under ``obj.__qualname__``."""
    found: Any = sys.modules.get(mod)
    for part in str(getattr(obj, "__qualname__", "<none>")).split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is obj


def _source(obj: Any) -> str | None:
    """The source text of a function, read once per function object; None when there is none (REPL,
    ``exec``, compiled)."""
    with _LOCK:
        if obj in _SOURCES:
            return _SOURCES[obj]
    try:
        src: str | None = inspect.getsource(obj)
    except (OSError, TypeError, IndentationError, SyntaxError):
        src = None
    try:
        with _LOCK:
            _SOURCES[obj] = src
    except TypeError:  # not weak-referenceable: not memoised
        pass
    return src


def _code(d: _Digest, code: types.CodeType) -> None:
    """The parts of a code object that decide what it computes (no line numbers, no file names)."""
    d.add("code", code.co_code)
    d.add("args", repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)))
    d.add("names", repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)))
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code(d, c)
        else:
            _const(d, c)


def _const(d: _Digest, c: Any) -> None:
    if isinstance(c, (frozenset, set)):
        d.add("frozenset", repr(sorted(repr(x) for x in c)))
    elif isinstance(c, tuple):
        d.add("tuple", str(len(c)))
        for x in c:
            _const(d, x)
    else:
        d.add(type(c).__name__, repr(c))


def _all_names(code: types.CodeType) -> Iterable[str]:
    yield from code.co_names
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _all_names(c)


class _Walker:
    """One identity computation: remembers what it has digested (cycles, shared objects)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()  # ids of objects already digested in this walk (never hashed)

    # -- callables and classes -------------------------------------------------------------
    def enter(self, d: _Digest, kind: str, obj: Any) -> bool:
        """Digest the qualified name of ``obj`` (a function or class) under ``kind``; True when its body is
        still to be digested: False for library code (digested by its release, see :func:`library_tag`) and
        for an object already digested in this walk."""
        d.add(kind, f"{obj.__module__}.{obj.__qualname__}")
        tag = library_tag(obj)
        if tag is not None:
            d.add("library", tag)
            return False
        if id(obj) in self.seen:
            return False
        self.seen.add(id(obj))
        return True

    def function(self, d: _Digest, fn: types.FunctionType) -> None:
        if not self.enter(d, "function", fn):
            return
        src = _source(fn)
        d.add("source", src if src is not None else "<no source>")
        _code(d, fn.__code__)
        self.value(d, fn.__defaults__, 1)
        self.value(d, fn.__kwdefaults__, 1)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            d.add("closure", name)
            try:
                self.value(d, cell.cell_contents, 1)
            except ValueError:  # an empty cell
                d.add("empty-cell")
        self.module_globals(d, fn)

    def module_globals(self, d: _Digest, fn: types.FunctionType) -> None:
        """Functions, classes and constants that ``fn`` reads by name from its module's globals (library
        code by its release, see :func:`library_tag`)."""
        glb = fn.__globals__
        for name in sorted(set(_all_names(fn.__code__))):
            if name not in glb:
                continue
            v = glb[name]
            if isinstance(v, (types.FunctionType, type)):
                d.add("global", name)
                self.callable_or_class(d, v)
            elif isinstance(v, _SIMPLE) or (isinstance(v, tuple) and all(isinstance(x, _SIMPLE) for x in v)):
                d.add("global", name)
                self.value(d, v, 1)

    def cls(self, d: _Digest, cls: type) -> None:
        """Each class of the MRO: a library class by name and release; any other by the source and
        code of its functions and the values of its other class attributes."""
        for klass in cls.__mro__:
            if not self.enter(d, "class", klass):
                continue
            for name in sorted(klass.__dict__):
                if name in ("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__") \
                        or name.startswith("_abc"):
                    continue
                d.add("attr", name)
                self.class_attr(d, klass.__dict__[name])

    def class_attr(self, d: _Digest, v: Any) -> None:
        if isinstance(v, (staticmethod, classmethod)):
            v = v.__func__
        if isinstance(v, property):
            for part in (v.fget, v.fset):
                if part is not None:
                    self.callable_or_class(d, part)
            return
        self.value(d, v, 1)

    def callable_or_class(self, d: _Digest, v: Any) -> None:
        if isinstance(v, type):
            self.cls(d, v)
        elif isinstance(v, types.FunctionType):
            self.function(d, v)
        elif isinstance(v, types.MethodType):
            d.add("method-of", f"{type(v.__self__).__module__}.{type(v.__self__).__qualname__}")
            self.callable_or_class(d, v.__func__)
        elif isinstance(v, functools.partial):
            d.add("partial")
            self.callable_or_class(d, v.func)
            self.value(d, v.args, 1)
            self.value(d, v.keywords, 1)
        elif isinstance(v, (types.BuiltinFunctionType, types.BuiltinMethodType, types.MethodWrapperType,
                            types.WrapperDescriptorType, types.MethodDescriptorType)):
            owner = getattr(v, "__module__", None) or type(getattr(v, "__self__", None)).__name__
            d.add("builtin", f"{owner}.{getattr(v, '__qualname__', getattr(v, '__name__', '?'))}")
        else:  # a callable object: its class and its state
            d.add("callable-object")
            self.value(d, v, 1)

    # -- values ----------------------------------------------------------------------------
    def value(self, d: _Digest, v: Any, depth: int) -> None:
        """A plain value: simple types by value, containers sorted where unordered, the rest by type."""
        if isinstance(v, _SIMPLE):
            d.add(type(v).__name__, repr(v))
        elif isinstance(v, enum.Enum):
            d.add("enum", f"{type(v).__module__}.{type(v).__qualname__}.{v.name}")
        elif isinstance(v, (torch.dtype, torch.device, torch.Size, torch.memory_format, PurePath)):
            d.add(type(v).__name__, str(v))
        elif isinstance(v, torch.Tensor):
            _tensor(d, "tensor", v)
        elif type(v).__module__ == "numpy" and hasattr(v, "dtype") and hasattr(v, "tobytes"):
            d.add("ndarray", f"{v.dtype}:{getattr(v, 'shape', ())}")
            d.add("bytes", v.tobytes())
        elif isinstance(v, (list, tuple)):
            d.add(type(v).__name__, str(len(v)))
            for x in v:
                self.value(d, x, depth + 1)
        elif isinstance(v, (set, frozenset)):
            parts = []
            for x in v:
                sub = _Digest()
                self.value(sub, x, depth + 1)
                parts.append(sub.hexdigest())
            d.add("set", ",".join(sorted(parts)))
        elif isinstance(v, Mapping):
            items = []
            for k, x in v.items():
                kd, xd = _Digest(), _Digest()
                self.value(kd, k, depth + 1)
                self.value(xd, x, depth + 1)
                items.append(kd.hexdigest() + xd.hexdigest())
            d.add("mapping", ",".join(sorted(items)))
        elif isinstance(v, nn.Module):
            d.add("module")
            if id(v) not in self.seen:
                self.module(d, v)
        elif isinstance(v, types.ModuleType):
            d.add("pymodule", v.__name__)
        elif isinstance(v, (type, types.FunctionType, types.MethodType, functools.partial, types.BuiltinFunctionType,
                            types.BuiltinMethodType, types.MethodWrapperType, types.WrapperDescriptorType,
                            types.MethodDescriptorType)):
            self.callable_or_class(d, v)
        else:
            d.add("object", f"{type(v).__module__}.{type(v).__qualname__}")
            if id(v) in self.seen or depth > _MAX_DEPTH:
                return
            self.seen.add(id(v))
            self.cls(d, type(v))
            state = getattr(v, "__dict__", None)
            if isinstance(state, dict):
                for name in sorted(state):
                    d.add("attr", name)
                    self.value(d, state[name], depth + 1)

    # -- modules ---------------------------------------------------------------------------
    def module(self, d: _Digest, root: nn.Module) -> None:
        subs = sorted(root.named_modules(), key=lambda item: item[0])
        for name, m in subs:
            self.seen.add(id(m))
        for name, m in subs:
            d.add("submodule", name)
            self.cls(d, type(m))
            for attr in sorted(vars(m)):
                if attr in _MODULE_MACHINERY or attr in METADATA_ATTRS:
                    continue
                d.add("attr", attr)
                self.value(d, vars(m)[attr], 1)
            for hook_kind in _HOOKS:
                for fn in getattr(m, hook_kind, {}).values():
                    d.add("hook", hook_kind)
                    self.callable_or_class(d, fn)
            for pname, p in sorted(m.named_parameters(recurse=False), key=lambda item: item[0]):
                _tensor(d, f"param:{pname}", p)
            for bname, b in sorted(m.named_buffers(recurse=False), key=lambda item: item[0]):
                _tensor(d, f"buffer:{bname}", b)


def _tensor(d: _Digest, tag: str, t: torch.Tensor) -> None:
    """dtype, shape and a sha256 of the bytes; the byte digest is kept per tensor object until the tensor
    changes in place (its version counter) or gets other storage (``data_ptr``). Writes through
    ``t.data`` bypass the version counter and are not seen by the memo (as in :mod:`.fused`)."""
    d.add(tag, f"{t.dtype}:{tuple(t.shape)}")
    if t.device.type == "meta":
        d.add("bytes", "<meta>")
        return
    stamp = (t._version, t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()), t.storage_offset(), str(t.device))
    key = id(t)
    with _LOCK:
        hit = _TENSORS.get(key)
    if hit is not None and hit[0]() is t and hit[1] == stamp:
        d.add("sha256", hit[2])
        return
    flat = t.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"").digest()
    ref = weakref.ref(t, lambda _, key=key: _TENSORS.pop(key, None))
    with _LOCK:
        _TENSORS[key] = (ref, stamp, digest)
    d.add("sha256", digest)


def module_identity(module: nn.Module) -> str:
    """sha256 (hex) of what ``module`` computes: code, plain attributes, hooks, weights and buffers
    of every submodule (see the module docstring for what is covered and the limits)."""
    d = _Digest()
    _Walker().module(d, module)
    return d.hexdigest()


def callable_identity(fn: Callable[..., Any]) -> str:
    """sha256 (hex) of a function: its code and source, defaults, closure values and the functions,
    classes and constants it reads from its own module."""
    d = _Digest()
    _Walker().callable_or_class(d, fn)
    return d.hexdigest()
