"""Stage one for released features (``teachcache import-features``): Collaborative Experts'
expert, text and caption pickles and TeachText's teacher files become a store, so stage two
trains from them as from extracted features.

Every input file is read and checked before the store is touched (a refused import leaves
nothing behind). The store's fingerprint holds the import config and every file's hash
(``hash_path``, as for weights); a re-run with the same inputs skips finished shards. Rows follow the split files (in the
config's split order) and, per video, the captions in the captions file's order, which is
also the order of CE's text features and of a teacher file's caption rows.

Stored per video expert ``e``: ``expert/e`` (float32 ``[D]``, or ``[T, D]`` for a variable
length expert cut to ``max_tokens``; zeros where absent) and ``expert_mask/e`` (bool: the
video has the expert; ``[T]``: its real tokens). Text ``t``: ``tokens/t`` and ``token_mask/t``
per caption. Teacher ``k``: ``teacher_text/k`` per caption and ``teacher_video/k`` per video,
``[M, D]`` over its modalities, and ``teacher_mask/k`` (the video is in the file).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from teachcache.cache import schema
from teachcache.cache.errors import ConfigError, InputMissing
from teachcache.cache.lock import WriterLock
from teachcache.cache.manifest import CAPTION_SCHEMA, VIDEO_SCHEMA
from teachcache.cache.pickles import load_pickle
from teachcache.cache.schema import CAPTIONS, VIDEOS
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.extract.config import ExpertFileConfig, FeaturesConfig, TeacherFileConfig, TextFileConfig, features_components
from teachcache.stages.extract.encoders.base import hash_path
from teachcache.stages.extract.feature_files import FeatureFileError, companion_files, read_feature_file
from teachcache.stages.extract.run import removed_if_left_empty
from teachcache.stages.teachers.config import TeacherConfig
from teachcache.stages.teachers.heads import build_teacher, save_head

SHOWN_IDS = 5  # video ids named in a message, per list


Rows = Callable[[int, int], dict[str, np.ndarray]]  # rows [lo, hi) of each of a unit's arrays, by name


@dataclass
class ImportUnit:
    """One unit of work: the arrays it writes (over one row kind) and how to build a range of
    their rows together, from the checked source arrays, when a shard is written (a whole padded
    column never sits in memory)."""

    name: str
    specs: list[ArraySpec]
    rows: Rows

    @property
    def row_kind(self) -> str:
        return self.specs[0].rows


def _padded(items: list[np.ndarray | None], tail: tuple[int, ...], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [lo, hi) of variable-length items (None: absent) zero padded to ``tail`` = (T, D), and their masks [n, T]."""
    values, mask = np.zeros((hi - lo, *tail), np.float32), np.zeros((hi - lo, tail[0]), bool)
    for row, item in enumerate(items[lo:hi]):
        if item is not None:
            kept = item[: tail[0]]
            values[row, : len(kept)] = kept
            mask[row, : len(kept)] = True
    return values, mask


@dataclass
class ImportPlan:
    """Everything an import writes, read and checked."""

    videos: pa.Table
    captions: pa.Table
    units: list[ImportUnit]
    inputs: dict[str, Any]  # the files' hashes and what they hold (widths, modalities)
    missing: dict[str, list[str]] = field(default_factory=dict)  # expert -> video ids without it


@dataclass
class ImportSummary:
    store: str
    videos: int
    captions: int
    missing: dict[str, int]
    seconds: float
    shards_done: int = 0
    shards_skipped: int = 0

    def line(self) -> str:
        missing = ", ".join(f"{name} {n}" for name, n in self.missing.items() if n) or "none"
        return (
            f"import-features: {self.videos} videos, {self.captions} captions, {self.shards_done} shards written "
            f"({self.shards_skipped} already done) in {self.seconds:.1f} s; videos without an expert: {missing} -> {self.store}"
        )


def _ids(ids: list[str]) -> str:
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(ids[:SHOWN_IDS]) + more


def _file(root: Path, name: str, what: str) -> Path:
    if not name:
        raise ConfigError(f"{what}: no file named; set its `file`")
    path = root / name
    if not path.is_file():
        raise InputMissing(f"{path} not found ({what}); check features.root and the file name")
    return path


