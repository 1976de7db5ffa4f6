"""``xclip``: X-CLIP's multi-grained similarity (docs/method.md section 3).

The mean of four logits, each pooled by a softmax at temperature 0.01 whose weights are
mixed by learned matrices (identity at the start), as in X-CLIP's code:
sentence-video ``s W_g v``; video-word (softmax over words); sentence-frame (softmax over
frames); word-frame (a [words, frames] matrix under ``W_local``, pooled over words then
frames and over frames then words, averaged). Frames pass an optional temporal layer;
the video vector is the mean of the normalised frames. Relevance ``cos(s, f_f)`` on the
raw frames (docs/method.md section 3). Needs word features: ``tokens/<text>`` with ``token_mask/<text>``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from teachcache.cache import schema
from teachcache.stages.common.layers import masked_mean_video, masked_softmax
from teachcache.stages.teachers.base import FrameHead, TeacherError
from teachcache.stages.teachers.config import TeacherConfig

TEMPERATURE = 0.01


def _eye(n: int) -> nn.Parameter:
    return nn.Parameter(torch.eye(n))


def weighted_pool(sims: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, dim: int) -> torch.Tensor:
    """``sum_dim(sims * (softmax_dim(sims / 0.01) @ weight))`` with masked entries left out."""
    attention = masked_softmax(sims / TEMPERATURE, mask, dim=dim)
    mixed = torch.movedim(torch.movedim(attention, dim, -1) @ weight, -1, dim)
    return (mixed * sims.masked_fill(~mask, 0.0)).sum(dim)


class XClipTeacher(FrameHead):
    kind = "xclip"
    learns = True

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__(config, dims)
        self.num_words, token_dim = dims[schema.tokens(config.text)]
        if token_dim != self.text_dim:
            raise TeacherError(f"teacher {config.name!r} (xclip): {schema.tokens(config.text)} width {token_dim} != {schema.text(config.text)} width {self.text_dim}")
        d, L, n = self.dim, self.num_words, self.num_frames
        self.global_weight, self.local_weight = _eye(d), _eye(d)
        self.word_weight, self.word_weight_fine, self.word_weight_fine2 = _eye(L), _eye(L), _eye(L)
        self.frame_weight, self.frame_weight_fine, self.frame_weight_fine2 = _eye(n), _eye(n), _eye(n)

    @classmethod
    def check_config(cls, config: TeacherConfig, frame_encoders: dict, text_encoders: dict) -> None:
        super().check_config(config, frame_encoders, text_encoders)
        if text_encoders[config.text].tokens < 1:
            raise TeacherError(f"teacher {config.name!r} (xclip) needs word features: set tokens = 32 (say) on text encoder {config.text!r}")

    def text_inputs(self) -> list[str]:
        return [schema.text(self.config.text), schema.tokens(self.config.text), schema.token_mask(self.config.text)]

    def words(self, text) -> tuple[torch.Tensor, torch.Tensor]:
        words = self.text_projection(text[schema.tokens(self.config.text)].float())
        return F.normalize(words, dim=-1), text[schema.token_mask(self.config.text)].bool()

    def prepare_video(self, video) -> dict[str, torch.Tensor]:
        frames, mask = self.frames(video)
        return {"frames": F.normalize(frames, dim=-1), "video": F.normalize(masked_mean_video(frames, mask), dim=-1), "mask": mask}

    def score(self, text, prepared) -> torch.Tensor:
        s = F.normalize(self.sentence(text), dim=-1)  # [Bt, D]
        w, w_mask = self.words(text)  # [Bt, L, D], [Bt, L]
        f, v, f_mask = prepared["frames"], prepared["video"], prepared["mask"]  # [Bv, F, D], [Bv, D], [Bv, F]
        bt, bv = s.shape[0], f.shape[0]
        sentence_video = s @ self.global_weight @ v.T
        words_mask = w_mask[:, None, :].expand(bt, bv, -1)
        video_word = weighted_pool(torch.einsum("tld,vd->tvl", w, v), words_mask, self.word_weight, dim=-1)
        frames_mask = f_mask[None, :, :].expand(bt, bv, -1)
        sentence_frame = weighted_pool(torch.einsum("td,vfd->tvf", s, f), frames_mask, self.frame_weight, dim=-1)
        fine = torch.einsum("tld,de,vfe->tvlf", w, self.local_weight, f)
        fine_mask = words_mask[..., None] & frames_mask[:, :, None, :]
        per_frame = weighted_pool(fine, fine_mask, self.word_weight_fine, dim=2)  # [Bt, Bv, F]
        per_word = weighted_pool(fine, fine_mask, self.frame_weight_fine, dim=3)  # [Bt, Bv, L]
        word_frame = 0.5 * (weighted_pool(per_frame, frames_mask, self.frame_weight_fine2, dim=-1) + weighted_pool(per_word, words_mask, self.word_weight_fine2, dim=-1))
        return self.logit_scale() * (sentence_video + video_word + sentence_frame + word_frame) / 4

    def relevance(self, text, video) -> torch.Tensor:
        frames = video[schema.frames(self.config.frames)].float()
        mask = video[schema.frame_mask(self.config.frames)].bool()
        cos = self.frame_cosine(text, frames)
        return cos.masked_fill(~mask, 0.0)
