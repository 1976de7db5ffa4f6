"""``xpool``: X-Pool's text-conditioned pooling (docs/method.md section 3).

Shared LayerNorm on text t and frames; one-head attention
``a_f = softmax_f((W_q t).(W_k f_f) / sqrt(D))``, ``z = LN(W_o sum_f a_f W_v f_f)``,
``z = LN(z + dropout(W_lin z))``, ``T = scale * cos(t, z)``; relevance = the attention
logits behind ``a_f``. W_q, W_k, W_v, W_o (and W_lin) start as the identity, zero bias.
X-Pool masks no frame (its uniform sampler never pads; TeachCLIP feeds it zero-padded videos
unmasked): with ``padding = "official"`` every frame whose features are stored takes part (the
official encoder kinds store the padded ones), with ``"masked"`` the valid ones only. A text
projection to the frame width and an optional temporal layer before the pooling are ours.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from teachcache.cache import schema
from teachcache.stages.common.layers import identity_linear, masked_softmax
from teachcache.stages.teachers.base import FrameHead
from teachcache.stages.teachers.config import TeacherConfig

# official X-Pool (layer6ai-labs/xpool, model/clip_transformer.py + modules/transformer.py) -> ours
OFFICIAL_NAMES = {
    "pool_frames.cross_attn.q_proj": "query",
    "pool_frames.cross_attn.k_proj": "key",
    "pool_frames.cross_attn.v_proj": "value",
    "pool_frames.cross_attn.out_proj": "out",
    "pool_frames.linear_proj": "linear",
    "pool_frames.layer_norm1": "norm_in",
    "pool_frames.layer_norm2": "norm_attention",
    "pool_frames.layer_norm3": "norm_out",
}


class XPoolTeacher(FrameHead):
    kind = "xpool"
    learns = True

    def map_official(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """An official X-Pool checkpoint's head weights under our names (None if it is not one).
        X-Pool has one CLIP for both towers: the text projection stays the identity; its
        ``clip.logit_scale`` (a log) becomes ours. It has no temporal layer and one head."""
        if not any(k.startswith("pool_frames.") for k in state):
            return None
        mapped = {}
        for theirs, ours in OFFICIAL_NAMES.items():
            for leaf in ("weight", "bias"):
                if f"{theirs}.{leaf}" in state:
                    mapped[f"{ours}.{leaf}"] = state[f"{theirs}.{leaf}"]
        own = self.state_dict()
        for name in ("text_projection.weight", "text_projection.bias"):
            mapped[name] = own[name]
        mapped["log_scale"] = state.get("clip.logit_scale", own["log_scale"]).reshape(own["log_scale"].shape)
        return mapped

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__(config, dims)
        d = self.dim
        self.norm_in = nn.LayerNorm(d)
        self.query, self.key, self.value, self.out = (identity_linear(d, d) for _ in range(4))
        self.norm_attention = nn.LayerNorm(d)
        self.linear = identity_linear(d, d)
        self.dropout = nn.Dropout(config.dropout)
        self.norm_out = nn.LayerNorm(d)

    def prepare_video(self, video) -> dict[str, torch.Tensor]:
        frames, mask = self.frames(video)
        normed = self.norm_in(frames)
        slots = self.pooled_slots(video[schema.frames(self.config.frames)].float(), mask)
        return {"keys": self.key(normed), "values": self.value(normed), "mask": slots}

    def _query(self, t: torch.Tensor) -> torch.Tensor:
        return self.query(self.norm_in(t)) / math.sqrt(self.dim)

    def score(self, text, prepared) -> torch.Tensor:
        t = self.sentence(text)
        scores = torch.einsum("td,vfd->tvf", self._query(t), prepared["keys"])  # [Bt, Bv, F]
        weights = masked_softmax(scores, prepared["mask"].unsqueeze(0))
        z = self.norm_attention(self.out(torch.einsum("tvf,vfd->tvd", weights, prepared["values"])))
        z = self.norm_out(z + self.dropout(self.linear(z)))
        return self.logit_scale() * torch.einsum("td,tvd->tv", F.normalize(t, dim=-1), F.normalize(z, dim=-1))

    def relevance(self, text, video) -> torch.Tensor:
        prepared = self.prepare_video(video)
        scores = torch.einsum("nd,nfd->nf", self._query(self.sentence(text)), prepared["keys"])
        return scores.masked_fill(~prepared["mask"], 0.0)
