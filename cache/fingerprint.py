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


ABSENT = "absent"


def differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Every leaf where two component trees differ, as ``path: stored vs wanted`` (all of
    them: a list is never cut), e.g. ``config.sampling.num_frames: 8 vs 12``."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        out: list[str] = []
        for key in sorted(set(stored) | set(wanted), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(differences(stored.get(key, ABSENT), wanted.get(key, ABSENT), path))
        return out
    if isinstance(stored, list) and isinstance(wanted, list) and len(stored) == len(wanted):
        out = []
        for i, (a, b) in enumerate(zip(stored, wanted)):
            out.extend(differences(a, b, f"{prefix}[{i}]"))
        return out
    if stored == wanted:
        return []
    return [f"{prefix or '(root)'}: {_show(stored)} vs {_show(wanted)}"]


def _show(value: Any) -> str:
    """A leaf as the message shows it (``absent`` for a missing key, JSON otherwise)."""
    return ABSENT if value is ABSENT else json.dumps(value, sort_keys=True, default=str)
