"""``ts2net``: TS2-Net's similarity as its code computes it (docs/method.md section 3; the
computation itself is ``official.ts2net_frames`` and ``official.ts2net_score``).

seqTransf (``temporal_layers`` cross layers) runs over every stored token of a video, frame
after frame (TS2-Net's frame encoder stores each frame's CLS and its selected patches as
``frame_tokens/<frames>``; other encoders give one token, the frame), and the CLS slots phi_f
are scored: ``T = scale * sum_f softmax_f(4 s_f / ||s||) s_f`` with ``s_f = cos(t, phi_f)``
over the valid frames (TS2-Net tiles the frame mask over the tokens as its code does).
Relevance ``cos(t, phi_f)``, as TeachCLIP takes it from TS2-Net. An official TS2-Net
checkpoint's head loads by name (``map_official``; its token selector belongs to the frame encoder).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from teachcache.cache import schema
from teachcache.stages.teachers import official
from teachcache.stages.teachers.base import FrameHead, nonzero, official_cross_state
from teachcache.stages.teachers.config import TeacherConfig


class TS2NetTeacher(FrameHead):
    kind = "ts2net"
    learns = True

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        token_shape = dims.get(schema.frame_tokens(config.frames))
        self.tokens_per_frame = int(token_shape[1]) if token_shape else 1
        super().__init__(config, dims)

    def positions(self) -> int:
        return self.num_frames * self.tokens_per_frame

    def video_inputs(self) -> list[str]:
        tokens = [schema.frame_tokens(self.config.frames)] if self.tokens_per_frame > 1 else []
        return [*super().video_inputs(), *tokens]

    def map_official(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """An official TS2-Net checkpoint's head under our names (None if it is not one)."""
        if not any(k.startswith("visual_token_selector.") for k in state):
            return None
        own = self.state_dict()
        mapped = official_cross_state(self, state) | {k: own[k] for k in own if k.startswith("text_projection.")}
        mapped["log_scale"] = state.get("clip.logit_scale", own["log_scale"]).reshape(own["log_scale"].shape).float()
        return mapped

    def cls_slots(self, video: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """phi at each frame's CLS slot [B, F, D] (after seqTransf over all tokens) and the mask the score uses [B, F]."""
        mask = video[schema.frame_mask(self.config.frames)].bool()
        if self.tokens_per_frame > 1:
            tokens = video[schema.frame_tokens(self.config.frames)].float().flatten(1, 2)  # [B, F*T, D], frame after frame
        else:
            tokens = video[schema.frames(self.config.frames)].float()
        if self.temporal is None:
            return tokens[:, :: self.tokens_per_frame], mask
        phi, tiled = official.ts2net_frames(tokens, mask, self.temporal)
        return phi, tiled.bool()

    def prepare_video(self, video: dict[str, Any]) -> dict[str, torch.Tensor]:
        phi, mask = self.cls_slots(video)
        return {"phi": nonzero(phi), "mask": mask}

    def score(self, text: dict[str, Any], prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        return official.ts2net_score(self.sentence(text), prepared["phi"], prepared["mask"], self.logit_scale())

    def relevance(self, text: dict[str, Any], video: dict[str, Any]) -> torch.Tensor:
        """``cos(t_i, phi_f)`` at every CLS slot of video i (0 where phi is zero)."""
        phi, _ = self.cls_slots(video)
        return torch.einsum("nd,nfd->nf", F.normalize(self.sentence(text), dim=-1), F.normalize(phi, dim=-1))
