"""One registry shape for every plug-in point (tasks, backbones, probes, strengths, transfer methods).

Each kind keeps a :class:`Registry` of typed entries (frozen dataclasses with at least ``name`` and
``description``) and exposes the same four verbs, in timm's style::

    register_<kind>(name, ...)     add an entry (ValueError if the name is taken, unless overwrite=True)
    list_<kind>s(...)              the names, in registration order
    <kind>_info(name)              the entry (ValueError naming the valid names if unknown)
    create_<kind>(name, ...)       build the thing the entry describes

The registry only stores and checks names; what an entry holds and how it is created is the kind's
own business.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar


class Entry(Protocol):
    """What every registry entry has."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """Named entries of one kind, in registration order; thread-safe.

    ``kind`` names the kind in messages (``"task"``, ``"backbone"``); ``hint`` is appended to the
    message for an unknown name (e.g. how to name a timm model).
    """

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, E] = {}
        self._lock = threading.Lock()

    def register(self, entry: E, *, overwrite: bool = False) -> E:
        """Add ``entry`` under ``entry.name``; ValueError if the name is taken and not ``overwrite``."""
        name = entry.name
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        with self._lock:
            if name in self._entries and not overwrite:
                raise ValueError(f"a {self.kind} named {name!r} is already registered; pick another name "
                                 f"or pass overwrite=True to replace it")
            self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error if absent)."""
        with self._lock:
            self._entries.pop(name, None)

    def names(self, where: Callable[[E], bool] | None = None) -> list[str]:
        """The names in registration order (only those whose entry satisfies ``where``)."""
        with self._lock:
            items = list(self._entries.items())
        return [n for n, e in items if where is None or where(e)]

    def info(self, name: object) -> E:
        """The entry of ``name``; ValueError naming the valid names if unknown."""
        with self._lock:
            entry = self._entries.get(name) if isinstance(name, str) else None
            valid = list(self._entries)
        if entry is None:
            tail = f" ({self.hint})" if self.hint else ""
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(valid)}{tail}")
        return entry

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def entries(self) -> dict[str, E]:
        """A copy of the entries by name."""
        with self._lock:
            return dict(self._entries)

    def view(self, attribute: str) -> Mapping[str, Any]:
        """A live read-only mapping name -> ``getattr(entry, attribute)`` (for dict-shaped old names such
        as ``PRESETS``); entries registered later appear in it."""
        return _View(self, attribute)


class _View(Mapping[str, Any]):
    def __init__(self, registry: Registry[Any], attribute: str) -> None:
        self._registry, self._attribute = registry, attribute

    def __getitem__(self, name: str) -> Any:
        if name not in self._registry:
            raise KeyError(name)
        return getattr(self._registry.info(name), self._attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry)

    def __repr__(self) -> str:
        return repr(dict(self))
