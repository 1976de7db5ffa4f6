"""``blackbox``: scores [T, V] from a user file (any model, run anywhere), no head.

The file is an ``.npz`` holding ``scores`` [T, V] (higher = better), ``caption_ids`` [T] and
``video_ids`` [V], in any order; it must cover every caption and video of the store.
Stage one stores it as dense float16 ``scores/<name>`` [T, V], or with ``top_k`` as the top K
videos per caption plus its own (``topk_video/<name>``, ``topk_score/<name>`` [T, K+1]);
a pair outside the top K then scores the caption's lowest kept score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from teachcache.cache import schema
from teachcache.cache.schema import CAPTION_ROW, CAPTIONS, VIDEO_ROW
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.teachers.base import TeacherError, TeacherHead
from teachcache.stages.teachers.config import TeacherConfig


def load_scores(path: str, name: str, caption_ids: list[str], video_ids: list[str]) -> np.ndarray:
    """The user's scores reordered to the store's caption and video rows (float32)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            scores, cids, vids = data["scores"], data["caption_ids"].astype(str), data["video_ids"].astype(str)
    except (OSError, KeyError, ValueError) as exc:
        raise TeacherError(f"teacher {name!r} (blackbox): cannot read {path}: {exc}; it must be an .npz with scores, caption_ids, video_ids") from exc
    if scores.shape != (len(cids), len(vids)):
        raise TeacherError(f"teacher {name!r} (blackbox): scores has shape {scores.shape}, but there are {len(cids)} caption_ids and {len(vids)} video_ids")
    c_pos = {c: i for i, c in enumerate(cids)}
    v_pos = {v: i for i, v in enumerate(vids)}
    missing_c = [c for c in caption_ids if c not in c_pos]
    missing_v = [v for v in video_ids if v not in v_pos]
    if missing_c or missing_v:
        raise TeacherError(
            f"teacher {name!r} (blackbox): {path} lacks {len(missing_c)} captions (e.g. {missing_c[:3]}) and "
            f"{len(missing_v)} videos (e.g. {missing_v[:3]}) of the store; score every caption against every video"
        )
    out = scores[np.ix_([c_pos[c] for c in caption_ids], [v_pos[v] for v in video_ids])].astype(np.float32)
    if not np.isfinite(out).all():
        raise TeacherError(f"teacher {name!r} (blackbox): {path} holds NaN or inf scores")
    return out


class BlackBoxTeacher(TeacherHead):
    kind = "blackbox"
    has_relevance = False
    reads_frames = False

    @classmethod
    def check_config(cls, config: TeacherConfig, frame_encoders: dict, text_encoders: dict) -> None:
        if not config.scores or not Path(config.scores).is_file():
            raise TeacherError(f"teacher {config.name!r} (blackbox): scores file {config.scores!r} not found; give an .npz path")
        if config.top_k < 0:
            raise TeacherError(f"teacher {config.name!r} (blackbox): top_k must be >= 0")

    @property
    def dense(self) -> bool:
        return self.config.top_k == 0

    def _names(self) -> list[str]:
        n = self.config.name
        return [schema.scores(n)] if self.dense else [schema.topk_video(n), schema.topk_score(n)]

    def text_inputs(self) -> list[str]:
        return [*self._names(), CAPTION_ROW]

    def video_inputs(self) -> list[str]:
        return [VIDEO_ROW]

    def required_arrays(self) -> list[str]:
        return []

    def input_specs(self, num_videos: int, caption_video: np.ndarray) -> list[ArraySpec]:
        n, unit = self.config.name, schema.inputs_unit(self.config.name)
        if self.dense:
            return [ArraySpec(schema.scores(n), CAPTIONS, (num_videos,), "float16", unit)]
        k = min(self.config.top_k, num_videos) + 1
        return [ArraySpec(schema.topk_video(n), CAPTIONS, (k,), "int32", unit), ArraySpec(schema.topk_score(n), CAPTIONS, (k,), "float16", unit)]

    def write_inputs(self, store: Store) -> None:
        captions = store.captions()
        scores = load_scores(self.config.scores, self.config.name, captions.column("caption_id").to_pylist(), store.videos().column("video_id").to_pylist())
        if self.dense:
            store.write(schema.scores(self.config.name), 0, scores.astype(np.float16))
            return
        k = min(self.config.top_k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        own = captions.column("video_index").to_numpy()[:, None]
        videos = np.concatenate([top, own], axis=1).astype(np.int32)
        store.write(schema.topk_video(self.config.name), 0, videos)
        store.write(schema.topk_score(self.config.name), 0, np.take_along_axis(scores, videos, axis=1).astype(np.float16))

    @property
    def scale(self) -> float:
        return 1.0  # the user's scores are taken as logits

    def score(self, text, prepared) -> torch.Tensor:
        rows = prepared[VIDEO_ROW].long()
        if self.dense:
            return text[schema.scores(self.config.name)].float()[:, rows]
        kept = text[schema.topk_video(self.config.name)].long()  # [Bt, K+1]
        scores = text[schema.topk_score(self.config.name)].float()
        hit = kept[:, :, None] == rows[None, None, :]  # [Bt, K+1, Bv]
        found = torch.where(hit, scores[:, :, None], torch.full_like(scores[:, :, None], float("-inf"))).amax(1)
        floor = scores.amin(1, keepdim=True).expand_as(found)
        return torch.where(hit.any(1), found, floor)
