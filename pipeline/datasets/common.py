"""What every benchmark reader shares: the annotations it returns and small file readers.

A reader turns a benchmark's official annotation files into ``Annotations``: videos (id,
split, optional window) and their captions, in the benchmark's own order. Finding the
video files, joining paragraphs, holding out a validation split and writing the manifests
is ``pipeline.prepare``'s job, the same for every benchmark.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teachcache.cache.errors import TeachcacheError

SPLITS = ("train", "val", "test")


class AnnotationError(TeachcacheError, ValueError):
    """An annotation file is missing or not in the benchmark's format; the message says which and why."""


@dataclass
class AnnotatedVideo:
    """One video as the annotations name it."""

    video_id: str
    split: str
    start: float | None = None  # window in seconds (None: the whole video)
    end: float | None = None
    names: tuple[str, ...] = ()  # file names, stems or relative paths to look for, besides the video id
    fps: float | None = None  # a frame folder's frame rate, where the annotations give it


@dataclass
class Annotations:
    """A benchmark's videos and captions (caption_id, video_id, text), before any file lookup."""

    videos: list[AnnotatedVideo] = field(default_factory=list)
    captions: list[tuple[str, str, str]] = field(default_factory=list)
    paragraphs: bool = False  # the benchmark's protocol: all captions of a video joined, one query per video
    dropped_captions: int = 0  # captions left out because their text was empty

    def add_video(self, video: AnnotatedVideo) -> None:
        self.videos.append(video)

    def add_caption(self, caption_id: str, video_id: str, text: Any) -> None:
        """Keep a caption with non-empty text; count the others."""
        text = " ".join(str(text).split()) if text is not None else ""
        if text:
            self.captions.append((caption_id, video_id, text))
        else:
            self.dropped_captions += 1


def need_file(root: Path, name: str, why: str) -> Path:
    """``root/name``, or an AnnotationError that says what the file is for."""
    path = root / name
    if not path.is_file():
        raise AnnotationError(f"{name} not found under {root} ({why}); pass --root the folder that holds the official annotation files, or leave that split out with --splits")
    return path


def read_json(path: Path) -> Any:
    """Parse a JSON annotation file, naming it on error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from exc


def read_lines(path: Path) -> list[str]:
    """The non-empty stripped lines of a list file (one id per line)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_table(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV file separated by ``,`` or ``;`` (detected from the header), with the
    ``required`` columns checked."""
    text = path.read_text(encoding="utf-8-sig")
    header = text.split("\n", 1)[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = [c.strip() for c in reader.fieldnames or []]
    rows = list(reader)
    missing = [c for c in required if c not in columns]
    if missing:
        raise AnnotationError(f"{path}: lacks column(s) {missing}; it has {columns} (separator {delimiter!r})")
    for n, row in enumerate(rows, start=2):
        if None in row:  # csv puts the fields beyond the header's under None
            raise AnnotationError(f"{path} line {n}: more fields than the header's {len(columns)}; quote a field that holds a {delimiter!r}")
    return [{k.strip(): (v or "").strip() for k, v in row.items()} for row in rows]


def expect(condition: bool, path: Path, what: str) -> None:
    """Raise an AnnotationError naming the file when its content is not as the format says."""
    if not condition:
        raise AnnotationError(f"{path}: {what}")
