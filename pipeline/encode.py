"""`teachcache encode`: a trained student's vectors for new videos (and their captions), in files a
user loads without teachcache.

Stage one runs over the new videos with the student's own encoders only (its frame encoder,
and its text encoder when there are captions; no teacher) into ``OUT/store``, resumable like any
store; then the run's student embeds them, exactly as it scored videos in training. ``OUT`` holds:

- ``videos.npy``: float32 [V, D] unit vectors (zeros for a video that failed to decode) and
  ``videos.parquet``: video_id, path, failed (same row order);
- with captions, ``captions.npy`` [T, D] and ``captions.parquet``: caption_id, video_id, text;
- ``index.json``: the run, the student's weights digest, the width, the counts.

A caption's score for a video is the dot product of their rows (cosine). ``teachcache search
--index OUT`` searches these vectors.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from teachcache.cache.errors import ConfigError, InputMissing
from teachcache.cache.fingerprint import differences
from teachcache.cache.location import Location
from teachcache.cache.manifest import VIDEOS_FILE, read_manifest, write_manifest
from teachcache.cache.store import Store, StoreMismatch
from teachcache.pipeline.config import Config
from teachcache.pipeline.datasets.common import read_table
from teachcache.pipeline.prepare import VIDEO_EXTENSIONS
from teachcache.pipeline.runs import load_run, open_run_store

STORE_DIR, DATA_DIR, INDEX_FILE = "store", "data", "index.json"


@dataclass
class EncodeSummary:
    out: Path
    videos: int
    failed: int
    captions: int
    dim: int

    def line(self) -> str:
        captions = f", {self.captions} captions -> captions.npy" if self.captions else ""
        return f"encode: {self.videos} videos ({self.failed} failed) -> videos.npy [{self.videos}, {self.dim}]{captions}; in {self.out}"


def _video_files(folder: Path) -> list[Path]:
    found = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
    if not found:
        raise InputMissing(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {folder}")
    return found


def _caption_rows(path: Path, video_ids: dict[str, str]) -> list[dict[str, Any]]:
    """Captions of a CSV or JSONL (video, caption); a video is named by its path, file name or id."""
    rows = read_table(path, ("video", "caption")) if path.suffix.lower() == ".csv" else [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i, row in enumerate(rows):
        name = str(row.get("video", "")).strip()
        vid = video_ids.get(name) or video_ids.get(PurePosixPath(name).name) or video_ids.get(PurePosixPath(name).stem)
        if vid is None:
            raise ConfigError(f"{path.name} row {i + 1}: video {name!r} is none of the videos found")
        out.append({"caption_id": f"{vid}#{i}", "video_id": vid, "text": str(row.get("caption", "")), "split": "test"})
    return out


def write_folder_manifest(folder: Path, captions: Path | None, data: Path) -> None:
    """Manifests for every video file under ``folder`` (ids: paths without their extension), the
    videos staying where they are, and the captions of ``captions`` if given."""
    files = _video_files(folder)
    videos = [{"video_id": str(PurePosixPath(f.relative_to(folder).as_posix()).with_suffix("")), "path": f.relative_to(folder).as_posix(), "split": "test"} for f in files]
    names: dict[str, str] = {}
    for v in videos:
        for key in (v["path"], PurePosixPath(v["path"]).name, PurePosixPath(v["path"]).stem, v["video_id"]):
            names.setdefault(key, v["video_id"])
    write_manifest(data, videos, _caption_rows(captions, names) if captions else [], video_root=folder)


def encoding_config(config: Config, data: Path, out: Path, with_captions: bool) -> Config:
    """The run's [extract], narrowed to the student's encoders, over the new videos into ``out``."""
    cfg = copy.deepcopy(config)
    train, extract = cfg.train, cfg.extract
    extract.frame_encoders = {train.frames: extract.frame_encoders[train.frames]}
    extract.text_encoders = {train.text: extract.text_encoders[train.text]} if with_captions else {}
    extract.teachers, extract.denoise_teachers = {}, []
    extract.data, extract.store = str(data), str(out / STORE_DIR)
    return cfg


def _check_same_encoder(trained: dict[str, Any], store: Store, frames: str) -> None:
    """The new store's frame encoder must be the one the student was trained on (config and weights)."""
    now = store.attrs.get("components", {})
    pairs = [("config", "sampling"), ("config", "precision"), ("config", "frame_encoders"), ("inputs", "frame_encoders")]
    found = []
    for part, key in pairs:
        before, after = trained.get(part, {}).get(key), now.get(part, {}).get(key)
        if key == "frame_encoders" and isinstance(before, dict):
            before, after = before.get(frames), (after or {}).get(frames)
        if before is not None:
            found += differences(before, after, f"{part}.{key}")
    if found:
        raise StoreMismatch("the new videos' frames would not be the student's: (trained vs now)\n  " + "\n  ".join(found))


