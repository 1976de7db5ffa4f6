"""Fingerprints: a short stable hash of what produced a store, and a readable diff."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(components: dict[str, Any]) -> str:
    """A 16-hex-digit hash of the components (config, weight identities, versions)."""
    return hashlib.sha256(canonical_json(components).encode()).hexdigest()[:16]


def diff_components(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two component trees differ, with both values, for error messages."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        out: list[str] = []
        for key in sorted(set(stored) | set(wanted)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in stored:
                out.append(f"{path}: absent in the store, {wanted[key]!r} wanted")
            elif key not in wanted:
                out.append(f"{path}: {stored[key]!r} in the store, absent in the config")
            else:
                out.extend(diff_components(stored[key], wanted[key], path))
        return out
    if isinstance(stored, list) and isinstance(wanted, list) and len(stored) == len(wanted):
        out = []
        for i, (a, b) in enumerate(zip(stored, wanted)):
            out.extend(diff_components(a, b, f"{prefix}[{i}]"))
        return out
    return [] if stored == wanted else [f"{prefix or '(root)'}: {stored!r} in the store, {wanted!r} wanted"]
