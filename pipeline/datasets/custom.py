"""A custom data set: one CSV or JSONL file of (video, caption, split) rows.

Columns (JSONL: keys): ``video`` (path of a video file or of a folder of JPEG/PNG frames,
relative to the video folder), ``caption``, ``split`` (train, val or test; a file without
the column takes ``prepare.split``, ``--split``, for every row); optional
``video_id`` (default: the path without its extension), ``start`` and ``end`` (window in
seconds) and ``fps`` (a frame folder's frame rate). A video with several captions has
one row per caption; its other columns must agree between rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from teachcache.pipeline.datasets.common import SPLITS, AnnotatedVideo, AnnotationError, Annotations, read_table

if TYPE_CHECKING:
    from teachcache.pipeline.prepare import PrepareConfig

DEFAULT_FILES = ("captions.csv", "captions.jsonl")
REQUIRED = ("video", "caption", "split")


def _rows(path: Path, split: str) -> list[dict[str, Any]]:
    """The file's rows; with ``split``, rows without a split take it (the column may be absent)."""
    rows = _read_rows(path, REQUIRED[:2] if split else REQUIRED)
    return [{**row, "split": row.get("split") or split} for row in rows] if split else rows


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AnnotationError(f"{path} line {n}: not valid JSON ({exc})") from exc
        missing = sorted({k for r in rows for k in required if k not in r})
        if missing:
            raise AnnotationError(f"{path}: some lines lack {missing}; each line needs {list(required)}{_split_hint(missing)}")
        return rows
    if path.suffix.lower() == ".csv":
        try:
            return read_table(path, required)
        except AnnotationError as exc:
            raise AnnotationError(f"{exc}{_split_hint(['split'] if 'split' in str(exc) else [])}") from None
    raise AnnotationError(f"{path}: a custom data set is a .csv or .jsonl file")


def _split_hint(missing: list[str]) -> str:
    return "; give every row one split with --split (train, val or test)" if "split" in missing else ""


def _number(row: dict, key: str, where: str) -> float | None:
    value = row.get(key)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{where}: {key} = {value!r} is not a number") from exc


def _video(row: dict, where: str) -> AnnotatedVideo:
    path = str(row["video"]).strip()
    posix = PurePosixPath(path.replace(os.sep, "/"))
    if not path or posix.is_absolute() or ".." in posix.parts:
        raise AnnotationError(f"{where}: video path {path!r} must be relative to the video folder and stay inside it")
    split = str(row["split"]).strip()
    if split not in SPLITS:
        raise AnnotationError(f"{where}: split {split!r} is not one of {list(SPLITS)}")
    vid = str(row.get("video_id") or "").strip() or str(posix.with_suffix("") if posix.suffix else posix)
    return AnnotatedVideo(vid, split, _number(row, "start", where), _number(row, "end", where), names=(str(posix),), fps=_number(row, "fps", where))


def read(root: Path, cfg: PrepareConfig) -> Annotations:
    """Rows of the custom file: one caption each, videos by path."""
    candidates = [cfg.file] if cfg.file else list(DEFAULT_FILES)
    path = next((root / c for c in candidates if (root / c).is_file()), None)
    if path is None:
        raise AnnotationError(f"no {' or '.join(candidates)} under {root}; set prepare.file (--file) to the CSV or JSONL file")
    out = Annotations()
    videos: dict[str, AnnotatedVideo] = {}
    if cfg.split and cfg.split not in SPLITS:
        raise AnnotationError(f"prepare.split = {cfg.split!r}; choose one of {list(SPLITS)}")
    for i, row in enumerate(_rows(path, cfg.split)):
        where = f"{path.name} row {i + 1}"
        video = _video(row, where)
        known = videos.get(video.video_id)
        if known is None:
            videos[video.video_id] = video
            out.add_video(video)
        elif known != video:
            raise AnnotationError(f"{where}: video {video.video_id!r} was given with other path, split, window or fps in an earlier row")
        out.add_caption(f"{video.video_id}#{i}", video.video_id, row["caption"])
    return out
