"""Config fields with a default and a one-line meaning (shown by `teachcache config`).

A field whose value names a kind takes its registry (``choices``): its help text lists the
registered names, and a config that names another kind is refused when it is loaded.
A field of named tables (``key=True`` on the item's ``name``) is keyed by that name in TOML.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any

from teachcache.cache.registry import Registry


def opt(default: Any, help: str, choices: Registry[Any] | None = None) -> Any:
    """A dataclass field with its default and its meaning; mutable defaults are copied.
    ``choices``: the registry whose names the field's value must be (listed in the help)."""
    if choices is not None:
        help = f"{help}: {choices.choices()}"
    metadata = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)) or hasattr(default, "__dataclass_fields__"):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def name_field(default: str) -> Any:
    """The ``name`` of an item of a named table: filled from its key (``[extract.teachers.xpool]``
    names the teacher ``xpool``), never written in TOML."""
    return field(default=default, metadata={"help": "the table key this entry is named by", "key": True})
