"""Stage-two data: the arrays a student run needs, read once from the store into RAM.

Nothing here decodes video or runs an encoder: every tensor comes from the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cache.store import Store


@dataclass
class SplitArrays:
    """One split's captions and videos, as tensors (features stay float16 until a batch)."""

    caption_ids: list[str]
    video_ids: list[str]
    caption_video: torch.Tensor  # [T] row of each caption's video in this split
    text: torch.Tensor  # [T, D_text] the student's text features
    frames: torch.Tensor  # [V, F, D] the student's frame features
    mask: torch.Tensor  # [V, F] bool
    teacher_text: dict[str, torch.Tensor] = field(default_factory=dict)  # array name -> [T, D]
    teacher_frames: dict[str, torch.Tensor] = field(default_factory=dict)  # array name -> [V, F, D]
    teacher_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    relevance: dict[str, torch.Tensor] = field(default_factory=dict)  # teacher name -> [T, F]

    @property
    def num_captions(self) -> int:
        return len(self.caption_ids)

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)


def _require(store: Store, names: list[str], who: str) -> None:
    missing = [n for n in names if not store.has(n)]
    if missing:
        raise KeyError(
            f"{who} needs {missing}, which store {store.path} lacks (it has {[a.name for a in store.arrays]}); "
            "add the encoder or teacher to [extract] and run `teachcache extract`"
        )


def load_split(
    store: Store,
    split: str,
    text_array: str,
    frames_array: str,
    teacher_arrays: dict[str, list[str]] | None = None,
    relevance: list[str] | None = None,
) -> SplitArrays:
    """Read one split (train / val / test) of the store into RAM.

    ``teacher_arrays`` maps each teacher to the store arrays it reads (text, frames,
    mask); ``relevance`` names the teachers whose ``relevance/<name>`` is needed.
    """
    teacher_arrays = teacher_arrays or {}
    relevance = relevance or []
    needed = [text_array, frames_array, frames_array.replace("frames/", "frame_mask/", 1)]
    needed += [n for names in teacher_arrays.values() for n in names] + [f"relevance/{r}" for r in relevance]
    _require(store, needed, "this training config")
    videos, captions = store.videos(), store.captions()
    video_rows = np.flatnonzero(np.array(videos.column("split").to_pylist()) == split)
    if len(video_rows) == 0:
        raise ValueError(f"store {store.path} has no videos in split {split!r}")
    local = np.full(videos.num_rows, -1, dtype=np.int64)
    local[video_rows] = np.arange(len(video_rows))
    video_index = captions.column("video_index").to_numpy()
    caption_rows = np.flatnonzero(local[video_index] >= 0)

    def rows_of(name: str) -> np.ndarray:
        spec = next(a for a in store.arrays if a.name == name)
        return store.read(name, video_rows if spec.rows == "videos" else caption_rows)

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(rows_of(name)))

    out = SplitArrays(
        caption_ids=[captions.column("caption_id")[int(i)].as_py() for i in caption_rows],
        video_ids=[videos.column("video_id")[int(i)].as_py() for i in video_rows],
        caption_video=torch.from_numpy(local[video_index[caption_rows]]),
        text=tensor(text_array),
        frames=tensor(frames_array),
        mask=tensor(frames_array.replace("frames/", "frame_mask/", 1)),
    )
    for names in teacher_arrays.values():
        for name in names:
            target = out.teacher_text if name.startswith("text/") else out.teacher_masks if name.startswith("frame_mask/") else out.teacher_frames
            if name not in target:
                target[name] = tensor(name)
    for name in relevance:
        out.relevance[name] = tensor(f"relevance/{name}")
    return out


def epoch_batches(split: SplitArrays, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of caption-index batches: each video once, with one of its captions drawn
    at random, so no video appears twice in a batch (no false in-batch negatives). A last
    batch of a single video (no negative to contrast with) is dropped."""
    order = torch.randperm(split.num_captions, generator=generator)
    first_caption = {}
    for c in order.tolist():
        first_caption.setdefault(int(split.caption_video[c]), c)
    picked = torch.tensor(list(first_caption.values()), dtype=torch.long)
    picked = picked[torch.randperm(len(picked), generator=generator)]
    return [picked[i : i + batch_size] for i in range(0, len(picked), batch_size) if len(picked[i : i + batch_size]) > 1]
