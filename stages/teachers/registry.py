"""Teacher kinds by name: each declares the arrays it reads, its relevance and its logits."""

from __future__ import annotations

import torch

from stages.extract.config import TeacherConfig
from stages.teachers.dual import DualTeacher

TEACHERS: dict[str, type[torch.nn.Module]] = {"dual": DualTeacher}


def build_teacher(config: TeacherConfig) -> torch.nn.Module:
    """Build the teacher head of a registered kind."""
    if config.kind not in TEACHERS:
        raise ValueError(f"teacher {config.name!r}: unknown kind {config.kind!r}; choose one of {sorted(TEACHERS)}")
    return TEACHERS[config.kind](config)
