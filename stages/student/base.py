"""What every student kind gives stage two: the store arrays it reads, its caption and video
sides (tuples of tensors: one vector per caption and per video for CLIP4Clip's student, one per
expert plus mixture weights or availability for CE's), and the similarity of the two.

A side is computed once per caption or video and kept for retrieval; the similarity of a
caption and a video is cheap (one dot product, or one per expert). The recipe, evaluation and
torchrun's all-gather see only this interface.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from teachcache.stages.student.config import StudentConfig

Side = tuple[torch.Tensor, ...]  # one row per caption (or video) in every tensor
Arrays = Mapping[str, torch.Tensor]


class RetrievalStudent(nn.Module):
    """Base of every student kind. ``caption_arrays`` and ``video_arrays`` name what a batch
    must carry for it."""

    kind = ""
    config: StudentConfig
    logit_scale: nn.Parameter  # log of the scale; each kind creates it (train.student.logit_scale)
    caption_arrays: list[str]
    video_arrays: list[str]

    def encode_captions(self, arrays: Arrays) -> Side:
        """The caption side of a batch of caption rows."""
        raise NotImplementedError

    def encode_videos(self, arrays: Arrays) -> tuple[Side, torch.Tensor | None]:
        """The video side of a batch of video rows, and per-frame logits where the student has
        them (AFA, taught by the teachers' relevance; else None)."""
        raise NotImplementedError

    def similarity(self, captions: Side, videos: Side) -> torch.Tensor:
        """The raw similarity [captions, videos] (no parameter: the sides carry them)."""
        raise NotImplementedError

    def scaled_similarity(self, scale: torch.Tensor, captions: Side, videos: Side) -> torch.Tensor:
        """``scale * similarity`` (a kind may fold the scale in elsewhere, to keep its rounding)."""
        return scale * self.similarity(captions, videos)

    def scale(self) -> torch.Tensor:
        """The logit scale, the factor between the logits and the raw similarity (kept <= 100 by
        ``clamp_scale`` after each step, so it still learns)."""
        return self.logit_scale.exp()

    @torch.no_grad()
    def clamp_scale(self, maximum: float = 100.0) -> None:
        """Clamp the learnable logit scale to <= maximum, as CLIP does, on the parameter."""
        self.logit_scale.clamp_(max=math.log(maximum))

    def widths(self) -> list[int]:
        """The widths that size the student (recorded with a run)."""
        raise NotImplementedError

    def logits(self, arrays: Arrays) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [B, B] of a batch's captions against its videos, and the frame logits."""
        videos, frame_logits = self.encode_videos(arrays)
        return self.scaled_similarity(self.scale(), self.encode_captions(arrays), videos), frame_logits

    def array_names(self) -> list[str]:
        return [*self.caption_arrays, *self.video_arrays]
