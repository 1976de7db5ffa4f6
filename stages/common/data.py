"""Stage-two data: the arrays a student run needs, read from the store, never from video.

Two loaders give the same ``Batch`` objects:
- ``RamLoader``: every array of the split in RAM; batches are gathers (fast).
- ``ShardLoader``: for stores larger than RAM. Caption-level arrays (text, relevance) stay
  in RAM; video-level arrays (frames, masks) are read a few whole shards at a time (shard
  order shuffled each epoch) and shuffled inside that buffer, since random-row reads from
  Zarr are slow.
Both draw, per epoch, each video once with one of its captions at random, so no video
appears twice in a batch (no false in-batch negatives).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from teachcache.cache.errors import ConfigError
from teachcache.cache.schema import CAPTION_ROW, CAPTIONS, ROW_KEYS, VIDEO_ROW, VIDEOS
from teachcache.cache.store import MissingArray, Store

__all__ = ["CAPTION_ROW", "ROW_KEYS", "VIDEO_ROW", "Batch", "RamLoader", "ShardLoader", "SplitArrays", "SplitRows", "load_split", "split_rows"]


@dataclass
class SplitArrays:
    """One split's captions and videos, as tensors (features stay float16 until a batch).
    Video-level dicts are empty when a ``ShardLoader`` streams them."""

    caption_ids: list[str]
    video_ids: list[str]
    caption_video: torch.Tensor  # [T] row of each caption's video in this split
    caption_arrays: dict[str, torch.Tensor] = field(default_factory=dict)  # "text/x", "relevance/y" -> [T, ...]
    video_arrays: dict[str, torch.Tensor] = field(default_factory=dict)  # "frames/x", "frame_mask/x" -> [V, ...]
    left_out: dict[str, int] = field(default_factory=dict)  # {"videos": n, "captions": m}: failed in stage one, not here

    @property
    def num_captions(self) -> int:
        return len(self.caption_ids)

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)


@dataclass
class Batch:
    """One training batch: caption rows (in the split) and every array the step needs,
    matched pairs on the diagonal."""

    captions: torch.Tensor
    arrays: dict[str, torch.Tensor]


@dataclass
class SplitRows:
    """Which store rows form a split."""

    video_rows: np.ndarray  # store rows of the split's videos
    caption_rows: np.ndarray  # store rows of their captions
    caption_video: np.ndarray  # per caption, its video's position in video_rows
    failed_videos: int = 0  # videos of the split left out because stage one recorded a failure for them
    failed_captions: int = 0  # and their captions


def _require(store: Store, names: list[str]) -> None:
    missing = [n for n in names if n not in ROW_KEYS and not store.has(n)]
    if missing:
        raise MissingArray(
            f"this training config needs {missing}, which store {store.path} lacks (it has "
            f"{[a.name for a in store.arrays]}); add the encoder or teacher to [extract] and run `teachcache extract`"
        )


def store_splits(store: Store) -> set[str]:
    """The splits a store's videos belong to."""
    return set(store.videos().column("split").to_pylist())


def split_rows(store: Store, split: str) -> SplitRows:
    """Rows of one split (train / val / test), without the videos stage one recorded as failed
    (they have no frames) and their captions, counted; refuses a split with no video."""
    videos, captions = store.videos(), store.captions()
    in_split = np.array(videos.column("split").to_pylist()) == split
    if not in_split.any():
        raise ConfigError(f"store {store.path} has no videos in split {split!r}")
    failed = np.isin(np.array(videos.column("video_id").to_pylist()), np.array(store.failures().column("video_id").to_pylist(), dtype=object))
    video_rows = np.flatnonzero(in_split & ~failed)
    if len(video_rows) == 0:
        raise ConfigError(f"every video of split {split!r} in store {store.path} failed in stage one; see `teachcache info {store.path}`")
    video_index = captions.column("video_index").to_numpy()
    rows = _rows_for(video_rows, np.flatnonzero(np.isin(video_index, video_rows)), video_index, videos.num_rows)
    rows.failed_videos = int((in_split & failed).sum())
    rows.failed_captions = int(np.isin(video_index, np.flatnonzero(in_split & failed)).sum())
    return rows