# ----- videos and captions ------------------------------------------------------------------------
def read_videos(cfg: FeaturesConfig, root: Path) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """(video id, split) in split order, and each video's captions (text)."""
    videos: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for split, name in cfg.splits.items():
        path = root / name
        if not path.is_file():
            continue
        for vid in (line.strip() for line in path.read_text(encoding="utf-8").splitlines()):
            if not vid:
                continue
            if vid in seen:
                raise FeatureFileError(f"{path}: video {vid!r} is already in split {seen[vid]!r}; a video belongs to one split")
            seen[vid] = split
            videos.append((vid, split))
    if not videos:
        raise InputMissing(f"none of the split files {list(cfg.splits.values())} is under {root}; set features.root or features.splits")
    path = _file(root, cfg.captions, "features.captions")
    raw = load_pickle(path, "plain")
    if not isinstance(raw, dict):
        raise FeatureFileError(f"{path}: expected a dict of video id -> captions, got {type(raw).__name__}")
    lacking = [v for v, _ in videos if not raw.get(v)]
    if lacking:
        raise FeatureFileError(f"{path}: {len(lacking)} videos of the split files have no captions: {_ids(lacking)}")
    odd = [v for v, _ in videos if not isinstance(raw[v], (list, tuple))]
    if odd:
        raise FeatureFileError(f"{path}: the captions of {len(odd)} videos are not a list (of strings or of word lists): {_ids(odd)}")
    captions = {v: [c if isinstance(c, str) else " ".join(map(str, c)) for c in raw[v]] for v, _ in videos}
    return videos, captions


def manifests(videos: list[tuple[str, str]], captions: dict[str, list[str]]) -> tuple[pa.Table, pa.Table]:
    """The store's videos and captions tables (no video files: the path is empty; captions
    grouped by video, with ``video_index``, as stage one writes them)."""
    video_rows = [{"video_id": v, "path": "", "split": s, "start": None, "end": None, "fps": None} for v, s in videos]
    caption_rows = [{"caption_id": f"{v}#{c}", "video_id": v, "text": text, "split": s} for v, s in videos for c, text in enumerate(captions[v])]
    video_index = [row for row, (v, _) in enumerate(videos) for _ in captions[v]]
    caption_table = pa.Table.from_pylist(caption_rows, schema=CAPTION_SCHEMA).append_column("video_index", pa.array(video_index, pa.int64()))
    return pa.Table.from_pylist(video_rows, schema=VIDEO_SCHEMA), caption_table


# ----- experts ------------------------------------------------------------------------------------
def is_missing(value: Any) -> bool:
    """CE's mark of a video without the expert: None or a float NaN (an all-NaN array also counts)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, np.ndarray) and value.size > 0 and bool(np.isnan(value).all())


def _features(value: Any, vid: str, path: Path, fixed: bool) -> np.ndarray:
    """A present video's features ``[D]`` (fixed) or ``[T, D]`` (the source array, not copied); refuses partial NaN."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise FeatureFileError(f"{path}: video {vid!r} holds {type(value).__name__}, not a numeric array")
    array = value
    if fixed and array.ndim == 2 and array.shape[0] == 1:
        array = array[0]  # zsvision writes fixed features as [1, D]
    if array.ndim != (1 if fixed else 2):
        want = "[D] (fixed)" if fixed else "[T, D] (max_tokens > 0)"
        raise FeatureFileError(f"{path}: video {vid!r} has shape {value.shape}, expected {want}; check the expert's max_tokens")
    if not np.isfinite(array).all():
        raise FeatureFileError(f"{path}: video {vid!r} has NaN or inf among its features (a missing video is one float NaN)")
    return array


def expert_unit(expert: ExpertFileConfig, path: Path, video_ids: list[str]) -> tuple[ImportUnit, list[str], int]:
    """``expert/<name>`` and ``expert_mask/<name>``, the ids without the expert, and its width."""
    content = read_feature_file(path, expert.format)
    fixed = expert.max_tokens == 0
    present = {v: _features(content[v], v, path, fixed) for v in video_ids if not is_missing(content.get(v))}
    missing = [v for v in video_ids if v not in present]
    if not present:
        raise FeatureFileError(f"{path}: none of the {len(video_ids)} videos has features; check the file and the split lists")
    widths = {a.shape[-1] for a in present.values()}
    if len(widths) > 1:
        raise FeatureFileError(f"{path}: feature widths differ between videos ({sorted(widths)})")
    width = widths.pop()
    tail = (width,) if fixed else (expert.max_tokens, width)
    items = [present.get(v) for v in video_ids]
    values_name, mask_name = schema.expert(expert.name), schema.expert_mask(expert.name)

    def rows(lo: int, hi: int) -> dict[str, np.ndarray]:
        if not fixed:
            values, mask = _padded(items, tail, lo, hi)
        else:
            values = np.stack([np.zeros(width, np.float32) if x is None else x.astype(np.float32) for x in items[lo:hi]])
            mask = np.array([x is not None for x in items[lo:hi]])
        return {values_name: values, mask_name: mask}

    unit = schema.import_unit(expert.name, VIDEOS)
    specs = [ArraySpec(values_name, VIDEOS, tail, "float32", unit), ArraySpec(mask_name, VIDEOS, tail[:-1], "bool", unit)]
    return ImportUnit(unit, specs, rows), missing, width


