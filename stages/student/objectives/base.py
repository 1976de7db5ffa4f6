"""What an objective is: named loss parts of one batch, from the student's outputs and the
teachers' batch logits (rebuilt from the cache by ``bank.TeacherBank``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from teachcache.stages.student.base import RetrievalStudent
from teachcache.stages.student.config import ObjectiveConfig, StudentConfig
from teachcache.stages.student.objectives.bank import TeacherBank


@dataclass
class StepOutputs:
    """The student's outputs for one (global) batch, with the batch's arrays on the device."""

    logits: torch.Tensor  # S = scale * cos, [B_text, B_video], matched pairs on the diagonal
    frame_logits: torch.Tensor | None  # AFA logits [B, F] (None without AFA)
    mask: torch.Tensor | None  # frame mask [B, F] (None without frame logits)
    arrays: dict[str, torch.Tensor]
    student: RetrievalStudent


class Objective:
    """Base of every objective; subclasses implement ``parts``."""

    uses_teachers = True  # reads teacher logits (the teachers named in the config are loaded)

    def __init__(self, config: ObjectiveConfig):
        self.config = config

    def teachers(self) -> list[str]:
        """The stored teachers this objective reads."""
        return list(self.config.teachers) if self.uses_teachers else []

    def needs_relevance(self, student: StudentConfig) -> bool:
        """Whether batches must carry the teachers' relevance arrays."""
        return False

    def parts(self, out: StepOutputs, bank: TeacherBank) -> dict[str, torch.Tensor]:
        """The named parts of the loss; ``total`` is their weighted sum."""
        raise NotImplementedError
