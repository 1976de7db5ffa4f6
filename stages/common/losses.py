"""Training objectives of stage two (docs/method.md section 4). All take logits, not probabilities.

``S`` is the student's [B_text, B_video] logit matrix with matched pairs on the diagonal;
teacher matrices ``T(k)`` have the same layout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from teachcache.cache.errors import ConfigError
from teachcache.cache.registry import Registry


def infonce(sim: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: ``(CE_rows(S) + CE_rows(S^T)) / 2`` with targets on the diagonal."""
    target = torch.arange(sim.shape[0], device=sim.device)
    return (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2


def _pearson_rows(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of matching rows of x and y (over the masked entries only)."""
    w = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    n = w.sum(-1, keepdim=True).clamp(min=1.0)
    xc = (x - (x * w).sum(-1, keepdim=True) / n) * w
    yc = (y - (y * w).sum(-1, keepdim=True) / n) * w
    return (xc * yc).sum(-1) / (xc.norm(dim=-1) * yc.norm(dim=-1)).clamp(min=eps)


def _coarse_pear(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    total = s.new_zeros(())
    for s_dir, t_dir in ((s, t), (s.T, t.T)):
        total = total + (1 - _pearson_rows(F.softmax(s_dir, -1), F.softmax(t_dir, -1))).mean()
    return total


def _coarse_ce(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    total = s.new_zeros(())
    for s_dir, t_dir in ((s, t), (s.T, t.T)):
        total = total + (-F.softmax(t_dir, -1) * F.log_softmax(s_dir, -1)).mean()
    return total


def _coarse_l1(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(s, t)


CoarseMethod = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
COARSE_TEACHING: Registry[CoarseMethod] = Registry("coarse teaching method")
COARSE_TEACHING.add("pear", _coarse_pear, "1 - Pearson of row softmaxes, both directions (TeachCLIP's default)")
COARSE_TEACHING.add("ce", _coarse_ce, "soft-target cross-entropy, both directions (mean over B*B)")
COARSE_TEACHING.add("l1", _coarse_l1, "SmoothL1 between raw logits")


def coarse_teaching(student_logits: torch.Tensor, teacher_logits: list[torch.Tensor], method: str = "pear") -> torch.Tensor:
    """Batch-level teaching (docs/method.md 4b), averaged over teachers with equal weight.

    ``pear``: ``mean_i(1 - pearson(P_i, Q_i))`` on row softmaxes, plus the same on the
    transposes; ``ce``: ``mean_ij(-Q log P)`` over all B*B entries, both directions summed;
    ``l1``: SmoothL1 between raw teacher and student logits.
    """
    one = COARSE_TEACHING.get(method)
    if not teacher_logits:
        raise ConfigError("coarse_teaching needs at least one teacher matrix")
    losses = [one(student_logits, t.to(student_logits.dtype).detach()) for t in teacher_logits]
    return torch.stack(losses).mean()


def _fine_ce(p: torch.Tensor, log_p: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    terms = torch.where(valid, -y * log_p, torch.zeros_like(p))
    return terms.sum() / p.numel()  # docs/method.md 4c: the mean is over B*F entries


def _fine_pear(p: torch.Tensor, log_p: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return (1 - _pearson_rows(p, y, mask)).mean()


def _fine_l1(p: torch.Tensor, log_p: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    diff = F.smooth_l1_loss(p, y, reduction="none")
    return torch.where(valid, diff, torch.zeros_like(diff)).sum() / valid.sum().clamp(min=1)


FineMethod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
FINE_TEACHING: Registry[FineMethod] = Registry("fine teaching method")
FINE_TEACHING.add("ce", _fine_ce, "cross-entropy of the teacher's frame distribution (TeachCLIP's; mean over B*F)")
FINE_TEACHING.add("pear", _fine_pear, "1 - Pearson of the two frame distributions")
FINE_TEACHING.add("l1", _fine_l1, "SmoothL1 between the two frame distributions")


def fine_teaching(
    student_frame_logits: torch.Tensor,
    teacher_relevance: list[torch.Tensor],
    frame_mask: torch.Tensor | None = None,
    method: str = "ce",
    teacher_temperature: float = 1.0,
) -> torch.Tensor:
    """Frame-level teaching of AFA (docs/method.md 4c) on matched pairs, averaged over teachers.

    ``y = softmax_f(r / teacher_temperature)``, ``p = softmax_f(a)``. ``ce``:
    ``mean_{b,f}(-y log p)`` over all B*F entries (masked entries contribute 0);
    ``pear``: ``mean_b(1 - pearson(p_b, y_b))``; ``l1``: SmoothL1 between p and y.
    With ``frame_mask=None`` this is TeachCLIP's form (no masking of padded frames).
    """
    one = FINE_TEACHING.get(method)
    if not teacher_relevance:
        raise ConfigError("fine_teaching needs at least one teacher relevance")
    a = student_frame_logits
    mask = None if frame_mask is None else frame_mask.bool()
    if mask is not None:
        a = a.masked_fill(~mask, float("-inf"))
    log_p = F.log_softmax(a, -1)
    p = log_p.exp()
    valid = torch.ones_like(p, dtype=torch.bool) if mask is None else mask
    losses = []
    for r in teacher_relevance:
        if r.shape != student_frame_logits.shape:
            raise ConfigError(f"teacher relevance of shape {tuple(r.shape)} does not match the student's {tuple(student_frame_logits.shape)}")
        logits = r.to(a.dtype).detach() / teacher_temperature
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        losses.append(one(p, log_p, F.softmax(logits, -1), valid, mask))
    return torch.stack(losses).mean()


def teachtext_distillation(student_sim: torch.Tensor, teacher_sims: list[torch.Tensor]) -> torch.Tensor:
    """TeachText (docs/method.md 4e): SmoothL1 (beta 1) over all B*B raw similarities between the
    student and the plain element-wise mean of the teachers."""
    if not teacher_sims:
        raise ConfigError("teachtext_distillation needs at least one teacher matrix")
    target = torch.stack([t.to(student_sim.dtype).detach() for t in teacher_sims]).mean(0)
    return F.smooth_l1_loss(student_sim, target, beta=1.0)


def max_margin_ranking(sim: torch.Tensor, margin: float = 0.0938) -> torch.Tensor:
    """Max-margin ranking loss, both directions, diagonal excluded: the mean over the
    2B(B-1) off-diagonal entries of ``relu(margin - (S_ii - S_ij))`` and ``relu(margin - (S_jj - S_ij))``."""
    n = sim.shape[0]
    diag = sim.diagonal()
    off = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    t2v = F.relu(margin - (diag[:, None] - sim))[off]
    v2t = F.relu(margin - (diag[None, :] - sim))[off]
    return torch.cat([t2v, v2t]).mean() if n > 1 else sim.new_zeros(())


def mckd(
    student_sim: torch.Tensor,
    teacher_sim: torch.Tensor,
    tau: float = 1.0,
    margin: float = 0.2,
    student_text: torch.Tensor | None = None,
    student_video: torch.Tensor | None = None,
    teacher_text: torch.Tensor | None = None,
    teacher_video: torch.Tensor | None = None,
) -> torch.Tensor:
    """MCKD, **our reading** of its abstract (no public code; docs/method.md 4f).

    KL(softmax_row(T / tau) || softmax_row(S / tau)) over text-to-video rows and the
    transposes; optionally the same on text-text and video-video relations when both
    students' and teachers' embeddings are given; plus an explicit discrimination loss:
    a hinge on the hardest in-batch negative of each row and column, margin ``margin``
    on the student's logits.
    """

    def kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(s / tau, -1), F.log_softmax(t.detach() / tau, -1), log_target=True, reduction="batchmean")

    loss = kl(student_sim, teacher_sim) + kl(student_sim.T, teacher_sim.T)
    for s_emb, t_emb in ((student_text, teacher_text), (student_video, teacher_video)):
        if s_emb is not None and t_emb is not None:
            s_rel = F.normalize(s_emb, dim=-1) @ F.normalize(s_emb, dim=-1).T
            t_rel = F.normalize(t_emb, dim=-1) @ F.normalize(t_emb, dim=-1).T
            loss = loss + kl(s_rel, t_rel)
    n = student_sim.shape[0]
    if n > 1:
        eye = torch.eye(n, dtype=torch.bool, device=student_sim.device)
        negatives = student_sim.masked_fill(eye, float("-inf"))
        diag = student_sim.diagonal()
        hardest = F.relu(margin - diag + negatives.max(1).values) + F.relu(margin - diag + negatives.max(0).values)
        loss = loss + hardest.mean()
    return loss
