"""``teachtext``: one light retrieval model per text encoder (TeachText's text teachers).

Text: a projection of the cached sentence vector; video: a linear projection of the
frames (through an optional temporal layer), masked mean of the normalised frames.
``T(k) = scale * t_k . v_k^T`` with unit vectors; stage two's TeachText loss divides by the
scale to get the raw similarities and averages the teachers with a plain mean.
Relevance: the cosine of the caption with each projected frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from teachcache.stages.common.layers import identity_linear, masked_mean_video
from teachcache.stages.teachers.base import FrameHead
from teachcache.stages.teachers.config import TeacherConfig


class TextTeacher(FrameHead):
    kind = "teachtext"
    learns = True

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__(config, dims)
        self.video_projection = identity_linear(self.dim, self.dim)

    def _frames(self, video) -> tuple[torch.Tensor, torch.Tensor]:
        frames, mask = self.frames(video)
        return self.video_projection(frames), mask

    def prepare_video(self, video) -> dict[str, torch.Tensor]:
        frames, mask = self._frames(video)
        return {"video": F.normalize(masked_mean_video(frames, mask), dim=-1)}

    def score(self, text, prepared) -> torch.Tensor:
        return self.logit_scale() * F.normalize(self.sentence(text), dim=-1) @ prepared["video"].T

    def relevance(self, text, video) -> torch.Tensor:
        frames, mask = self._frames(video)
        cos = self.frame_cosine(text, frames)
        return cos.masked_fill(~mask, 0.0)
