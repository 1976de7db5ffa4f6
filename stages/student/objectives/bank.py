"""The teachers a student run reads: their heads, rebuilt from the store (weights and config),
scoring each batch from its cached features. Frozen: no gradient reaches a teacher."""

from __future__ import annotations

import time

import torch

from teachcache.cache import schema
from teachcache.cache.errors import ConfigError
from teachcache.cache.store import Store
from teachcache.stages.teachers.base import TeacherHead
from teachcache.stages.teachers.heads import load_teacher, stored_teachers


class TeacherBank:
    """Stored teacher heads on the training device, and the time spent rebuilding their logits."""

    def __init__(self, names: list[str], store: Store, device: torch.device):
        unknown = [n for n in names if n not in stored_teachers(store)]
        if unknown:
            raise ConfigError(
                f"train.objective.teachers names {unknown}, but store {store.path} keeps teachers {stored_teachers(store)}; "
                "add them to [extract.teachers] and run `teachcache extract`"
            )
        self.heads: dict[str, TeacherHead] = {n: load_teacher(store, n).to(device) for n in names}
        self.seconds = 0.0  # time spent rebuilding teacher logits (the cost of not caching [T, V])

    def arrays(self) -> list[str]:
        """Every array (and row key) the heads read."""
        return list(dict.fromkeys(a for h in self.heads.values() for a in h.inputs()))

    def relevance_arrays(self) -> list[str]:
        return [schema.relevance(n) for n, h in self.heads.items() if h.has_relevance]

    def check_relevance(self, store: Store, frames: str) -> None:
        """Refuse relevance whose frame count differs from the student's frames (names the teacher)."""
        widths = {a.name: a.tail for a in store.arrays}
        num_frames = widths[schema.frames(frames)][0]
        for name in self.relevance_arrays():
            if widths[name] != (num_frames,):
                raise ConfigError(
                    f"teacher {schema.owner(name)!r}: {name} has shape {widths[name]} per caption, the student's "
                    f"{schema.frames(frames)} have {num_frames} frames; rebuild the store"
                )

    @torch.no_grad()
    def logits(self, arrays: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each teacher's [B, B] logits for this batch (captions and videos both from ``arrays``)."""
        start = time.perf_counter()
        out = [head.logits(arrays, arrays).float() for head in self.heads.values()]
        if out and out[0].is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return out

    def relevance(self, arrays: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [arrays[name].float() for name in self.relevance_arrays()]

    def scales(self) -> list[float]:
        return [head.scale for head in self.heads.values()]
