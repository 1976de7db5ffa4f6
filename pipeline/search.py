"""`teachcache search`: text queries against a trained student's video index.

The index is one normalised vector per video of the store (the student's video head over
the cached frames), built once per run and kept in ``RUN_DIR/index.safetensors``, or the
vectors ``teachcache encode`` wrote for other videos (``--index``). A query
is encoded by the store's own text encoder (the one the student reads), projected by the
student's text head, and scored against every video with one matrix product.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from teachcache.cache.errors import ConfigError, InputMissing
from teachcache.cache.schema import KEYFRAMES
from teachcache.cache.store import Store, StoreMismatch
from teachcache.pipeline.html import array_png, escape, image, page
from teachcache.pipeline.runs import load_run, open_run_store
from teachcache.stages.common.device import resolve_device
from teachcache.stages.extract.components import text_spec
from teachcache.stages.extract.encoders import build_text_encoder
from teachcache.stages.student.embed import check_indexable, embed_videos, load_student, student_widths

INDEX_FILE = "index.safetensors"


@dataclass
class Hit:
    rank: int
    score: float
    row: int  # the video's store row
    video_id: str
    split: str
    caption: str  # one of the video's captions, to show what it is


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class SearchIndex:
    """A run's student (its query side) and the video vectors it searches: the run's own store,
    indexed once and kept in ``RUN_DIR/index.safetensors``, or an index that ``teachcache encode``
    wrote for other videos (``index``)."""

    def __init__(self, run_dir: str | Path, device: str = "auto", index: str | Path | None = None):
        run_dir = Path(run_dir)
        self.config, metrics = load_run(run_dir, also=("best.safetensors",))
        self.run_dir, self.device = run_dir, resolve_device(device)
        train = self.config.train
        check_indexable(train)
        if index is None:
            self.store = open_run_store(self.config, metrics)
            self.student = load_student(train, student_widths(train, self.store), run_dir / "best.safetensors", self.device)
            self.video_ids, self.splits, self.first_caption = _store_videos(self.store)
            self.vectors = self._index()
            self.where = ""
        else:
            self._open_encoded(Path(index), run_dir)
        spec = self.config.extract.text_encoders[train.text]
        self.text_encoder = build_text_encoder(spec.kind, text_spec(spec), self.device, self.config.extract.precision, spec.batch_size)  # loaded once, before any query is timed

    def _open_encoded(self, index: Path, run_dir: Path) -> None:
        """Vectors and ids of a ``teachcache encode`` folder, refused when encoded by other weights."""
        import pyarrow.parquet as pq

        from teachcache.pipeline.encode import INDEX_FILE as ENCODED
        from teachcache.pipeline.encode import STORE_DIR

        if not (index / ENCODED).is_file():
            raise InputMissing(f"{index} has no {ENCODED}: give the --out folder of `teachcache encode`")
        record = json.loads((index / ENCODED).read_text())
        if record["student_weights"] != _digest(run_dir / "best.safetensors"):
            raise StoreMismatch(f"{index} was encoded with other student weights than {run_dir}'s; encode the videos again with this run")
        self.store = Store.open(index / STORE_DIR)
        self.student = load_student(self.config.train, tuple(record["student_widths"]), run_dir / "best.safetensors", self.device)
        videos = pq.read_table(index / "videos.parquet")
        self.video_ids = videos.column("video_id").to_pylist()
        self.splits = ["failed" if failed else "encoded" for failed in videos.column("failed").to_pylist()]
        self.first_caption = _store_videos(self.store)[2]
        self.vectors = torch.from_numpy(np.load(index / "videos.npy")).to(self.device)
        self.vectors[torch.tensor([s == "failed" for s in self.splits], device=self.device)] = float("-inf")  # a failed video is never a hit
        self.where = f" in {index}"

    def _index(self) -> torch.Tensor:
        """[V, D] video vectors, read from the run folder when built for these weights and this store."""
        from safetensors.torch import load_file, save_file

        key = f"{_digest(self.run_dir / 'best.safetensors')}:{self.store.fingerprint}"
        path = self.run_dir / INDEX_FILE
        if path.is_file():
            stored = load_file(path)
            if bytes(stored["key"].numpy()).decode() == key and len(stored["vectors"]) == len(self.video_ids):
                return stored["vectors"].to(self.device).float()
        vectors = embed_videos(self.student, self.store, self.config.train.frames, self.device)
        save_file({"vectors": vectors.half(), "key": torch.tensor(list(key.encode()), dtype=torch.uint8)}, path)
        return vectors.to(self.device)

    @torch.inference_mode()
    def encode_query(self, query: str) -> torch.Tensor:
        """The student's normalised vector for a text query."""
        sentence = torch.from_numpy(self.text_encoder.encode([query]).astype(np.float16)).to(self.device)
        return self.student.encode_text(sentence)[0].float()

    def search(self, query: str, k: int = 5, split: str | None = None) -> tuple[list[Hit], float]:
        """The top ``k`` videos (optionally of one split) for a query, and the seconds it took."""
        if not query.strip():
            raise ConfigError('the query is empty; give some words, e.g. "a red square slides left"')
        start = time.perf_counter()
        scores = self.vectors @ self.encode_query(query)
        if split is not None:
            allowed = torch.tensor([s == split for s in self.splits], device=scores.device)
            if not allowed.any():
                raise ConfigError(f"no video of the store is in split {split!r}")
            scores = scores.masked_fill(~allowed, float("-inf"))
        top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum()))).indices.tolist()
        seconds = time.perf_counter() - start
        hits = [Hit(i + 1, float(scores[r]), r, self.video_ids[r], self.splits[r], self.first_caption.get(r, "")) for i, r in enumerate(top)]
        return hits, seconds

    def searched(self, split: str | None) -> str:
        """What a query searches, for the output: ``8 test videos``, ``12 videos (all splits)`` or ``6 videos in OUT``."""
        if self.where:
            return f"{sum(s != 'failed' for s in self.splits)} videos{self.where}"
        if split is None:
            return f"{len(self.video_ids)} videos (all splits)"
        return f"{sum(s == split for s in self.splits)} {split} videos"

    def keyframe(self, row: int) -> np.ndarray | None:
        """A video's keyframe, or None when the store kept none."""
        if not self.store.has(KEYFRAMES):
            return None
        return self.store.read(KEYFRAMES, slice(row, row + 1))[0]

    def close(self) -> None:
        self.store.close()


