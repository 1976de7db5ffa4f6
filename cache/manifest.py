"""Parquet manifests: which videos and captions a data set has.

A data root holds ``videos.parquet`` (video_id, path, split, start, end, fps) and
``captions.parquet`` (caption_id, video_id, text, split). A video's path is a file, or a
folder of JPEG/PNG frames (``fps`` then gives their rate). Paths are relative to the
video root (the data root unless the manifest records another one, e.g. a benchmark's
own video folder) and may not leave it. Every check names the offending row.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from teachcache.cache.errors import InputMissing, TeachcacheError
from teachcache.cache.location import Location
from teachcache.cache.schema import CAPTIONS_FILE, VIDEOS_FILE

VIDEO_ROOT_KEY = b"teachcache.video_root"  # videos.parquet metadata: where the video paths start
OPTIONAL_COLUMNS = ("start", "end", "fps")

VIDEO_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("path", pa.string()),
        ("split", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("fps", pa.float64()),
    ]
)
CAPTION_SCHEMA = pa.schema(
    [
        ("caption_id", pa.string()),
        ("video_id", pa.string()),
        ("text", pa.string()),
        ("split", pa.string()),
    ]
)
FAILURE_SCHEMA = pa.schema([("video_id", pa.string()), ("stage", pa.string()), ("reason", pa.string())])


class ManifestError(TeachcacheError, ValueError):
    """A manifest row breaks a rule; the message names the row."""


@dataclass(frozen=True)
class Manifest:
    """Validated videos and captions of one data set (row order is meaningful)."""

    root: Path
    videos: pa.Table
    captions: pa.Table
    video_root: Path | None = None  # None: the data root

    @property
    def video_ids(self) -> list[str]:
        return self.videos.column("video_id").to_pylist()

    @property
    def videos_dir(self) -> Path:
        """The folder the video paths are relative to."""
        return self.video_root if self.video_root is not None else self.root

    def video_paths(self) -> list[Path]:
        """Absolute paths of the videos (files or frame folders), in row order."""
        return [self.videos_dir / p for p in self.videos.column("path").to_pylist()]

    def frame_rates(self) -> list[float | None]:
        """Per video the frame rate of its frame folder, or None (a video file knows its own)."""
        return self.videos.column("fps").to_pylist()

    def windows(self) -> list[tuple[float, float] | None]:
        """Per video the (start, end) window in seconds, or None for the whole video."""
        out: list[tuple[float, float] | None] = []
        for s, e in zip(self.videos.column("start").to_pylist(), self.videos.column("end").to_pylist()):
            out.append(None if s is None or e is None else (float(s), float(e)))
        return out


def _as_table(rows: list[dict] | pa.Table, schema: pa.Schema) -> pa.Table:
    if isinstance(rows, pa.Table):
        missing = [n for n in schema.names if n not in rows.column_names and n not in OPTIONAL_COLUMNS]
        if missing:
            raise ManifestError(f"manifest lacks columns {missing}; expected {schema.names}")
        cols = {}
        for f in schema:
            cols[f.name] = rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(len(rows), f.type)
        return pa.table(cols, schema=schema)
    full = [{name: row.get(name) for name in schema.names} for row in rows]
    return pa.Table.from_pylist(full, schema=schema)


def _check_relative_path(root: Path, rel: str, row: int, video_id: str) -> None:
    if not rel:
        raise ManifestError(f"videos row {row} (video_id={video_id!r}): empty path")
    p = Path(rel)
    if p.is_absolute():
        raise ManifestError(f"videos row {row} (video_id={video_id!r}): path {rel!r} is absolute; use a path relative to the video root {root}")
    resolved = (root / p).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ManifestError(f"videos row {row} (video_id={video_id!r}): path {rel!r} escapes the video root {root}")


def validate(root: Path, videos: pa.Table, captions: pa.Table) -> None:
    """Raise ManifestError naming the first bad row: duplicate ids, empty captions,
    unknown videos, paths outside the video root ``root``, bad windows or frame rates."""
    seen: dict[str, int] = {}
    for i, (vid, path, s, e, fps) in enumerate(zip(*(videos.column(c).to_pylist() for c in ("video_id", "path", "start", "end", "fps")))):
        if not vid:
            raise ManifestError(f"videos row {i}: empty video_id")
        if vid in seen:
            raise ManifestError(f"videos row {i}: duplicate video_id {vid!r} (first at row {seen[vid]})")
        seen[vid] = i
        _check_relative_path(root, path, i, vid)
        if (s is None) != (e is None):
            raise ManifestError(f"videos row {i} (video_id={vid!r}): give both start and end, or neither")
        if s is not None and not (math.isfinite(s) and math.isfinite(e) and 0 <= s < e):
            raise ManifestError(f"videos row {i} (video_id={vid!r}): window [{s}, {e}] must satisfy 0 <= start < end")
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ManifestError(f"videos row {i} (video_id={vid!r}): fps {fps} must be a positive number (or empty)")
    caption_seen: dict[str, int] = {}
    for i, (cid, vid, text) in enumerate(zip(*(captions.column(c).to_pylist() for c in ("caption_id", "video_id", "text")))):
        if not cid:
            raise ManifestError(f"captions row {i}: empty caption_id")
        if cid in caption_seen:
            raise ManifestError(f"captions row {i}: duplicate caption_id {cid!r} (first at row {caption_seen[cid]})")
        caption_seen[cid] = i
        if vid not in seen:
            raise ManifestError(f"captions row {i} (caption_id={cid!r}): video_id {vid!r} is not in the videos manifest")
        if text is None or not text.strip():
            raise ManifestError(f"captions row {i} (caption_id={cid!r}): empty caption text")


def _stored_video_root(root: Path, video_root: Path) -> str:
    """How the manifest records its video root: relative to the data root when inside it."""
    absolute = video_root.resolve()
    if absolute.is_relative_to(root.resolve()):
        return os.path.relpath(absolute, root.resolve())
    return str(absolute)


def write_manifest(root: str | Path, videos: list[dict] | pa.Table, captions: list[dict] | pa.Table, video_root: str | Path | None = None) -> Manifest:
    """Validate and write ``videos.parquet`` and ``captions.parquet`` under ``root``; video
    paths are relative to ``video_root`` (default: ``root``), which the manifest records.
    Each file is written whole or not at all (``Location.write_parquet``), so a failure leaves the old ones."""
    root = Path(root)
    vroot = Path(video_root) if video_root is not None else None
    vt, ct = _as_table(videos, VIDEO_SCHEMA), _as_table(captions, CAPTION_SCHEMA)
    validate(vroot or root, vt, ct)
    root.mkdir(parents=True, exist_ok=True)
    if vroot is not None:
        vt = vt.replace_schema_metadata({VIDEO_ROOT_KEY: _stored_video_root(root, vroot).encode()})
    for table, name in ((vt, VIDEOS_FILE), (ct, CAPTIONS_FILE)):
        Location(root / name).write_parquet(table)
    return Manifest(root, vt, ct, vroot.resolve() if vroot is not None else None)


def _recorded_video_root(root: Path, table: pa.Table) -> Path | None:
    raw = (table.schema.metadata or {}).get(VIDEO_ROOT_KEY)
    if not raw:
        return None
    path = Path(raw.decode())
    return path if path.is_absolute() else (root / path).resolve()


def read_manifest(root: str | Path) -> Manifest:
    """Read and validate the manifests under ``root``."""
    root = Path(root)
    for name in (VIDEOS_FILE, CAPTIONS_FILE):
        if not (root / name).is_file():
            raise InputMissing(f"no {name} under {root}: run `teachcache synth --out {root}` (the generated data set) or write the manifests first")
    raw = pq.read_table(root / VIDEOS_FILE)
    video_root = _recorded_video_root(root, raw)
    vt = _as_table(raw, VIDEO_SCHEMA)
    ct = _as_table(pq.read_table(root / CAPTIONS_FILE), CAPTION_SCHEMA)
    validate(video_root or root, vt, ct)
    return Manifest(root, vt, ct, video_root)
