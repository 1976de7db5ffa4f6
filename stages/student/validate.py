"""Checks of a stage-two run made before any work: every value of ``[train]``, what the store
must hold for it, and the state of its run folder. A refused run changes nothing on disk."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from teachcache.cache import schema
from teachcache.cache.errors import ConfigError
from teachcache.cache.fingerprint import differences
from teachcache.cache.store import MissingArray, Store
from teachcache.stages.common.data import split_rows, store_splits
from teachcache.stages.common.losses import COARSE_TEACHING, FINE_TEACHING
from teachcache.stages.student.build import check_student
from teachcache.stages.student.ce import expert_sources
from teachcache.stages.student.config import TrainConfig, results_config
from teachcache.stages.teachers.heads import stored_teachers

LOADERS = ("ram", "stream")
SOURCES = ("extract", "features")
RANK_LOSSES = ("max_margin", "infonce")
SELECTION_SPLITS = ("val", "test")
RUN_FILES = ("config.toml", "metrics.json", "metrics.md", "best.safetensors", "last.pt", "teachers.json", "teachers.md", "report.html", "index.safetensors", "checkpoints")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_train_config(cfg: TrainConfig) -> None:
    """Every value of ``[train]`` on its own (kinds were checked when the config loaded)."""
    obj, student = cfg.objective, cfg.student
    _require(cfg.epochs >= 1 and cfg.batch_size >= 2, f"train.epochs = {cfg.epochs} and train.batch_size = {cfg.batch_size}: need epochs >= 1 and batch_size >= 2")
    _require(cfg.lr > 0 and cfg.afa_lr_multiplier > 0 and cfg.weight_decay >= 0, "train.lr and train.afa_lr_multiplier must be > 0, train.weight_decay >= 0")
    _require(0 <= cfg.warmup < 1 and cfg.grad_clip > 0, f"train.warmup = {cfg.warmup} must be in [0, 1) and train.grad_clip = {cfg.grad_clip} > 0")
    _require(cfg.eval_batch >= 1 and cfg.buffer_shards >= 1, "train.eval_batch and train.buffer_shards must be >= 1")
    _require(cfg.source in SOURCES, f"train.source = {cfg.source!r}; choose one of {SOURCES}")
    _require(cfg.loader in LOADERS, f"train.loader = {cfg.loader!r}; choose one of {LOADERS}")
    _require(cfg.val_split in SELECTION_SPLITS, f"train.val_split = {cfg.val_split!r}; choose one of {SELECTION_SPLITS}")
    _require(cfg.denoise.top_k >= 0, f"train.denoise.top_k = {cfg.denoise.top_k} must be >= 0 (0 keeps every caption)")
    _require(
        not student.init or Path(student.init).is_file(),
        f"train.student.init = {student.init}: no such file (a CLIP4Clip or TeachCLIP checkpoint, a CLIP state dict, or for a ce student a CE checkpoint)",
    )
    _require(student.layers >= 0 and student.heads >= 0 and student.max_frames >= 1, "train.student.layers >= 0, heads >= 0 and max_frames >= 1 are needed")
    _require(student.logit_scale > 0, f"train.student.logit_scale = {student.logit_scale} must be > 0")
    _require(
        min(student.text_clusters, student.shared_dim, student.default_clusters, *student.vlad_clusters.values()) >= 1 and student.text_ghosts >= 0,
        "train.student: text_clusters, shared_dim, default_clusters and vlad_clusters must be >= 1, text_ghosts >= 0",
    )
    _require(student.kind == "clip4clip" or not student.afa, "train.student.afa: AFA aggregates frames of a clip4clip student; set it false for a ce student")
    COARSE_TEACHING.check(obj.coarse, "train.objective.coarse")
    FINE_TEACHING.check(obj.fine, "train.objective.fine")
    _require(obj.rank_loss in RANK_LOSSES, f"train.objective.rank_loss = {obj.rank_loss!r}; choose one of {RANK_LOSSES}")
    _require(obj.fine_temperature > 0 and obj.mckd_tau > 0, "train.objective.fine_temperature and mckd_tau must be > 0")
    alone = obj.kind == "infonce" or (obj.kind == "teachtext" and obj.w_distill == 0)
    _require(alone or bool(obj.teachers), f"train.objective.kind = {obj.kind!r} distils: name its teachers in train.objective.teachers")


def check_against_store(cfg: TrainConfig, store: Store) -> None:
    """What the run needs from the store: its arrays, its teachers, its splits, a student that fits its widths."""
    _require(
        cfg.student.kind != "clip4clip" or cfg.source == "extract",
        "train.source = 'features': an imported store holds experts and word features, not frames: set train.student.kind = 'ce'",
    )
    if cfg.student.kind == "clip4clip":
        missing = [name for name in (schema.text(cfg.text), schema.frames(cfg.frames), schema.frame_mask(cfg.frames)) if not store.has(name)]
        if missing:
            raise MissingArray(
                f"train.text = {cfg.text!r} and train.frames = {cfg.frames!r} need {missing}, which store {store.path} lacks; it has {[a.name for a in store.arrays]}"
            )
    if cfg.objective.kind != "infonce":
        unknown = [n for n in cfg.objective.teachers if n not in stored_teachers(store)]
        _require(
            not unknown,
            f"train.objective.teachers names {unknown}, but store {store.path} keeps teachers {stored_teachers(store)}; add them to [extract.teachers] and run `teachcache extract`",
        )
    splits = store_splits(store)
    _require("train" in splits, f"store {store.path} has no train split (it has {sorted(splits)})")
    _require(
        cfg.val_split in splits,
        f"store {store.path} has no {cfg.val_split!r} split to select the epoch on (it has {sorted(splits)}): hold training videos out with `teachcache prepare --val-videos N`, or set train.val_split=test",
    )
    _require(
        cfg.denoise.top_k == 0 or store.has(schema.DENOISE_RANK), f"train.denoise.top_k = {cfg.denoise.top_k}, but store {store.path} has no denoise ranks (it has no teacher)"
    )
    if cfg.student.kind == "clip4clip":
        num_frames = dict((a.name, a.tail) for a in store.arrays)[schema.frames(cfg.frames)][0]
        _require(cfg.student.max_frames >= num_frames, f"train.student.max_frames = {cfg.student.max_frames} is below the store's {num_frames} frames per video")
    check_student(cfg, store)  # refuses arrays it lacks and widths it cannot take (e.g. heads)
    check_released_teachers(cfg, store)
    if cfg.student.kind == "ce":
        check_expert_coverage(cfg, store, ["train", cfg.val_split, "test"])


def check_released_teachers(cfg: TrainConfig, store: Store) -> None:
    """A released teacher file must cover every training video: TeachText's trainer has no target
    for another, and a zero row would teach the student that the pair does not match."""
    if cfg.objective.kind == "infonce" or (cfg.objective.kind == "teachtext" and cfg.objective.w_distill == 0):
        return
    rows = split_rows(store, "train").video_rows
    ids = store.videos().column("video_id").to_pylist()
    for name in cfg.objective.teachers:
        if store.has(schema.teacher_mask(name)):
            absent = rows[~store.read(schema.teacher_mask(name), rows)]
            _require(
                len(absent) == 0,
                f"teacher {name!r}'s file lacks {len(absent)} of the {len(rows)} training videos (e.g. {[ids[r] for r in absent[:3]]}): "
                "import a teacher file made for this training split, or leave the teacher out",
            )


def check_expert_coverage(cfg: TrainConfig, store: Store, splits: list[str]) -> None:
    """Every video a ce student scores must have one of its experts (CE's similarity is 0/0 otherwise)."""
    sources = expert_sources(cfg.student, store)
    ids = store.videos().column("video_id").to_pylist()
    for split in dict.fromkeys(splits):
        rows = split_rows(store, split).video_rows
        covered = np.zeros(len(rows), bool)
        for source in sources:
            mask = store.read(source.mask, rows)
            covered |= mask if mask.ndim == 1 else mask.any(-1)
        bare = rows[~covered]
        _require(
            len(bare) == 0,
            f"{len(bare)} videos of split {split!r} have none of the ce student's experts {[s.name for s in sources]} "
            f"(e.g. {[ids[r] for r in bare[:3]]}); add an expert every video has (e.g. an appearance one) to train.student.experts",
        )


def run_state(run_dir: Path) -> str:
    """``new`` (nothing of a run), ``finished`` (metrics.json) or ``unfinished`` (a killed run's state)."""
    if (run_dir / "metrics.json").is_file():
        return "finished"
    if (run_dir / "last.pt").is_file():
        return "unfinished"
    return "new"


def check_run_dir(cfg: TrainConfig, resume: bool = False, force: bool = False) -> str:
    """Refuse to touch a run folder that holds a run unless told: ``--resume`` continues a run with
    the same settings (the differing fields are listed otherwise), ``--force`` starts over.
    Returns the folder's state."""
    run_dir = Path(cfg.run_dir)
    state = run_state(run_dir)
    if state == "new" or force:
        return state
    if not resume:
        what = "a finished run (metrics.json)" if state == "finished" else "an unfinished run (last.pt)"
        hint = "--force trains it again from scratch" if state == "finished" else "--resume continues it, --force starts it over"
        raise ConfigError(f"{run_dir} holds {what}: {hint}, or choose another train.run_dir")
    saved = saved_config(run_dir)
    changed = differences(results_config(saved), results_config(asdict(cfg)))
    if changed:
        raise ConfigError(
            f"--resume: {run_dir} was started with other [train] settings (saved vs this config):\n  " + "\n  ".join(changed) + "\nUse the same settings, or another train.run_dir"
        )
    return state


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The [train] settings a run folder recorded (its resume state, else its metrics)."""
    if (run_dir / "last.pt").is_file():
        config: dict[str, Any] = torch.load(run_dir / "last.pt", weights_only=False)["config"]
        return config
    recorded: dict[str, Any] = json.loads((run_dir / "metrics.json").read_text())["config"]
    return recorded


def clear_run_dir(run_dir: Path) -> None:
    """Remove what a run writes in its folder (nothing else), before a forced fresh start."""
    for name in RUN_FILES:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
