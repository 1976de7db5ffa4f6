"""``xclip``: X-CLIP's multi-grained similarity as its code computes it (docs/method.md section 3;
the computation itself is ``official.xclip_similarity``).

The mean of four logits, each pooled by a softmax at temperature 0.01 whose weights are mixed
by learned matrices (the identity at the start; X-CLIP's names): sentence-video
``s global_mat_weight v``; video-word; sentence-frame; frame-word (a [words, frames] matrix
under ``local_mat_weight``, pooled both ways). The video vector is seqTransf's (the
``temporal_layers`` cross layers) masked mean; the frame and word logits read the raw frames
and every word position. ``padding = "official"`` lets padded words and frames take part, as
X-CLIP's code does, wherever their features are stored (the official encoder kinds store them);
``"masked"`` leaves them out. Relevance ``cos(s, f)`` on the raw frames, as TeachCLIP takes it.
Needs word features: ``tokens/<text>`` with ``token_mask/<text>``. An official X-CLIP
checkpoint's head loads by name (``map_official``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from teachcache.cache import schema
from teachcache.stages.teachers import official
from teachcache.stages.teachers.base import FrameHead, TeacherError, nonzero, official_cross_state
from teachcache.stages.teachers.config import TeacherConfig

WEIGHTS = {  # X-CLIP's mixing matrices and the axis each one spans
    "global_mat_weight": "dim",
    "word_logit_weight": "words",
    "frame_logit_weight": "frames",
    "local_mat_weight": "dim",
    "frame_mat_weight": "frames",
    "word_mat_weight": "words",
    "frame_mat_weight2": "frames",
    "word_mat_weight2": "words",
}


class XClipTeacher(FrameHead):
    kind = "xclip"
    learns = True

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__(config, dims)
        self.num_words, token_dim = dims[schema.tokens(config.text)]
        if token_dim != self.text_dim:
            raise TeacherError(f"teacher {config.name!r} (xclip): {schema.tokens(config.text)} width {token_dim} != {schema.text(config.text)} width {self.text_dim}")
        sizes = {"dim": self.dim, "words": self.num_words, "frames": self.num_frames}
        for name, axis in WEIGHTS.items():
            self.register_parameter(name, nn.Parameter(torch.eye(sizes[axis])))

    @classmethod
    def check_config(cls, config: TeacherConfig, frame_encoders: dict, text_encoders: dict) -> None:
        super().check_config(config, frame_encoders, text_encoders)
        if text_encoders[config.text].tokens < 1:
            raise TeacherError(f"teacher {config.name!r} (xclip) needs word features: set tokens = 32 (say) on text encoder {config.text!r}")

    def text_inputs(self) -> list[str]:
        return [schema.text(self.config.text), schema.tokens(self.config.text), schema.token_mask(self.config.text)]

    def map_official(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """An official X-CLIP checkpoint's head under our names (None if it is not one): its
        mixing matrices, seqTransf and ``clip.logit_scale``; the text projection stays the
        identity (X-CLIP's towers share one width)."""
        if "global_mat_weight" not in state:
            return None
        own = self.state_dict()
        mapped = {name: state[name] for name in WEIGHTS}
        mapped |= official_cross_state(self, state)
        mapped |= {k: own[k] for k in own if k.startswith("text_projection.")}
        mapped["log_scale"] = state.get("clip.logit_scale", own["log_scale"]).reshape(own["log_scale"].shape).float()
        return mapped

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in WEIGHTS}

    def prepare_video(self, video: dict[str, Any]) -> dict[str, torch.Tensor]:
        frames = video[schema.frames(self.config.frames)].float()
        mask = video[schema.frame_mask(self.config.frames)].bool()
        phi = frames if self.temporal is None else self.temporal(frames, mask)
        video_vector = official.l2n(nonzero(official.masked_mean(official.l2n(nonzero(phi)), mask)))  # a failed video: finite, masked later
        return {"frames": nonzero(frames), "video": video_vector, "slots": self.pooled_slots(frames, mask)}

    def score(self, text: dict[str, Any], prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        stored = text[schema.tokens(self.config.text)].float()
        word_slots = self.pooled_slots(stored, text[schema.token_mask(self.config.text)])
        frame_slots = prepared["slots"]
        return official.xclip_similarity(
            self.sentence(text),
            nonzero(self.text_projection(stored)),
            prepared["frames"],
            frame_slots,
            self.weights(),
            None,
            self.logit_scale(),
            None if bool(word_slots.all()) else word_slots,  # all slots read: exactly the official (unmasked) path
            None if bool(frame_slots.all()) else frame_slots,
            video=prepared["video"],
        )

    def relevance(self, text: dict[str, Any], video: dict[str, Any]) -> torch.Tensor:
        """``cos(s_i, f)`` over every frame of video i (0 where the stored frame is zero)."""
        frames = video[schema.frames(self.config.frames)].float()
        slots = self.pooled_slots(frames, video[schema.frame_mask(self.config.frames)])
        return self.frame_cosine(text, frames).masked_fill(~slots, 0.0)
