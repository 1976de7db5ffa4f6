"""``dual``: a (bigger) CLIP scored as a dual encoder (docs/method.md section 3).

``T = scale * normalize(s) . normalize(mean_f normalize(f_f))`` over valid frames;
relevance ``r_f = cos(s, f_f)`` on the raw frame features. No weights: nothing to fit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from teachcache.cache import schema
from teachcache.stages.common.layers import masked_mean_video
from teachcache.stages.teachers.base import FrameHead, TeacherError
from teachcache.stages.teachers.config import TeacherConfig


class DualTeacher(FrameHead):
    kind = "dual"

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__(config, dims)
        if self.text_dim != self.dim:
            raise TeacherError(
                f"teacher {config.name!r} (dual): {schema.text(config.text)} has width {self.text_dim} but {schema.frames(config.frames)} "
                f"has {self.dim}; a dual teacher needs one CLIP's text and image towers"
            )

    @classmethod
    def check_config(cls, config: TeacherConfig, frame_encoders: dict, text_encoders: dict) -> None:
        super().check_config(config, frame_encoders, text_encoders)
        frames, text = frame_encoders[config.frames], text_encoders[config.text]
        if text.kind != "open_clip" or (text.model, text.pretrained, text.seed) != (frames.model, frames.pretrained, frames.seed):
            raise TeacherError(
                f"teacher {config.name!r} (dual) reads {schema.frames(frames.name)} ({frames.model}, pretrained={frames.pretrained!r}, "
                f"seed={frames.seed}) and {schema.text(text.name)} ({text.kind} {text.model}, pretrained={text.pretrained!r}, "
                f"seed={text.seed}); a dual teacher needs the open_clip text tower of the same model, weights and seed"
            )

    def prepare_video(self, video) -> dict[str, torch.Tensor]:
        frames, mask = self.frames(video)
        return {"video": F.normalize(masked_mean_video(frames, mask), dim=-1)}

    def score(self, text, prepared) -> torch.Tensor:
        return self.scale * F.normalize(self.sentence(text), dim=-1) @ prepared["video"].T

    def relevance(self, text, video) -> torch.Tensor:
        frames, mask = self.frames(video)
        cos = self.frame_cosine(text, frames)
        return cos.masked_fill(~mask, 0.0)
