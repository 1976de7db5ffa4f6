"""``released``: a teacher whose embeddings were released as a file and imported into the store
(TeachText's teacher files: ``teachcache import-features``). Its batch logits are rebuilt as
TeachText's trainer builds them: per modality, each caption's embedding against each video's,
summed over the teacher's modalities, with no weights, mask or scale (``T = sum_m X_m Y_m^T``;
the import sets the config's fixed scale to 1).
No relevance, no weights: nothing is fitted."""

from __future__ import annotations

import torch

from teachcache.cache import schema
from teachcache.stages.teachers.base import TeacherError, TeacherHead
from teachcache.stages.teachers.config import TeacherConfig


class ReleasedTeacher(TeacherHead):
    kind = "released"
    has_relevance = False
    reads_frames = False

    @classmethod
    def check_config(cls, config: TeacherConfig, frame_encoders: dict, text_encoders: dict) -> None:
        raise TeacherError(
            f"teacher {config.name!r}: a released teacher comes from its file through `teachcache import-features` ([features.teachers]), not from [extract.teachers]"
        )

    def text_inputs(self) -> list[str]:
        return [schema.teacher_text(self.config.name)]

    def video_inputs(self) -> list[str]:
        return [schema.teacher_video(self.config.name)]

    def score(self, text: dict[str, torch.Tensor], prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        captions, videos = text[self.text_inputs()[0]].float(), prepared[self.video_inputs()[0]].float()
        return torch.einsum("qmd,vmd->qv", captions, videos)
