"""``ce``: a multi-expert teacher, Collaborative Experts' CE+ (``stages/common/ce.py``) over
several frame encoders' frames (each averaged over the real frames, CE's "avg" aggregation) and
a text encoder's sentence vector (one token through CE's text NetVLAD, one cluster), fitted in
stage one on the cache with InfoNCE under a learnable logit scale.

``T = scale * S_ce``, S_ce CE's mix of per-expert cosines; the TeachText loss divides by the
scale and distils S_ce. Such a teacher can see more experts than its student (TeachText's
video-side extension: e.g. appearance and motion for a student on appearance alone). A video
with no expert (a failed one) scores 0. No per-frame relevance.
"""

from __future__ import annotations

import torch

from teachcache.cache import schema
from teachcache.stages.common.ce import CEArchitecture, CENet, ce_similarity
from teachcache.stages.common.layers import masked_mean_video
from teachcache.stages.teachers.base import TeacherError, TeacherHead
from teachcache.stages.teachers.config import TeacherConfig


class CETeacher(TeacherHead):
    kind = "ce"
    learns = True
    has_relevance = False
    reads_frames = False

    def __init__(self, config: TeacherConfig, dims: dict[str, tuple[int, ...]]):
        super().__init__(config, dims)
        text_dim = dims[schema.text(config.text)][-1]
        self.arch = CEArchitecture(
            experts={e: dims[schema.frames(e)][-1] for e in config.experts},
            vlad_clusters={},
            text_dim=text_dim,
            text_clusters=1,
            text_ghosts=0,
            shared_dim=config.shared_dim or text_dim,
        )
        net = CENet(self.arch)
        self.text_pooling, self.ce = net.text_pooling, net.ce

    @classmethod
    def check_config(cls, config: TeacherConfig, frame_encoders: dict, text_encoders: dict) -> None:
        super().check_config(config, frame_encoders, text_encoders)
        unknown = [e for e in config.experts if e not in frame_encoders]
        if not config.experts or unknown:
            raise TeacherError(f"teacher {config.name!r} (ce): experts = {config.experts} must name frame encoders of [extract.frame_encoders] ({list(frame_encoders)})")
        if config.shared_dim < 0:
            raise TeacherError(f"teacher {config.name!r} (ce): shared_dim = {config.shared_dim} must be >= 0")

    def video_inputs(self) -> list[str]:
        return [name for e in sorted(self.config.experts) for name in (schema.frames(e), schema.frame_mask(e))]

    def prepare_video(self, video: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-expert video embeddings [V, M, S] and the availability [V, M]."""
        pooled, available = [], []
        for expert in self.arch.order:
            frames, mask = video[schema.frames(expert)].float(), video[schema.frame_mask(expert)].bool()
            pooled.append(masked_mean_video(frames, mask))
            available.append(mask.any(-1).float())
        avail = torch.stack(available, dim=1)
        return {"video": torch.stack(self.ce.video(pooled, avail).embeddings, dim=1), "available": avail}

    def score(self, text: dict[str, torch.Tensor], prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        sentence = text[schema.text(self.config.text)].float()
        units, weights = self.ce.text(self.text_pooling(sentence.unsqueeze(1)))
        video, available = prepared["video"], prepared["available"]
        has = available.sum(1) > 0
        sims = torch.zeros(len(sentence), len(video), device=video.device, dtype=video.dtype)
        sims[:, has] = ce_similarity(torch.stack(units, dim=1), weights, video[has], available[has])
        return self.logit_scale() * sims
