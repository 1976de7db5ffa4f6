"""Config fields with a default and a one-line meaning (shown by `teachcache config`)."""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any


def opt(default: Any, help: str) -> Any:
    """A dataclass field with its default and its meaning; mutable defaults are copied."""
    if isinstance(default, (list, dict)) or hasattr(default, "__dataclass_fields__"):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})
