"""``teachtext``: TeachText (docs/method.md 4e): a ranking loss on the student's raw
similarities plus SmoothL1 to the plain mean of the teachers' raw similarities."""

from __future__ import annotations

import torch

from teachcache.stages.common.losses import infonce, max_margin_ranking, teachtext_distillation
from teachcache.stages.student.objectives.bank import TeacherBank
from teachcache.stages.student.objectives.base import Objective, StepOutputs


class TeachText(Objective):
    def parts(self, out: StepOutputs, bank: TeacherBank) -> dict[str, torch.Tensor]:
        cfg = self.config
        raw = out.logits / out.student.scale()
        parts = {"rank": max_margin_ranking(raw, cfg.margin) if cfg.rank_loss == "max_margin" else infonce(out.logits)}
        parts["total"] = parts["rank"]
        if cfg.w_distill:  # 0 isolates the ranking loss: no teacher is scored
            teachers = [t / scale for t, scale in zip(bank.logits(out.arrays), bank.scales())]
            parts["distill"] = teachtext_distillation(raw, teachers)
            parts["total"] = parts["total"] + cfg.w_distill * parts["distill"]
        return parts