# ----- text features ------------------------------------------------------------------------------
def text_unit(text: TextFileConfig, path: Path, videos: list[str], captions: dict[str, list[str]]) -> tuple[ImportUnit, int]:
    """``tokens/<name>`` and ``token_mask/<name>`` per caption (the first ``max_tokens`` words)."""
    content = read_feature_file(path)
    rows: list[np.ndarray] = []
    for vid in videos:
        feats = content.get(vid)
        if not isinstance(feats, (list, tuple)) or len(feats) != len(captions[vid]):
            have = len(feats) if isinstance(feats, (list, tuple)) else type(feats).__name__
            raise FeatureFileError(f"{path}: video {vid!r} has {have} caption features, the captions file {len(captions[vid])} captions")
        rows.extend(_features(f, vid, path, fixed=False) for f in feats)
    widths = {r.shape[-1] for r in rows}
    if len(widths) > 1:
        raise FeatureFileError(f"{path}: word-feature widths differ between captions ({sorted(widths)})")
    width = widths.pop()
    length = text.max_tokens or max(len(r) for r in rows)
    items: list[np.ndarray | None] = list(rows)
    unit = schema.import_unit(text.name, CAPTIONS)
    specs = [ArraySpec(schema.tokens(text.name), CAPTIONS, (length, width), "float32", unit), ArraySpec(schema.token_mask(text.name), CAPTIONS, (length,), "bool", unit)]
    return ImportUnit(unit, specs, lambda lo, hi: dict(zip((s.name for s in specs), _padded(items, (length, width), lo, hi)))), width


# ----- teacher files ------------------------------------------------------------------------------
def _teacher_entry(entry: Any, vid: str, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("vid_embds"), dict) or not isinstance(entry.get("text_embds"), dict):
        raise FeatureFileError(f'{path}: video {vid!r} is not {{"vid_embds": {{modality: [D]}}, "text_embds": {{modality: [captions, D]}}}}')
    return entry["vid_embds"], entry["text_embds"]


def teacher_units(teacher: TeacherFileConfig, path: Path, videos: list[str], captions: dict[str, list[str]]) -> tuple[list[ImportUnit], list[str]]:
    """``teacher_video/<name>`` [V, M, D], ``teacher_text/<name>`` [C, M, D] and ``teacher_mask/<name>``;
    the modalities are those of the file's first video (as TeachText's trainer takes them)."""
    content = read_feature_file(path)
    if not content:
        raise FeatureFileError(f"{path}: the teacher file holds no video")
    modalities = list(_teacher_entry(next(iter(content.values())), "first", path)[0])
    width = int(np.asarray(next(iter(content.values()))["vid_embds"][modalities[0]]).shape[-1])
    video_rows: list[np.ndarray | None] = []  # [M, D] per video (None: not in the file)
    text_rows: list[np.ndarray | None] = []  # [M, D] per caption
    for vid in videos:
        count = len(captions[vid])
        if vid not in content:
            video_rows.append(None)
            text_rows.extend([None] * count)
            continue
        vid_embds, text_embds = _teacher_entry(content[vid], vid, path)
        video_rows.append(np.stack([_features(vid_embds.get(m), vid, path, fixed=True) for m in modalities]))
        texts = [_features(text_embds.get(m), vid, path, fixed=False) for m in modalities]
        for modality, text in zip(modalities, texts):
            if text.shape != (count, width):
                raise FeatureFileError(f"{path}: video {vid!r} {modality} text_embds has shape {text.shape}, expected ({count}, {width}) (one row per caption)")
        text_rows.extend(np.stack([t[c] for t in texts]) for c in range(count))
    tail = (len(modalities), width)

    def stacked(items: list[np.ndarray | None], lo: int, hi: int) -> np.ndarray:
        return np.stack([np.zeros(tail, np.float32) if x is None else x.astype(np.float32) for x in items[lo:hi]])

    name, on_videos, on_captions = teacher.name, schema.import_unit(teacher.name, VIDEOS), schema.import_unit(teacher.name, CAPTIONS)
    video_specs = [ArraySpec(schema.teacher_video(name), VIDEOS, tail, "float32", on_videos), ArraySpec(schema.teacher_mask(name), VIDEOS, (), "bool", on_videos)]
    text_spec = ArraySpec(schema.teacher_text(name), CAPTIONS, tail, "float32", on_captions)
    return [
        ImportUnit(
            on_videos, video_specs, lambda lo, hi: {video_specs[0].name: stacked(video_rows, lo, hi), video_specs[1].name: np.array([x is not None for x in video_rows[lo:hi]])}
        ),
        ImportUnit(on_captions, [text_spec], lambda lo, hi: {text_spec.name: stacked(text_rows, lo, hi)}),
    ], modalities


