"""One registry idiom for every kind table (store backends, samplers, encoders, teachers,
objectives, data sets, video heads, loss methods...).

A registry maps a kind's name to its implementation and a one-line meaning. The
implementation is an object or a ``"package.module:attribute"`` string imported on first
use, so a registry can be declared in a torch-free module (configs, the command line) and
list its kinds without importing them. Adding a kind is one file plus one ``add`` line::

    TEACHERS = Registry("teacher kind")
    TEACHERS.add("xpool", "teachcache.stages.teachers.xpool:XPoolTeacher", "X-Pool's text-conditioned pooling")
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from teachcache.cache.errors import UnknownKind

T = TypeVar("T")


@dataclass
class Entry:
    """One registered kind: its target (object or import string) and meaning."""

    name: str
    target: Any
    help: str

    def load(self) -> Any:
        if isinstance(self.target, str):
            module, _, attribute = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attribute)
        return self.target


class Registry(Generic[T]):
    """Named kinds of one sort, in registration order."""

    def __init__(self, sort: str):
        self.sort = sort  # what a name names, for messages: "teacher kind", "store backend"...
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: T | str, help: str = "") -> Registry[T]:
        """Register ``name``; ``target`` is the object or ``"module:attribute"``. Returns the registry."""
        if name in self._entries:
            raise ValueError(f"{self.sort} {name!r} is registered twice")
        self._entries[name] = Entry(name, target, help)
        return self

    def get(self, name: str) -> T:
        """The implementation of ``name`` (imported now if it was given as a string)."""
        self.check(name)
        loaded: T = self._entries[name].load()
        return loaded

    def check(self, name: str, where: str = "") -> None:
        """Refuse a name that is not registered, listing the known ones."""
        if name not in self._entries:
            prefix = f"{where}: " if where else ""
            raise UnknownKind(f"{prefix}unknown {self.sort} {name!r}; choose one of {self.names()}")

    def names(self) -> list[str]:
        return list(self._entries)

    def help(self, name: str) -> str:
        return self._entries[name].help

    def choices(self) -> str:
        """``a | b | c``: the names, for a config field's help text."""
        return " | ".join(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.sort!r}: {self.names()})"
