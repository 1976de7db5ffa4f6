"""``teachclip``: TeachCLIP (docs/method.md 4a-4d): InfoNCE, coarse-grained teaching of the
batch logits, and fine-grained teaching of AFA's frame distribution from the teachers' relevance."""

from __future__ import annotations

import torch

from teachcache.stages.common.losses import coarse_teaching, fine_teaching, infonce
from teachcache.stages.student.config import ObjectiveConfig, StudentConfig
from teachcache.stages.student.objectives.bank import TeacherBank
from teachcache.stages.student.objectives.base import Objective, StepOutputs


def loss_weights(obj: ObjectiveConfig) -> tuple[float, float, float]:
    """(InfoNCE, coarse, fine) weights: docs/method.md 4d's defaults where -1."""
    defaults = (1.0, 10.0, 1.0) if obj.coarse == "ce" else (0.2, 1.0, 2.0)
    w_in, w_coarse, w_fine = (d if w < 0 else w for w, d in zip((obj.w_infonce, obj.w_coarse, obj.w_fine), defaults))
    return w_in, w_coarse, w_fine


class TeachCLIP(Objective):
    def needs_relevance(self, student: StudentConfig) -> bool:
        return student.afa

    def parts(self, out: StepOutputs, bank: TeacherBank) -> dict[str, torch.Tensor]:
        cfg = self.config
        w_in, w_coarse, w_fine = loss_weights(cfg)
        parts = {"infonce": infonce(out.logits), "coarse": coarse_teaching(out.logits, bank.logits(out.arrays), cfg.coarse)}
        total = w_in * parts["infonce"] + w_coarse * parts["coarse"]
        relevance = bank.relevance(out.arrays)
        if out.frame_logits is not None and relevance:
            mask = out.mask if out.student.config.afa_masked else None
            parts["fine"] = fine_teaching(out.frame_logits, relevance, mask, cfg.fine, cfg.fine_temperature)
            total = total + w_fine * parts["fine"]
        parts["total"] = total
        return parts