def _rows_for(video_rows: np.ndarray, caption_rows: np.ndarray, video_index: np.ndarray, num_videos: int) -> SplitRows:
    local = np.full(num_videos, -1, dtype=np.int64)
    local[video_rows] = np.arange(len(video_rows))
    return SplitRows(video_rows, caption_rows, local[video_index[caption_rows]])


def keep_captions(store: Store, rows: SplitRows, keep: np.ndarray) -> SplitRows:
    """The split restricted to the captions where ``keep`` (per caption of ``rows``) is true;
    a video left with no caption leaves the split."""
    caption_rows = rows.caption_rows[keep]
    video_index = store.captions().column("video_index").to_numpy()
    video_rows = rows.video_rows[np.isin(rows.video_rows, video_index[caption_rows])]
    kept = _rows_for(video_rows, caption_rows, video_index, store.num_rows(VIDEOS))
    kept.failed_videos, kept.failed_captions = rows.failed_videos, rows.failed_captions
    return kept


def load_split(store: Store, split: str, arrays: list[str], stream_videos: bool = False, rows: SplitRows | None = None) -> SplitArrays:
    """Read one split's arrays into RAM (video-level ones only unless ``stream_videos``), plus
    each caption's and video's store row (``row/caption``, ``row/video``). ``rows`` restricts
    the split (e.g. denoised captions)."""
    _require(store, arrays)
    rows = rows or split_rows(store, split)
    videos, captions = store.videos(), store.captions()
    kinds = {a.name: a.rows for a in store.arrays}
    out = SplitArrays(
        caption_ids=[captions.column("caption_id")[int(i)].as_py() for i in rows.caption_rows],
        video_ids=[videos.column("video_id")[int(i)].as_py() for i in rows.video_rows],
        caption_video=torch.from_numpy(rows.caption_video),
        left_out={"videos": rows.failed_videos, "captions": rows.failed_captions},
    )
    out.caption_arrays[CAPTION_ROW] = torch.from_numpy(rows.caption_rows.astype(np.int64))
    out.video_arrays[VIDEO_ROW] = torch.from_numpy(rows.video_rows.astype(np.int64))
    for name in dict.fromkeys(arrays):
        if name in ROW_KEYS:
            continue
        if kinds[name] == CAPTIONS:
            out.caption_arrays[name] = torch.from_numpy(np.ascontiguousarray(store.read(name, rows.caption_rows)))
        elif not stream_videos:
            out.video_arrays[name] = torch.from_numpy(np.ascontiguousarray(store.read(name, rows.video_rows)))
    return out


