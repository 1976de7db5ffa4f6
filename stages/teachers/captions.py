"""``captions``: a caption-privileged teacher (ours, not from the papers).

Videos of a data set come with several captions. The teacher scores (caption c, video v)
by the similarity, under a real text encoder, between c and v's *other* captions (c
itself excluded), pooled by mean or max: generalized distillation in TeachText's sense
(privileged information a student never sees at test time), at no visual cost. Stage one
writes each video's caption bank (``bank/<name>`` [V, C, D] and the captions' store rows
``bank_rows/<name>`` [V, C], -1 for none). No weights, no relevance.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from teachcache.cache import schema
from teachcache.cache.schema import CAPTION_ROW, VIDEOS
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.teachers.base import TeacherError, TeacherHead
from teachcache.stages.teachers.config import TeacherConfig

POOLS = ("mean", "max")


class CaptionTeacher(TeacherHead):
    kind = "captions"
    has_relevance = False
    reads_frames = False

    @classmethod
    def check_config(cls, config: TeacherConfig, frame_encoders: dict, text_encoders: dict) -> None:
        super().check_config(config, frame_encoders, text_encoders)
        if config.pool not in POOLS or config.max_captions < 2:
            raise TeacherError(f"teacher {config.name!r} (captions): pool must be one of {POOLS} and max_captions >= 2")

    @property
    def bank(self) -> str:
        return schema.bank(self.config.name)

    @property
    def bank_rows(self) -> str:
        return schema.bank_rows(self.config.name)

    def text_inputs(self) -> list[str]:
        return [schema.text(self.config.text), CAPTION_ROW]

    def video_inputs(self) -> list[str]:
        return [self.bank, self.bank_rows]

    def required_arrays(self) -> list[str]:
        return [schema.text(self.config.text)]  # the bank is written by stage one from it

    def input_specs(self, num_videos: int, caption_video: np.ndarray) -> list[ArraySpec]:
        most = int(np.bincount(caption_video, minlength=num_videos).max(initial=0))
        width = min(self.config.max_captions, max(1, most))
        dim = self.dims[schema.text(self.config.text)][-1]
        unit = schema.inputs_unit(self.config.name)
        return [ArraySpec(self.bank, VIDEOS, (width, dim), "float16", unit), ArraySpec(self.bank_rows, VIDEOS, (width,), "int32", unit)]

    def write_inputs(self, store: Store) -> None:
        video_index = store.captions().column("video_index").to_numpy()
        width = next(a.tail[0] for a in store.arrays if a.name == self.bank_rows)
        rows = np.full((store.num_rows(VIDEOS), width), -1, dtype=np.int32)
        fill = np.zeros(store.num_rows(VIDEOS), dtype=np.int64)
        for caption, vid in enumerate(video_index):  # captions are stored sorted by video
            if fill[vid] < width:
                rows[vid, fill[vid]] = caption
                fill[vid] += 1
        text = store.read(schema.text(self.config.text))
        bank = np.where((rows >= 0)[..., None], text[np.maximum(rows, 0)], 0).astype(np.float16)
        store.write(self.bank, 0, bank)
        store.write(self.bank_rows, 0, rows)

    def prepare_video(self, video) -> dict[str, torch.Tensor]:
        return {"bank": F.normalize(video[self.bank].float(), dim=-1), "rows": video[self.bank_rows].long()}

    def score(self, text, prepared) -> torch.Tensor:
        query = F.normalize(text[schema.text(self.config.text)].float(), dim=-1)
        bank, bank_rows = prepared["bank"], prepared["rows"]
        sims = torch.einsum("td,vcd->tvc", query, bank)
        valid = (bank_rows >= 0)[None] & (bank_rows[None] != text[CAPTION_ROW].long()[:, None, None])
        if self.config.pool == "max":
            pooled = sims.masked_fill(~valid, float("-inf")).amax(-1)
            pooled = torch.where(valid.any(-1), pooled, torch.zeros_like(pooled))
        else:
            pooled = (sims * valid).sum(-1) / valid.sum(-1).clamp(min=1)
        return self.scale * pooled
