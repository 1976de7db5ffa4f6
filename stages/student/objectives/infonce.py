"""``infonce``: symmetric InfoNCE alone (docs/method.md 4a): the baseline every teacher is judged by."""

from __future__ import annotations

import torch

from teachcache.stages.common.losses import infonce
from teachcache.stages.student.objectives.bank import TeacherBank
from teachcache.stages.student.objectives.base import Objective, StepOutputs


class InfoNCE(Objective):
    uses_teachers = False

    def parts(self, out: StepOutputs, bank: TeacherBank) -> dict[str, torch.Tensor]:
        loss = infonce(out.logits)
        return {"infonce": loss, "total": loss}