def _store_videos(store: Store) -> tuple[list[str], list[str], dict[int, str]]:
    """Video ids and splits of a store, and one caption per video row (to show what it is)."""
    videos, captions = store.videos(), store.captions()
    first_caption: dict[int, str] = {}
    for text, video in zip(captions.column("text").to_pylist(), captions.column("video_index").to_pylist()):
        first_caption.setdefault(int(video), text)
    return videos.column("video_id").to_pylist(), videos.column("split").to_pylist(), first_caption


def search_page(index: SearchIndex, results: list[tuple[str, list[Hit]]]) -> str:
    """An HTML page with each query and the keyframes of its hits."""
    sections = []
    for query, hits in results:
        cards = []
        for hit in hits:
            frame = index.keyframe(hit.row)
            picture = image(array_png(frame), f"keyframe of {hit.video_id}", css="") if frame is not None else "<p class='note'>(no keyframe stored)</p>"
            cards.append(
                f"<div class='hit'>{picture}<div><b>{hit.rank}. {escape(hit.video_id)}</b> ({escape(hit.split)}) "
                f"score {hit.score:.3f}</div><div class='note'>{escape(hit.caption)}</div></div>"
            )
        sections.append(f"<h2>“{escape(query)}”</h2><div class='hits'>{''.join(cards)}</div>")
    sections.append(f"<p class='note'>run {escape(index.run_dir)}, store {escape(index.store.path)}, {len(index.video_ids)} videos</p>")
    return page("teachcache search", sections)