# ----- the plan and the run -----------------------------------------------------------------------
def plan_import(cfg: FeaturesConfig) -> ImportPlan:
    """Read and check every input; nothing is written."""
    root = Path(cfg.root)
    if not cfg.root or not root.is_dir():
        raise InputMissing(f"features.root {cfg.root!r} is not a folder; set it to the folder of the released features")
    if not (cfg.experts or cfg.text or cfg.teachers):
        raise ConfigError("features: no [features.experts], [features.text] or [features.teachers] to import")
    videos, captions = read_videos(cfg, root)
    video_ids = [v for v, _ in videos]
    files = {"captions": root / cfg.captions} | {f"split {s}": root / n for s, n in cfg.splits.items() if (root / n).is_file()}
    units: list[ImportUnit] = []
    inputs: dict[str, Any] = {"experts": {}, "text": {}, "teachers": {}}
    missing: dict[str, list[str]] = {}
    for name, expert in cfg.experts.items():
        path = files[f"expert {name}"] = _file(root, expert.file, f"features.experts.{name}")
        unit, missing[name], width = expert_unit(expert, path, video_ids)
        files |= {f"expert {name} {c.name}": c for c in companion_files(path, expert.format)}
        units.append(unit)
        inputs["experts"][name] = {"width": width}
    for name, text in cfg.text.items():
        path = files[f"text {name}"] = _file(root, text.file, f"features.text.{name}")
        unit, width = text_unit(text, path, video_ids, captions)
        units.append(unit)
        inputs["text"][name] = {"width": width}
    for name, teacher in cfg.teachers.items():
        path = files[f"teacher {name}"] = _file(root, teacher.file, f"features.teachers.{name}")
        teacher_work, modalities = teacher_units(teacher, path, video_ids, captions)
        units += teacher_work
        inputs["teachers"][name] = {"modalities": modalities}
    inputs["files"] = {what: hash_path(path) for what, path in files.items()}
    video_table, caption_table = manifests(videos, captions)
    return ImportPlan(video_table, caption_table, units, inputs, missing)


def save_released_teachers(store: Store, cfg: FeaturesConfig, plan: ImportPlan) -> None:
    """Each teacher file as a ``released`` teacher head (no weights) that stage two rebuilds."""
    dims = {spec.name: spec.tail for unit in plan.units for spec in unit.specs}
    for name, teacher in cfg.teachers.items():
        head = build_teacher(TeacherConfig(name=name, kind="released", frames="", text="", scale=1.0), dims)
        save_head(store, head, {"file": teacher.file, "modalities": plan.inputs["teachers"][name]["modalities"]})


def run_import(cfg: FeaturesConfig, force: bool = False, progress: bool = True) -> ImportSummary:
    """Import released features into ``cfg.store`` (or finish an interrupted import)."""
    start = time.perf_counter()
    plan = plan_import(cfg)
    components = {"config": {"features": features_components(cfg)}, "inputs": plan.inputs}
    done = skipped = 0
    with (
        removed_if_left_empty(cfg.store),
        WriterLock(cfg.store),
        Store.prepare(
            cfg.store,
            backend=cfg.layout.backend,
            components=components,
            videos=plan.videos,
            captions=plan.captions,
            arrays=[spec for unit in plan.units for spec in unit.specs],
            shard_size=cfg.layout.shard_size,
            chunk_rows=cfg.layout.chunk_rows,
            codec=cfg.layout.codec,
            clevel=cfg.layout.clevel,
            float_codec=cfg.layout.float_codec,
            force=force,
            config={"features": features_components(cfg) | {"root": cfg.root}, "teachers": {n: {"kind": "released", "file": t.file} for n, t in cfg.teachers.items()}},
        ) as store,
    ):
        work = [(unit, shard) for unit in plan.units for shard in store.shards(unit.row_kind)]
        for unit, (shard, lo, hi) in tqdm(work, desc="import-features", unit="shard", disable=not progress):
            if store.is_done(unit.name, shard):
                skipped += 1
                continue
            for name, rows in unit.rows(lo, hi).items():
                store.write(name, lo, rows)
            store.mark_done(unit.name, shard)
            done += 1
        store.put_file(schema.IMPORT_MISSING_FILE, json.dumps(plan.missing, indent=1).encode())
        save_released_teachers(store, cfg, plan)
        store.finalize()
    return ImportSummary(cfg.store, len(plan.videos), len(plan.captions), {k: len(v) for k, v in plan.missing.items()}, time.perf_counter() - start, done, skipped)
