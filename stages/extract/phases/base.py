"""What every phase of stage one shares: the run's context (config, manifest, device, shard
scheduler, lazily built encoders) and the ``Phase`` interface (its arrays, its work)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from teachcache.cache.manifest import Manifest
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.common.distributed import RankInfo
from teachcache.stages.extract.components import text_spec
from teachcache.stages.extract.config import ExtractConfig
from teachcache.stages.extract.encoders import build_frame_encoder, build_text_encoder
from teachcache.stages.extract.encoders.base import TextEncoder
from teachcache.stages.extract.scheduler import ShardScheduler


class Encoders:
    """The config's encoders, each built on first use (a resumed run with nothing left builds none)."""

    def __init__(self, cfg: ExtractConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self._frames: dict[str, Any] = {}  # a FRAME_ENCODERS kind each
        self._texts: dict[str, TextEncoder] = {}

    def frames(self, name: str) -> Any:
        if name not in self._frames:
            f = self.cfg.frame_encoders[name]
            self._frames[name] = build_frame_encoder(f, self.device, self.cfg.precision, self.cfg.sampling.num_frames)
        return self._frames[name]

    def text(self, name: str) -> TextEncoder:
        if name not in self._texts:
            t = self.cfg.text_encoders[name]
            self._texts[name] = build_text_encoder(t.kind, text_spec(t), self.device, self.cfg.precision, t.batch_size)
        return self._texts[name]


@dataclass
class PhaseContext:
    """One stage-one run as its phases see it."""

    cfg: ExtractConfig
    manifest: Manifest
    device: torch.device
    rank: RankInfo
    scheduler: ShardScheduler
    encoders: Encoders
    progress: bool = True
    caption_video: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per caption (store order), its video row


@dataclass
class PhaseResult:
    """Shards a phase wrote and shards it found done."""

    done: int = 0
    skipped: int = 0

    def __iadd__(self, other: PhaseResult) -> PhaseResult:
        self.done, self.skipped = self.done + other.done, self.skipped + other.skipped
        return self


class Phase:
    """One phase of stage one: the arrays it writes (``specs``, given the widths of those
    declared before it) and its work over the store (``run``), resumable shard by shard."""

    name = ""

    def __init__(self, ctx: PhaseContext):
        self.ctx = ctx

    def specs(self, known: dict[str, tuple[int, ...]]) -> list[ArraySpec]:
        return []

    def run(self, store: Store) -> PhaseResult:
        raise NotImplementedError
