"""``ts2net``: TS2-Net-like frame-softmax similarity (docs/method.md section 3).

``s_f = cos(t, f_f)``, ``T = scale * sum_f softmax_f(4 * s_f / ||s||) * s_f`` over valid
frames, with ``||s||`` the L2 norm of the caption's frame similarities. Relevance = the
softmax's logits ``4 * s_f / ||s||``. A text projection and an optional temporal layer
(TS2-Net's token shift stands in as a transformer layer here) are ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from teachcache.stages.common.layers import masked_softmax
from teachcache.stages.teachers.base import FrameHead

SHARPNESS = 4.0


def frame_softmax_logits(sims: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``4 * s_f / ||s||`` over the valid frames (the norm is taken over the last axis)."""
    valid = sims.masked_fill(~mask, 0.0)
    norm = valid.pow(2).sum(-1, keepdim=True).sqrt().clamp(min=1e-6)
    return SHARPNESS * valid / norm


class TS2NetTeacher(FrameHead):
    kind = "ts2net"
    learns = True

    def prepare_video(self, video) -> dict[str, torch.Tensor]:
        frames, mask = self.frames(video)
        return {"frames": F.normalize(frames, dim=-1), "mask": mask}

    def score(self, text, prepared) -> torch.Tensor:
        sims = torch.einsum("td,vfd->tvf", F.normalize(self.sentence(text), dim=-1), prepared["frames"])
        mask = prepared["mask"].unsqueeze(0).expand_as(sims)
        weights = masked_softmax(frame_softmax_logits(sims, mask), mask)
        return self.logit_scale() * (weights * sims).sum(-1)

    def relevance(self, text, video) -> torch.Tensor:
        frames, mask = self.frames(video)
        sims = self.frame_cosine(text, frames)
        return frame_softmax_logits(sims, mask).masked_fill(~mask, 0.0)
