"""`teachcache prepare`: a benchmark's official annotations -> the Parquet manifests stage one reads.

One pipeline for every data set: its reader (``pipeline.datasets``) lists videos and
captions; the video files (or folders of frames) are looked up once under the video
folder; videos that are not there are reported (a count here, the list in
``missing.txt``) and left out; paragraphs are joined where the protocol says so; a
validation split can be held out of train; the manifests are written with the video
folder recorded, so the videos stay where they are.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from teachcache.cache.errors import ConfigError, InputMissing
from teachcache.cache.manifest import Manifest, write_manifest
from teachcache.pipeline.datasets import DATASETS
from teachcache.pipeline.datasets.common import SPLITS, AnnotatedVideo, AnnotationError, Annotations
from teachcache.stages.common.options import opt
from teachcache.stages.extract.decode import frame_files

VIDEO_EXTENSIONS = [".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp"]
MISSING_FILE = "missing.txt"
REPORT_FILE = "prepare.json"
PARAGRAPHS = ("auto", "joined", "sentences")


@dataclass
class PrepareConfig:
    dataset: str = opt("msrvtt", "benchmark whose annotations are read", DATASETS)
    root: str = opt("", "folder holding the official annotation files")
    videos: str = opt("", 'folder holding the video files or frame folders, searched recursively ("" = root)')
    variant: str = opt("", 'msrvtt: 9k | 7k | full ("" = 9k); vatex: the split lists\' folder ("" = root)')
    file: str = opt("", 'custom: the CSV or JSONL file, relative to root ("" = captions.csv or captions.jsonl)')
    split: str = opt("", 'custom: the split of rows that give none (a file without a split column); "" = every row needs one')
    splits: list[str] = opt(list(SPLITS), "splits to prepare (one the benchmark lacks is skipped)")
    paragraphs: str = opt("auto", "auto (the benchmark's protocol: DiDeMo and ActivityNet join a video's captions) | joined | sentences")
    val_videos: int = opt(0, "hold out this many training videos as the val split (for benchmarks without one: MSR-VTT, ActivityNet)")
    seed: int = opt(0, "seed of the held-out val videos")
    frames_fps: float = opt(1.0, "frame rate of frame folders whose annotations give none")
    extensions: list[str] = opt(VIDEO_EXTENSIONS, "video file extensions looked for, in order of preference")


@dataclass
class PrepareReport:
    """What one `prepare` found and wrote."""

    dataset: str
    out: str
    videos: dict[str, int] = field(default_factory=dict)  # per split, videos found
    captions: dict[str, int] = field(default_factory=dict)  # per split, captions written
    annotated_videos: int = 0
    missing: list[str] = field(default_factory=list)
    dropped_captions: int = 0
    paragraphs: bool = False

    def line(self) -> str:
        found = sum(self.videos.values())
        splits = ", ".join(f"{s} {self.videos[s]} videos / {self.captions[s]} {'paragraphs' if self.paragraphs else 'captions'}" for s in self.videos)
        missing = f"; {len(self.missing)} missing (listed in {Path(self.out) / MISSING_FILE})" if self.missing else ""
        dropped = f"; {self.dropped_captions} empty captions left out" if self.dropped_captions else ""
        return f"prepare {self.dataset}: {found} of {self.annotated_videos} videos found ({splits}){missing}{dropped} -> {self.out}"


class VideoIndex:
    """The video files and frame folders under one folder, found by name, stem or id."""

    def __init__(self, folder: Path, extensions: list[str]):
        if not folder.is_dir():
            raise InputMissing(f"video folder {folder} does not exist; pass --videos the folder that holds the videos")
        self.folder = folder
        rank = {e.lower(): i for i, e in enumerate(extensions)}
        self.extensions = set(rank)
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, tuple[int, str]] = {}
        self.folders: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = os.path.relpath(dirpath, folder)
            for d in dirnames:
                self.folders.setdefault(d, os.path.normpath(os.path.join(rel_dir, d)))
            for name in sorted(filenames):
                stem, ext = os.path.splitext(name)
                if ext.lower() not in rank:
                    continue
                rel = os.path.normpath(os.path.join(rel_dir, name))
                self.by_name.setdefault(name, rel)
                if stem not in self.by_stem or rank[ext.lower()] < self.by_stem[stem][0]:
                    self.by_stem[stem] = (rank[ext.lower()], rel)

    def _is_frame_folder(self, rel: str) -> bool:
        return bool(frame_files(str(self.folder / rel)))

    def find(self, names: tuple[str, ...]) -> str | None:
        """Relative path of the first name found: as a path under the folder, as a file name
        anywhere below it, as a stem (the preferred extension first), then as a frame folder.
        A name with a video extension is also tried without it."""
        for name in names:
            exact = self.folder / name
            if exact.is_file() or (exact.is_dir() and self._is_frame_folder(name)):
                return os.path.normpath(name)
            if name in self.by_name:
                return self.by_name[name]
            stem, ext = os.path.splitext(name)
            for key in (name, stem) if ext.lower() in self.extensions else (name,):
                if key in self.by_stem:
                    return self.by_stem[key][1]
                if key in self.folders and self._is_frame_folder(self.folders[key]):
                    return self.folders[key]
        return None


def _unique_videos(videos: list[AnnotatedVideo]) -> list[AnnotatedVideo]:
    """First mention of each video; a video named in two splits is an error."""
    seen: dict[str, AnnotatedVideo] = {}
    for v in videos:
        if v.video_id in seen:
            if seen[v.video_id].split != v.split:
                raise AnnotationError(f"video {v.video_id!r} is in both the {seen[v.video_id].split} and the {v.split} split")
            continue
        seen[v.video_id] = v
    return list(seen.values())


def join_paragraphs(captions: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """One caption per video: its captions joined with spaces, in annotation order (id = video id)."""
    texts: dict[str, list[str]] = {}
    for _, vid, text in captions:
        texts.setdefault(vid, []).append(text)
    return [(vid, vid, " ".join(parts)) for vid, parts in texts.items()]


def hold_out_val(videos: list[dict], count: int, seed: int) -> None:
    """Move ``count`` training videos (a seeded random choice) to the val split, in place."""
    if count <= 0:
        return
    if any(v["split"] == "val" for v in videos):
        raise ConfigError("prepare.val_videos: this data set already has a val split; set val_videos = 0")
    train = [i for i, v in enumerate(videos) if v["split"] == "train"]
    if count >= len(train):
        raise ConfigError(f"prepare.val_videos = {count} would leave no training video (there are {len(train)})")
    for i in np.random.default_rng(seed).permutation(len(train))[:count]:
        videos[train[int(i)]]["split"] = "val"


def _use_paragraphs(cfg: PrepareConfig, annotations: Annotations) -> bool:
    if cfg.paragraphs not in PARAGRAPHS:
        raise ConfigError(f"prepare.paragraphs = {cfg.paragraphs!r}; choose one of {PARAGRAPHS}")
    return annotations.paragraphs if cfg.paragraphs == "auto" else cfg.paragraphs == "joined"


def check_config(cfg: PrepareConfig) -> None:
    """Refuse a bad prepare config before reading anything."""
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown data set {cfg.dataset!r}; choose one of {list(DATASETS)}")
    if not cfg.root:
        raise ConfigError("prepare needs the annotation folder: --root DIR (or prepare.root in the config)")
    bad = [s for s in cfg.splits if s not in SPLITS]
    if bad or not cfg.splits:
        raise ConfigError(f"prepare.splits = {cfg.splits}; use one or more of {list(SPLITS)}")
    if cfg.val_videos < 0 or cfg.frames_fps <= 0:
        raise ConfigError("prepare.val_videos must be >= 0 and prepare.frames_fps > 0")


def prepare(cfg: PrepareConfig, out: str | Path) -> tuple[Manifest, PrepareReport]:
    """Read the annotations, find the videos, write the manifests (and the report) under ``out``."""
    check_config(cfg)
    root, out = Path(cfg.root), Path(out)
    if not root.is_dir():
        raise InputMissing(f"annotation folder {root} does not exist; pass --root the folder that holds the official annotation files")
    annotations = DATASETS.get(cfg.dataset)(root, cfg)
    videos = [v for v in _unique_videos(annotations.videos) if v.split in cfg.splits]
    index = VideoIndex(Path(cfg.videos) if cfg.videos else root, cfg.extensions)
    rows, missing = [], []
    for v in videos:
        path = index.find((v.video_id, *v.names))
        if path is None:
            missing.append(v.video_id)
            continue
        is_folder = (index.folder / path).is_dir()
        rows.append({"video_id": v.video_id, "path": path, "split": v.split, "start": v.start, "end": v.end, "fps": (v.fps or cfg.frames_fps) if is_folder else None})
    if not rows:
        raise InputMissing(
            f"none of the {len(videos)} annotated videos was found under {index.folder} (looked for e.g. "
            f"{[v.video_id for v in videos[:3]]} with extensions {cfg.extensions} or as frame folders); pass --videos the right folder"
        )
    hold_out_val(rows, cfg.val_videos, cfg.seed)
    paragraphs = _use_paragraphs(cfg, annotations)
    present = {r["video_id"]: r["split"] for r in rows}
    captions = [c for c in annotations.captions if c[1] in present]
    captions = join_paragraphs(captions) if paragraphs else captions
    caption_rows = [{"caption_id": cid, "video_id": vid, "text": text, "split": present[vid]} for cid, vid, text in captions]
    manifest = write_manifest(out, rows, caption_rows, video_root=index.folder)
    report = PrepareReport(cfg.dataset, str(out), annotated_videos=len(videos), missing=missing, dropped_captions=annotations.dropped_captions, paragraphs=paragraphs)
    for split in SPLITS:
        n = sum(1 for r in rows if r["split"] == split)
        if n:
            report.videos[split] = n
            report.captions[split] = sum(1 for c in caption_rows if c["split"] == split)
    _write_report(out, cfg, report)
    return manifest, report


def _write_report(out: Path, cfg: PrepareConfig, report: PrepareReport) -> None:
    missing_path = out / MISSING_FILE
    if report.missing:
        missing_path.write_text("\n".join(report.missing) + "\n")
    elif missing_path.exists():
        missing_path.unlink()
    data = {"config": asdict(cfg), **asdict(report), "missing": len(report.missing)}
    (out / REPORT_FILE).write_text(json.dumps(data, indent=2) + "\n")
