"""``xpool``: X-Pool's text-conditioned pooling (METHOD section 3).

Shared LayerNorm on text t and frames; one-head attention
``a_f = softmax_f((W_q t).(W_k f_f) / sqrt(D))``, ``z = LN(W_o sum_f a_f W_v f_f)``,
``z = LN(z + dropout(W_lin z))``, ``T = scale * cos(t, z)``; relevance = the attention
logits behind ``a_f``. W_q, W_k, W_v, W_o (and W_lin) start as the identity, zero bias.
Padded frames are masked (X-Pool's uniform sampler never pads). A text projection to
the frame width and an optional temporal layer before the pooling are ours.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stages.extract.config import TeacherConfig
from stages.layers import identity_linear, masked_softmax
from stages.teachers.base import FrameHead


class XPoolTeacher(FrameHead):
    kind = "xpool"
    learns = True

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__(config, dims)
        d = self.dim
        self.norm_in = nn.LayerNorm(d)
        self.query, self.key, self.value, self.out = (identity_linear(d, d) for _ in range(4))
        self.norm_attention = nn.LayerNorm(d)
        self.linear = identity_linear(d, d)
        self.dropout = nn.Dropout(config.dropout)
        self.norm_out = nn.LayerNorm(d)

    def _attention_logits(self, t: torch.Tensor, frames: torch.Tensor, pairwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.query(self.norm_in(t))
        normed = self.norm_in(frames)
        k = self.key(normed)
        pattern = "td,vfd->tvf" if pairwise else "nd,nfd->nf"
        return torch.einsum(pattern, q, k) / math.sqrt(self.dim), self.value(normed)

    def logits(self, text, video) -> torch.Tensor:
        t = self.sentence(text)
        frames, mask = self.frames(video)
        scores, values = self._attention_logits(t, frames, pairwise=True)  # [Bt, Bv, F]
        weights = masked_softmax(scores, mask.unsqueeze(0))
        z = self.norm_attention(self.out(torch.einsum("tvf,vfd->tvd", weights, values)))
        z = self.norm_out(z + self.dropout(self.linear(z)))
        return self.logit_scale() * torch.einsum("td,tvd->tv", F.normalize(t, dim=-1), F.normalize(z, dim=-1))

    def relevance(self, text, video) -> torch.Tensor:
        frames, mask = self.frames(video)
        scores, _ = self._attention_logits(self.sentence(text), frames, pairwise=False)
        return scores.masked_fill(~mask, 0.0)
