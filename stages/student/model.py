"""The CLIP4Clip student on cached features (docs/method.md section 4), with optional AFA.

Retrieval cost is CLIP4Clip's: one vector per video (query-independent) and one per
caption; a score is one dot product. The frozen backbone is stage one's cache, so every
trainable parameter lives in the heads below.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from teachcache.cache import schema
from teachcache.cache.errors import ConfigError
from teachcache.cache.store import Store
from teachcache.stages.common.layers import CrossTransformer, cross_heads, identity_linear, temporal_module
from teachcache.stages.student import VIDEO_HEADS
from teachcache.stages.student.base import Arrays, RetrievalStudent, Side
from teachcache.stages.student.config import StudentConfig, TrainConfig

AFA_TEMPERATURE = 0.1  # aggregation temperature; the teaching distribution uses 1


class MeanPooling(nn.Module):
    """``meanP``: the frames pass unchanged (the student pools the normalised frames)."""

    def __init__(self, config: StudentConfig, dim: int):
        super().__init__()

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return frames


def seq_transf(config: StudentConfig, dim: int) -> CrossTransformer:
    """``seqTransf``: CLIP4Clip's cross module over the frames (output + input), official names
    (``frame_position_embeddings``, ``transformerClip``), CLIP4Clip's initialisation."""
    heads = config.heads or cross_heads(dim)
    if dim % heads:
        raise ConfigError(f"train.student.heads = {config.heads} does not divide the frame width {dim}")
    return temporal_module(dim, config.layers, heads, config.max_frames)


class AFA(nn.Module):
    """Attentional frame aggregation: ``a_f = frameLinear2(ReLU(frameLinear(phi_f)))`` (TeachCLIP's names)."""

    def __init__(self, dim: int):
        super().__init__()
        self.frameLinear = nn.Linear(dim, dim)
        self.frameLinear2 = nn.Linear(dim, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Frame logits [B, F] (before any softmax)."""
        return self.frameLinear2(F.relu(self.frameLinear(frames))).squeeze(-1)


class Student(RetrievalStudent):
    """Text head (projection of the cached sentence vector) and video head over cached frames.
    ``text`` and ``frames`` name the text and frame encoders whose arrays it reads."""

    kind = "clip4clip"

    def __init__(self, config: StudentConfig, text_dim: int, frame_dim: int, text: str = "clip", frames: str = "clip"):
        super().__init__()
        self.caption_arrays = [schema.text(text)]
        self.video_arrays = [schema.frames(frames), schema.frame_mask(frames)]
        head = VIDEO_HEADS.get(config.video_head)
        self.config = config
        self.text_projection = identity_linear(text_dim, frame_dim)
        self.video_projection = identity_linear(frame_dim, frame_dim) if config.video_projection else nn.Identity()
        self.temporal = head(config, frame_dim)
        self.afa = AFA(frame_dim) if config.afa else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale)))
        self.clamp_scale()

    @classmethod
    def for_store(cls, config: StudentConfig, store: Store, text: str, frames: str) -> Student:
        """A student sized for a store's ``text/<text>`` and ``frames/<frames>`` arrays."""
        dims = {a.name: a.tail for a in store.arrays}
        return cls(config, dims[schema.text(text)][-1], dims[schema.frames(frames)][-1], text, frames)

    @classmethod
    def for_train_config(cls, cfg: TrainConfig, store: Store) -> Student:
        """The student of ``cfg`` for the store's ``text/<cfg.text>`` and ``frames/<cfg.frames>``."""
        return cls.for_store(cfg.student, store, cfg.text, cfg.frames)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Normalised caption vectors [B, D]."""
        return F.normalize(self.text_projection(text.float()), dim=-1)

    def frame_features(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """phi_f: projected frames, through the video head's temporal part (seqTransf: output + input)."""
        return self.temporal(self.video_projection(frames.float()), mask)

    def frame_logits(self, phi: torch.Tensor) -> torch.Tensor | None:
        """AFA logits a_f [B, F] (None without AFA)."""
        return None if self.afa is None else self.afa(phi)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised video vectors [B, D] and the AFA logits [B, F] (None without AFA)."""
        mask = mask.bool()
        phi = self.frame_features(frames, mask)
        normed = F.normalize(phi, dim=-1)
        logits = self.frame_logits(phi)
        if logits is None:
            weights = mask.float() / mask.float().sum(-1, keepdim=True).clamp(min=1.0)
        else:
            scores = logits / AFA_TEMPERATURE
            if self.config.afa_masked:
                scores = scores.masked_fill(~mask, float("-inf"))
                weights = torch.nan_to_num(F.softmax(scores, -1), nan=0.0)  # no valid frame: zero vector
            else:
                weights = F.softmax(scores, -1)
        video = (weights.unsqueeze(-1) * normed).sum(1)
        return F.normalize(video, dim=-1), logits

    def encode_captions(self, arrays: Arrays) -> Side:
        return (self.encode_text(arrays[self.caption_arrays[0]]),)

    def encode_videos(self, arrays: Arrays) -> tuple[Side, torch.Tensor | None]:
        video, frame_logits = self.encode_video(arrays[self.video_arrays[0]], arrays[self.video_arrays[1]])
        return (video,), frame_logits

    def similarity(self, captions: Side, videos: Side) -> torch.Tensor:
        return captions[0] @ videos[0].T

    def scaled_similarity(self, scale: torch.Tensor, captions: Side, videos: Side) -> torch.Tensor:
        return (scale * captions[0]) @ videos[0].T  # the scale on the captions, as before students were a kind (same bits)

    def widths(self) -> list[int]:
        return [self.text_projection.in_features, self.text_projection.out_features]

    def forward(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Student logits S = scale * cos [B_text, B_video] and the AFA frame logits."""
        video, frame_logits = self.encode_video(frames, mask)
        return self.scale() * self.encode_text(text) @ video.T, frame_logits