def encode(run_dir: str | Path, videos: str | Path, out: str | Path, captions: str | Path | None = None, progress: bool = True, device: str = "auto") -> EncodeSummary:
    """Extract the new videos with the run's student encoders, embed them, write the index files."""
    from teachcache.stages.common.device import resolve_device
    from teachcache.stages.extract.run import run_extraction
    from teachcache.stages.student.embed import check_indexable, embed_captions, embed_videos, load_student, student_widths

    run_dir, videos, out = Path(run_dir), Path(videos), Path(out)
    config, metrics = load_run(run_dir, also=("best.safetensors",))
    check_indexable(config.train)
    if not videos.exists():
        raise InputMissing(f"--videos {videos}: no such folder; give a folder of video files or a data root with {VIDEOS_FILE}")
    data = videos if (videos / VIDEOS_FILE).is_file() else out / DATA_DIR
    if data != videos:
        write_folder_manifest(videos, Path(captions) if captions else None, data)
    elif captions:
        raise ConfigError(f"{videos} is a data root: its captions are its captions.parquet; --captions goes with a folder of videos")
    with_captions = read_manifest(data).captions.num_rows > 0
    cfg = encoding_config(config, data, out, with_captions)
    summary = run_extraction(cfg.extract, progress=progress)
    torch_device = resolve_device(device)
    widths = (int(metrics["student_widths"][0]), int(metrics["student_widths"][1])) if "student_widths" in metrics else None
    with Store.open(cfg.extract.store) as store:
        _check_same_encoder(metrics.get("store_components", {}), store, config.train.frames)
        if widths is None:  # a run from before student_widths was recorded: its training store tells
            with open_run_store(config, metrics) as trained:
                widths = student_widths(config.train, trained)
        student = load_student(config.train, widths, run_dir / "best.safetensors", torch_device)
        vectors = embed_videos(student, store, config.train.frames, torch_device).numpy()
        table = store.videos().select(["video_id", "path"])
        failed = set(store.failures().column("video_id").to_pylist())
        is_failed = np.array([v in failed for v in table.column("video_id").to_pylist()], dtype=bool)
        vectors[is_failed] = 0.0
        _write(out / "videos.npy", vectors, out / "videos.parquet", table.append_column("failed", pa.array(is_failed)))
        caption_count = 0
        if with_captions:
            caption_vectors = embed_captions(student, store, config.train.text, torch_device).numpy()
            _write(out / "captions.npy", caption_vectors, out / "captions.parquet", store.captions().select(["caption_id", "video_id", "text"]))
            caption_count = len(caption_vectors)
    digest = hashlib.sha256((run_dir / "best.safetensors").read_bytes()).hexdigest()[:16]
    record = {
        "run": str(run_dir.resolve()),
        "student_weights": digest,
        "student_widths": list(widths),
        "dim": int(vectors.shape[1]),
        "videos": len(vectors),
        "failed": int(is_failed.sum()),
        "captions": caption_count,
        "store": STORE_DIR,
    }
    Location(out / INDEX_FILE).write_bytes(json.dumps(record, indent=2).encode())
    return EncodeSummary(out, len(vectors), summary.failed, caption_count, int(vectors.shape[1]))


def _write(npy: Path, vectors: np.ndarray, parquet: Path, table: pa.Table) -> None:
    """One array and its ids, each written whole (a temporary name, then a rename)."""
    tmp = npy.with_name(f".{npy.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, vectors.astype(np.float32))
    os.replace(tmp, npy)
    Location(parquet).write_parquet(table)