def one_caption_per_video(caption_video: torch.Tensor, videos: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each given video (in the given order), one of its captions drawn at random: the
    first of its captions in a random order of all captions (vectorised; no Python loop)."""
    order = torch.randperm(len(caption_video), generator=generator)
    size = int(caption_video.max()) + 1 if len(caption_video) else 0
    first = torch.full((size,), len(order), dtype=torch.long)
    first.scatter_reduce_(0, caption_video[order].long(), torch.arange(len(order)), reduce="amin")
    return order[first[videos.long()]]


def num_batches(num_videos: int, batch_size: int) -> int:
    """Batches per epoch: full ones plus a last one of at least two videos."""
    return num_videos // batch_size + (num_videos % batch_size > 1)


def _chunks(captions: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Batches of ``batch_size``; a last batch of one (no negative to contrast with) is dropped."""
    return [captions[i : i + batch_size] for i in range(0, len(captions), batch_size) if len(captions[i : i + batch_size]) > 1]


class RamLoader:
    """Batches gathered from a split held entirely in RAM."""

    def __init__(self, split: SplitArrays, batch_size: int):
        self.split, self.batch_size = split, batch_size

    def __len__(self) -> int:
        return num_batches(self.split.num_videos, self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        videos = torch.randperm(self.split.num_videos, generator=generator)
        captions = one_caption_per_video(self.split.caption_video, videos, generator)
        for chunk in _chunks(captions, self.batch_size):
            vids = self.split.caption_video[chunk]
            arrays = {k: v.index_select(0, chunk) for k, v in self.split.caption_arrays.items()}
            arrays |= {k: v.index_select(0, vids) for k, v in self.split.video_arrays.items()}
            yield Batch(chunk, arrays)


class ShardLoader:
    """Batches from whole store shards, read ``buffer_shards`` consecutive shards at a time
    (one read per array; the order of these blocks is shuffled each epoch) and shuffled
    inside the buffer. Small per-video arrays (masks) are read into RAM once."""

    SMALL_ROW_BYTES = 1024  # per-video arrays below this stay in RAM instead of streaming

    def __init__(self, store: Store, split: SplitArrays, rows: SplitRows, video_array_names: list[str], batch_size: int, buffer_shards: int = 4):
        self.store, self.split, self.batch_size, self.buffer_shards = store, split, batch_size, max(1, buffer_shards)
        specs = {a.name: a for a in store.arrays}
        names = [n for n in dict.fromkeys(video_array_names) if n not in ROW_KEYS]
        small = [n for n in names if np.dtype(specs[n].dtype).itemsize * int(np.prod(specs[n].tail)) < self.SMALL_ROW_BYTES]
        self.names = [n for n in names if n not in small]
        self.in_ram = {n: torch.from_numpy(np.ascontiguousarray(store.read(n, rows.video_rows))) for n in small}  # by split position
        self.shards = []  # (first store row, end store row, positions in the split of the videos inside)
        for _, lo, hi in store.shards(VIDEOS):
            inside = np.flatnonzero((rows.video_rows >= lo) & (rows.video_rows < hi))
            if len(inside):
                self.shards.append((lo, hi, inside))
        self.blocks = [self.shards[i : i + self.buffer_shards] for i in range(0, len(self.shards), self.buffer_shards)]
        self.rows = rows

    def __len__(self) -> int:
        return num_batches(self.split.num_videos, self.batch_size)

    def _load(self, group: list[tuple[int, int, np.ndarray]]) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """The split positions and the streamed video arrays of a block of shards (read in a
        background thread while the previous block is being served): one read per run of
        adjacent shards, then the split's rows of it."""
        positions = np.concatenate([inside for _, _, inside in group])
        store_rows = self.rows.video_rows[positions]
        runs: list[list[tuple[int, int, np.ndarray]]] = []
        for shard in group:
            if runs and runs[-1][-1][1] == shard[0]:
                runs[-1].append(shard)
            else:
                runs.append([shard])
        buffers: dict[str, torch.Tensor] = {}
        for name in self.names:
            parts = []
            for run in runs:
                lo, hi = run[0][0], run[-1][1]
                data = self.store.read(name, slice(lo, hi))
                wanted = self.rows.video_rows[np.concatenate([inside for _, _, inside in run])] - lo
                parts.append(data if len(wanted) == hi - lo else data[wanted])  # whole shards: no gather
            buffers[name] = torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))
        buffers[VIDEO_ROW] = torch.from_numpy(store_rows.astype(np.int64))
        return positions, buffers

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(self.blocks), generator=generator).tolist()
        with ThreadPoolExecutor(max_workers=1) as reader:  # decompression releases the GIL: reading overlaps serving
            if not order:
                return
            pending = reader.submit(self._load, self.blocks[order[0]])
            for index in range(len(order)):
                positions, buffers = pending.result()
                if index + 1 < len(order):
                    pending = reader.submit(self._load, self.blocks[order[index + 1]])
                where = torch.full((self.split.num_videos,), -1, dtype=torch.long)  # split position -> buffer row
                where[torch.from_numpy(positions)] = torch.arange(len(positions))
                shuffled = torch.from_numpy(positions)[torch.randperm(len(positions), generator=generator)]
                captions = one_caption_per_video(self.split.caption_video, shuffled, generator)
                for chunk in _chunks(captions, self.batch_size):
                    videos = self.split.caption_video[chunk]
                    local = where[videos]
                    arrays = {k: v.index_select(0, chunk) for k, v in self.split.caption_arrays.items()}
                    arrays |= {k: v.index_select(0, local) for k, v in buffers.items()}
                    arrays |= {k: v.index_select(0, videos) for k, v in self.in_ram.items()}
                    yield Batch(chunk, arrays)
