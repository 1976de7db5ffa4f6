"""``mckd``: MCKD, our reading of its abstract (docs/method.md 4f): InfoNCE plus the KL of the
teachers' mean relation softmaxes into the student's and a hardest-negative hinge."""

from __future__ import annotations

import torch

from teachcache.stages.common.losses import infonce, mckd
from teachcache.stages.student.objectives.bank import TeacherBank
from teachcache.stages.student.objectives.base import Objective, StepOutputs


class MCKD(Objective):
    def parts(self, out: StepOutputs, bank: TeacherBank) -> dict[str, torch.Tensor]:
        cfg, S = self.config, out.logits
        parts = {"infonce": infonce(S)}
        teacher = torch.stack(bank.logits(out.arrays)).mean(0)
        profiles = {"student_text": S, "student_video": S.T, "teacher_text": teacher, "teacher_video": teacher.T} if cfg.mckd_relations else {}
        parts["mckd"] = mckd(S, teacher, cfg.mckd_tau, cfg.mckd_margin, **profiles)
        parts["total"] = parts["infonce"] + parts["mckd"]
        return parts
