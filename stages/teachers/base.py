"""What every teacher head is: the cached arrays it reads, batch logits [Bt, Bv] for any
captions against any videos, and matched-pair relevance [n, F] (docs/method.md section 3).

A head reads two mappings of arrays: caption-level ones (``text/<k>``, ``tokens/<k>``...,
plus ``row/caption``, each caption's store row) and video-level ones (``frames/<e>``,
``frame_mask/<e>``..., plus ``row/video``). In a training batch both come from one dict.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from teachcache.cache import schema
from teachcache.cache.errors import TeachcacheError
from teachcache.cache.schema import ROW_KEYS
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.common.layers import identity_linear, temporal_module
from teachcache.stages.teachers.config import TeacherConfig

__all__ = ["FrameHead", "TeacherError", "TeacherHead", "nonzero", "official_cross_state"]
MAX_SCALE = 100.0
PADDING = ("official", "masked")


class TeacherError(TeachcacheError, ValueError):
    """A teacher cannot be built, loaded or fed; the message names the teacher."""


class TeacherHead(nn.Module):
    """Base of every teacher kind. Subclasses set the class flags and implement ``logits``."""

    kind = ""
    learns = False  # has weights fitted in stage one (or loaded from a checkpoint)
    has_relevance = True  # gives per-frame relevance for fine-grained teaching
    reads_frames = True

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__()
        self.config, self.dims = config, dims
        missing = [a for a in self.required_arrays() if a not in ROW_KEYS and a not in dims]
        if missing:
            raise TeacherError(f"teacher {config.name!r} ({self.kind}) needs arrays {missing}, which the store lacks")
        if self.learns:
            self.log_scale = nn.Parameter(torch.tensor(math.log(config.scale)))

    # ----- what it reads --------------------------------------------------------------------
    @classmethod
    def check_config(cls, config: TeacherConfig, frame_encoders: dict, text_encoders: dict) -> None:
        """Refuse, before any work, a config this kind cannot serve (names of encoders, files)."""
        if cls.reads_frames and config.frames not in frame_encoders:
            raise TeacherError(f"teacher {config.name!r} reads {schema.frames(config.frames)}, but no frame encoder is named {config.frames!r}")
        if config.text not in text_encoders:
            raise TeacherError(f"teacher {config.name!r} reads {schema.text(config.text)}, but no text encoder is named {config.text!r}")
        if config.checkpoint and not cls.learns:
            raise TeacherError(f"teacher {config.name!r}: a {cls.kind} head has no weights, so checkpoint must be empty")
        if config.padding not in PADDING:
            raise TeacherError(f"teacher {config.name!r}: padding = {config.padding!r}; choose one of {PADDING}")
        if config.temporal_layers < 0 or config.fit_epochs < 1 or config.fit_batch_size < 2:
            raise TeacherError(f"teacher {config.name!r}: temporal_layers >= 0, fit_epochs >= 1 and fit_batch_size >= 2 are needed")

    def text_inputs(self) -> list[str]:
        return [schema.text(self.config.text)]

    def video_inputs(self) -> list[str]:
        return [schema.frames(self.config.frames), schema.frame_mask(self.config.frames)]

    def inputs(self) -> list[str]:
        """Every array (and row key) the head reads when scoring."""
        return [*self.text_inputs(), *self.video_inputs()]

    def required_arrays(self) -> list[str]:
        """The arrays whose widths size the head (they must exist when it is built)."""
        return self.inputs()

    # ----- inputs stage one prepares for this head -------------------------------------------
    def input_specs(self, num_videos: int, caption_video: np.ndarray) -> list[ArraySpec]:
        """Arrays stage one must write for this head beyond the encoders' (none by default)."""
        return []

    def write_inputs(self, store: Store) -> None:
        """Write the arrays of ``input_specs`` (whole arrays; the caller marks the unit done)."""

    # ----- scores ----------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        """The current logit scale (raw similarity = logits / scale)."""
        return float(self.log_scale.detach().exp()) if self.learns else float(self.config.scale)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp() if self.learns else torch.tensor(float(self.config.scale))

    @torch.no_grad()
    def clamp_scale(self) -> None:
        if self.learns:
            self.log_scale.clamp_(max=math.log(MAX_SCALE))

    def prepare_video(self, video: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The query-independent work on a set of videos (temporal layer, pooling, keys...), done once
        per video set however many caption chunks are scored against it."""
        return video

    def score(self, text: dict[str, torch.Tensor], prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of captions against prepared videos: [Bt, Bv]."""
        raise NotImplementedError

    def logits(self, text: dict[str, torch.Tensor], video: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher logits of every caption against every video: [Bt, Bv]."""
        return self.score(text, self.prepare_video(video))

    def relevance(self, text: dict[str, torch.Tensor], video: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw per-frame scores of caption i with video i (before any softmax): [n, F]; 0 on padding."""
        raise TeacherError(f"teacher {self.config.name!r} ({self.kind}) has no per-frame relevance")


class FrameHead(TeacherHead):
    """A head over one frame encoder and one text encoder, with a text projection to the
    frame width (identity where the widths match) and an optional temporal layer."""

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__(config, dims)
        self.num_frames, self.dim = dims[schema.frames(config.frames)]
        self.text_dim = dims[schema.text(config.text)][-1]
        if self.learns:
            self.text_projection = identity_linear(self.text_dim, self.dim)
            self.temporal = temporal_module(self.dim, config.temporal_layers, positions=self.positions()) if config.temporal_layers else None

    def positions(self) -> int:
        """Positions the temporal layer takes per video (one per frame)."""
        return self.num_frames

    def sentence(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sentence vectors at the frame width [Bt, D] (float32)."""
        t = text[schema.text(self.config.text)].float()
        return self.text_projection(t) if self.learns else t

    def frame_cosine(self, text: dict[str, torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
        """Cosine of caption i's sentence vector with each frame of video i: [n, D], [n, F, D] -> [n, F]."""
        return torch.einsum("nd,nfd->nf", F.normalize(self.sentence(text), dim=-1), F.normalize(frames, dim=-1))

    def frames(self, video: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame features (through the temporal layer if any) [Bv, F, D] and the mask [Bv, F]."""
        frames = video[schema.frames(self.config.frames)].float()
        mask = video[schema.frame_mask(self.config.frames)].bool()
        if self.learns and self.temporal is not None:
            frames = self.temporal(frames, mask)
        return frames, mask

    def pooled_slots(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Which slots [.., N] a pooling the official code leaves unmasked reads: with ``padding =
        "official"`` every slot whose stored features are not zero (the official encoder kinds store
        padded frames and words), with ``"masked"`` the valid ones only."""
        return features.norm(dim=-1) > 0 if self.config.padding == "official" else mask.bool()


def nonzero(x: torch.Tensor) -> torch.Tensor:
    """Vectors of norm zero (padding or a failed video stored as zeros, always masked) replaced
    by ones, so that the official heads' plain ``x / ||x||`` stays finite; others unchanged."""
    return torch.where(x.norm(dim=-1, keepdim=True) > 0, x, torch.ones_like(x))


def official_cross_state(head: FrameHead, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official checkpoint's seqTransf (``frame_position_embeddings``, ``transformerClip``)
    under the head's ``temporal.`` names, refused when its layer count is not the config's."""
    blocks = {k.split(".")[2] for k in state if k.startswith("transformerClip.resblocks.")}
    if len(blocks) != head.config.temporal_layers:
        raise TeacherError(f"teacher {head.config.name!r}: the checkpoint's seqTransf has {len(blocks)} layers; set temporal_layers = {len(blocks)}")
    cross = {f"temporal.{k}": v.float() for k, v in state.items() if k.startswith(("frame_position_embeddings.", "transformerClip."))}
    own = head.state_dict()
    rows = "temporal.frame_position_embeddings.weight"
    if rows in cross and rows in own and cross[rows].shape[0] < own[rows].shape[0]:
        raise TeacherError(f"teacher {head.config.name!r}: the checkpoint's seqTransf has {cross[rows].shape[0]} positions, fewer than the {own[rows].shape[0]} this store needs")
    return cross
