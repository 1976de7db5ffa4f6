"""A teacher head's life in the store: built from its config and the stored arrays' widths,
its weights and record kept as ``heads/<name>.safetensors`` and ``heads/<name>.json``,
rebuilt from them (frozen) by stage two."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes

from teachcache.cache.schema import head_file
from teachcache.cache.store import Store
from teachcache.stages.teachers import TEACHERS
from teachcache.stages.teachers.base import TeacherError, TeacherHead
from teachcache.stages.teachers.config import TeacherConfig


def teacher_class(config: TeacherConfig) -> type[TeacherHead]:
    """The head class of a teacher's kind (refused with the known kinds)."""
    TEACHERS.check(config.kind, f"teacher {config.name!r}")
    cls: type[TeacherHead] = TEACHERS.get(config.kind)
    return cls


def build_teacher(config: TeacherConfig, dims: dict[str, tuple[int, ...]]) -> TeacherHead:
    """A fresh head of a registered kind, sized by the widths of the arrays it reads, initialised
    from its own seed without touching the caller's random state (a student built after its
    teachers still starts from ``train.seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return teacher_class(config)(config, dims)


def load_weights(head: TeacherHead, state: dict[str, torch.Tensor], source: str) -> None:
    """Load head weights, refusing missing, unexpected or mis-shaped tensors with the teacher's name."""
    own = head.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or extra or shapes:
        raise TeacherError(
            f"teacher {head.config.name!r} ({head.kind}): weights in {source} do not fit this head "
            f"(missing {missing[:4]}, unexpected {extra[:4]}, wrong shapes {shapes[:4]}); "
            "they must come from the same kind, widths, frame count and temporal_layers"
        )
    head.load_state_dict(state)


def load_checkpoint(head: TeacherHead, path: str) -> None:
    """Head weights from a file (``checkpoint = ...``): safetensors in our names, or a torch
    checkpoint (``.pth``/``.pt``, tensors only) in ours or, for X-Pool, the official names."""
    if not Path(path).is_file():
        raise TeacherError(f"teacher {head.config.name!r}: checkpoint {path} not found")
    if path.endswith(".safetensors"):
        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file is the user's to fix
            raise TeacherError(f"teacher {head.config.name!r}: cannot read checkpoint {path}: {exc}") from exc
        state = state.get("state_dict", state)
    official = getattr(head, "map_official", lambda _s: None)(state)
    load_weights(head, official if official is not None else state, path)


def save_head(store: Store, head: TeacherHead, record: dict[str, Any]) -> None:
    """Keep the head's weights and its record (config, widths, fit, metrics) in the store."""
    store.put_file(head_file(head.config.name, "safetensors"), save_bytes({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}))
    meta = {"config": asdict(head.config), "kind": head.kind, "dims": {k: list(v) for k, v in head.dims.items()}, **record}
    store.put_file(head_file(head.config.name, "json"), json.dumps(meta, indent=2).encode())


def head_record(store: Store, name: str) -> dict[str, Any]:
    """The record stage one kept for a teacher (config, widths, fit history, metrics)."""
    if not store.has_file(head_file(name, "json")):
        raise TeacherError(f"store {store.path} has no teacher {name!r} (it has {stored_teachers(store)}); add it to [extract.teachers]")
    record: dict[str, Any] = json.loads(store.get_file(head_file(name, "json")))
    return record


def stored_teachers(store: Store) -> list[str]:
    """Names of the teachers whose heads the store keeps, in config order."""
    teachers = store.attrs.get("config", {}).get("teachers", {})
    return [name for name in teachers if store.has_file(head_file(name, "json"))]


def load_teacher(store: Store, name: str) -> TeacherHead:
    """Rebuild a stored teacher head (frozen, eval mode) from its record and weights."""
    record = head_record(store, name)
    known = {f.name for f in fields(TeacherConfig)}
    config = TeacherConfig(**{k: v for k, v in record["config"].items() if k in known})
    head = build_teacher(config, {k: tuple(v) for k, v in record["dims"].items()})
    load_weights(head, load_bytes(store.get_file(head_file(name, "safetensors"))), f"{store.path}/{head_file(name, 'safetensors')}")
    head.eval().requires_grad_(False)
    return head
