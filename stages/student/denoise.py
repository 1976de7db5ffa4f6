"""TeachText's removal of noisy training captions (docs/method.md section 6), from the ranks
stage one stored: K is chosen here without running a teacher again."""

from __future__ import annotations

from typing import Any

from teachcache.cache.errors import ConfigError
from teachcache.cache.schema import DENOISE_RANK
from teachcache.cache.store import Store
from teachcache.stages.common.data import SplitRows, keep_captions, split_rows


def denoised_rows(store: Store, top_k: int) -> tuple[SplitRows, dict[str, Any] | None]:
    """Training rows without the captions the teacher ensemble ranked beyond ``top_k``, and a
    summary of what was dropped (None when nothing is dropped by design)."""
    rows = split_rows(store, "train")
    if top_k <= 0:
        return rows, None
    if not store.has(DENOISE_RANK):
        raise ConfigError(f"train.denoise.top_k = {top_k}, but store {store.path} has no denoise ranks (it has no teacher); add [extract.teachers]")
    ranks = store.read(DENOISE_RANK, rows.caption_rows)
    kept = keep_captions(store, rows, (ranks >= 0) & (ranks < top_k))
    summary = {
        "top_k": top_k,
        "captions_dropped": int(len(rows.caption_rows) - len(kept.caption_rows)),
        "captions_kept": len(kept.caption_rows),
        "videos_dropped": int(len(rows.video_rows) - len(kept.video_rows)),
    }
    if len(kept.video_rows) < 2:
        raise ConfigError(f"train.denoise.top_k = {top_k} leaves {len(kept.video_rows)} training videos; raise top_k")
    return kept, summary
