"""The ``ce`` student: Collaborative Experts' CE+ (TeachText's student, ``stages/common/ce.py``)
over the store's video experts and a text encoder's word features.

An expert is an imported one (``expert/<name>``: fixed ``[D]``, or ``[T, D]`` pooled by
NetVLAD) or a frame encoder's frames (``frames/<name>``: averaged over the real frames, or
pooled by NetVLAD when ``vlad_clusters`` names it). A video lacks an expert where its mask is
all false (a failed video lacks every frame expert). The caption side is one embedding per
expert and the mixture weights; the video side one embedding per expert and the
availability; the similarity is CE's: the weights renormalised over the experts the video
has, times the per-expert cosines. The logits are ``scale * S`` with a learnable scale (clamped
to <= 100, as the clip4clip student's), so every objective applies; TeachText's loss divides it
out and ranks and distils the raw S, as CE does (the scale then gets no gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from teachcache.cache import schema
from teachcache.cache.errors import ConfigError
from teachcache.cache.store import Store
from teachcache.stages.common.ce import CEArchitecture, CENet, ce_similarity, drop_missing
from teachcache.stages.student.base import Arrays, RetrievalStudent, Side
from teachcache.stages.student.config import StudentConfig, TrainConfig

FIXED, TOKENS, MEAN = "fixed", "tokens", "mean"  # how an expert's rows become the network's input


@dataclass
class ExpertSource:
    """Where one expert's rows are in the store and how they enter the network."""

    name: str
    values: str  # array name
    mask: str  # its mask: [V] (fixed) or [V, T]
    pooling: str  # FIXED, TOKENS (NetVLAD) or MEAN (masked mean of frames)
    width: int


def expert_sources(config: StudentConfig, store: Store) -> list[ExpertSource]:
    """The experts ``train.student.experts`` names (every imported one when empty), found in the store."""
    tails = {a.name: a.tail for a in store.arrays}
    imported = [schema.owner(n) for n in tails if schema.family(n) == "expert"]
    names = config.experts or imported
    if not names:
        raise ConfigError(f"train.student.kind = 'ce' reads video experts; store {store.path} has none imported: name frame encoders in train.student.experts")
    sources = []
    for name in names:
        if schema.expert(name) in tails:
            tail = tails[schema.expert(name)]
            sources.append(ExpertSource(name, schema.expert(name), schema.expert_mask(name), FIXED if len(tail) == 1 else TOKENS, tail[-1]))
        elif schema.frames(name) in tails:
            pooling = TOKENS if name in config.vlad_clusters else MEAN
            sources.append(ExpertSource(name, schema.frames(name), schema.frame_mask(name), pooling, tails[schema.frames(name)][-1]))
        else:
            frames = [schema.owner(n) for n in tails if schema.family(n) == "frames"]
            raise ConfigError(f"train.student.experts names {name!r}, which store {store.path} has neither imported (it has {imported}) nor as a frame encoder (it has {frames})")
    return sources


class CEStudent(RetrievalStudent):
    """CE+ over the store's experts (see the module docstring); official module names, so an
    official CE state dict over the same experts loads into it (``logit_scale`` is ours)."""

    kind = "ce"

    def __init__(self, config: StudentConfig, sources: list[ExpertSource], text: str, text_dim: int):
        super().__init__()
        self.config = config
        self.sources = {s.name: s for s in sorted(sources, key=lambda s: s.name)}  # CE's sorted order
        clusters = {s.name: config.vlad_clusters.get(s.name, config.default_clusters) for s in sources if s.pooling == TOKENS}
        self.arch = CEArchitecture(
            experts={s.name: s.width for s in sources},
            vlad_clusters=clusters,
            text_dim=text_dim,
            text_clusters=config.text_clusters,
            text_ghosts=config.text_ghosts,
            shared_dim=config.shared_dim,
        )
        net = CENet(self.arch)
        self.pooling, self.text_pooling, self.ce = net.pooling, net.text_pooling, net.ce
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale)))
        self.caption_arrays = [schema.tokens(text)]
        self.video_arrays = [name for s in self.sources.values() for name in (s.values, s.mask)]

    @classmethod
    def for_train_config(cls, cfg: TrainConfig, store: Store) -> CEStudent:
        """A CE student over the experts ``cfg`` names and the word features ``tokens/<cfg.text>``."""
        tails = {a.name: a.tail for a in store.arrays}
        if schema.tokens(cfg.text) not in tails:
            raise ConfigError(
                f"train.student.kind = 'ce' reads word features {schema.tokens(cfg.text)}, which store {store.path} lacks: "
                f"import text features, or give extract.text_encoders.{cfg.text}.tokens a length"
            )
        return cls(cfg.student, expert_sources(cfg.student, store), cfg.text, tails[schema.tokens(cfg.text)][-1])

    def encode_captions(self, arrays: Arrays) -> Side:
        """Per-expert caption embeddings [Q, M, S] and the mixture weights [Q, M]."""
        words = arrays[self.caption_arrays[0]].float()
        units, weights = self.ce.text(self.text_pooling(words))
        return torch.stack(units, dim=1), weights

    def expert_inputs(self, arrays: Arrays) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each expert's network input (pooled where it has tokens) and the availability [B, M]."""
        inputs, available = [], []
        for name, source in self.sources.items():
            values, mask = arrays[source.values].float(), arrays[source.mask].bool()
            present = mask if source.pooling == FIXED else mask.any(-1)
            if source.pooling == MEAN:
                weights = mask.float() / mask.float().sum(-1, keepdim=True).clamp(min=1.0)
                values = (weights.unsqueeze(-1) * values).sum(1)
            values = drop_missing(name, values, present.float(), values.dim())
            inputs.append(self.pooling[name](values) if name in self.pooling else values)
            available.append(present.float())
        return inputs, torch.stack(available, dim=1)

    def encode_videos(self, arrays: Arrays) -> tuple[Side, torch.Tensor | None]:
        """Per-expert video embeddings [B, M, S] and the availability [B, M]."""
        inputs, available = self.expert_inputs(arrays)
        video = self.ce.video(inputs, available)
        return (torch.stack(video.embeddings, dim=1), available), None

    def similarity(self, captions: Side, videos: Side) -> torch.Tensor:
        return ce_similarity(captions[0], captions[1], videos[0], videos[1])

    def widths(self) -> list[int]:
        return [self.arch.text_dim, self.arch.shared_dim]
