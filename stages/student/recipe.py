"""Stage two's training recipe: train the student from the store only (docs/method.md section 4).

Each step reads cached features (from RAM, or streamed by whole shards), rebuilds every
teacher's batch logits from the cached features with the teacher's head, and takes relevance
from the store: no video is decoded and no encoder runs. The recipe runs its steps in order:
``setup`` (data, student, teachers, optimiser), ``resume`` (from ``last.pt``), ``epoch`` (one
pass of ``train_step`` plus validation), ``save`` (the epoch's record, the resume state, the
best weights) and ``finish`` (the best epoch on test, ``metrics.json``, ``metrics.md``).
``train_step`` is the one step that benchmarks reuse.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from teachcache.cache.errors import ConfigError, NumericalError
from teachcache.cache.schema import VIDEOS
from teachcache.cache.store import Store
from teachcache.stages.common.data import Batch, RamLoader, ShardLoader, load_split
from teachcache.stages.common.device import resolve_device
from teachcache.stages.common.distributed import RankInfo, gather_rows, rank_sizes, start_process_group
from teachcache.stages.student.base import RetrievalStudent, Side
from teachcache.stages.student.build import build_student
from teachcache.stages.student.config import TrainConfig
from teachcache.stages.student.denoise import denoised_rows
from teachcache.stages.student.evaluate import evaluate, left_out_warnings, metrics_table, selection_warnings
from teachcache.stages.student.init import initialise
from teachcache.stages.student.objectives import OBJECTIVES
from teachcache.stages.student.objectives.bank import TeacherBank
from teachcache.stages.student.objectives.base import Objective, StepOutputs
from teachcache.stages.student.validate import check_against_store, check_run_dir, check_train_config, clear_run_dir


class NonFiniteLoss(FloatingPointError):
    """A loss part was NaN or inf; ``parts`` names them."""

    def __init__(self, parts: list[str]):
        super().__init__(f"non-finite loss {parts}")
        self.parts = parts


def param_groups(student: RetrievalStudent, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: decayed weights, undecayed biases/norms (and the scalar logit scale), AFA at a higher rate."""
    groups: dict[str, list[torch.nn.Parameter]] = {"decay": [], "no_decay": [], "afa_decay": [], "afa_no_decay": []}
    for name, p in student.named_parameters():
        afa = name.startswith("afa.")
        plain = p.ndim < 2  # biases, norm weights and the logit scale
        groups[("afa_" if afa else "") + ("no_decay" if plain else "decay")].append(p)
    afa_lr = cfg.lr * cfg.afa_lr_multiplier
    spec = {"decay": (cfg.lr, cfg.weight_decay), "no_decay": (cfg.lr, 0.0), "afa_decay": (afa_lr, cfg.weight_decay), "afa_no_decay": (afa_lr, 0.0)}
    return [{"params": ps, "lr": spec[k][0], "weight_decay": spec[k][1], "name": k} for k, ps in groups.items() if ps]


def warmup_cosine(total_steps: int, warmup: float) -> Callable[[int], float]:
    """The learning-rate factor: linear warm-up over ``warmup`` of the steps, then cosine to 0."""
    warm = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class BatchEmbedder(torch.nn.Module):
    """One rank's share of a step: its captions' and videos' sides (what DDP wraps)."""

    def __init__(self, student: RetrievalStudent):
        super().__init__()
        self.student = student

    def forward(self, arrays: dict[str, torch.Tensor]) -> tuple[Side, Side, torch.Tensor | None, torch.Tensor]:
        videos, frame_logits = self.student.encode_videos(arrays)
        return self.student.encode_captions(arrays), videos, frame_logits, self.student.scale()


def global_logits(student: RetrievalStudent, embedder: torch.nn.Module, rank: RankInfo, arrays: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """S [B, B] and AFA frame logits of the whole (global) batch. Under torchrun each rank
    embeds its contiguous share and the sides are all-gathered with gradient, so every loss
    sees the global batch (docs/method.md section 4) and DDP's averaged gradients equal a
    one-process step's (batch statistics aside: a CE student's BatchNorm sees its rank's share)."""
    if rank.world == 1:
        return student.logits(arrays)
    names = student.array_names()
    total = len(arrays[names[0]])
    sizes = rank_sizes(total, rank.world)
    part = slice(sum(sizes[: rank.rank]), sum(sizes[: rank.rank + 1]))
    captions, videos, frame_logits, scale = embedder({n: arrays[n][part] for n in names})
    captions, videos = tuple(gather_rows(t, sizes) for t in captions), tuple(gather_rows(v, sizes) for v in videos)
    return student.scaled_similarity(scale, captions, videos), None if frame_logits is None else gather_rows(frame_logits, sizes)


def build_objective(cfg: TrainConfig) -> Objective:
    """The configured objective (refused with the known ones)."""
    objective: Objective = OBJECTIVES.get(cfg.objective.kind)(cfg.objective)
    return objective


@dataclass
class Trainer:
    """Everything one step needs: the student (and its DDP wrapper), the objective, the
    teachers, the optimiser and the learning-rate schedule."""

    student: RetrievalStudent
    embedder: torch.nn.Module
    objective: Objective
    bank: TeacherBank
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR | None
    grad_clip: float
    rank: RankInfo = field(default_factory=RankInfo)

    @classmethod
    def build(cls, cfg: TrainConfig, store: Store, device: torch.device, total_steps: int | None = None, rank: RankInfo | None = None) -> Trainer:
        """Seeded as ``train.seed``; the teachers are rebuilt from the store before the student
        is initialised. ``total_steps``: the schedule's length (None: no schedule)."""
        rank = rank or RankInfo()
        torch.manual_seed(cfg.seed)
        objective = build_objective(cfg)
        bank = TeacherBank(objective.teachers(), store, device)
        student = build_student(cfg, store)
        if rank.world > 1 and student.kind == "ce":
            raise ConfigError("a ce student trains in one process: its BatchNorm layers need the whole batch (run `teachcache train` without torchrun)")
        if cfg.student.init:
            initialise(student, cfg.student.init)
        student = student.to(device)
        embedder: torch.nn.Module = BatchEmbedder(student)
        if rank.world > 1:
            embedder = torch.nn.parallel.DistributedDataParallel(embedder, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = torch.optim.AdamW(param_groups(student, cfg), betas=(0.9, 0.98), eps=1e-6)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, cfg.warmup)) if total_steps else None
        return cls(student, embedder, objective, bank, optimizer, scheduler, cfg.grad_clip, rank)

    def needs_relevance(self) -> bool:
        return self.objective.needs_relevance(self.student.config)

    @property
    def arrays(self) -> list[str]:
        """The arrays the student reads."""
        return self.student.array_names()

    def batch_arrays(self) -> list[str]:
        """Every array a training batch carries: the student's, the teachers' inputs, relevance where taught."""
        return list(dict.fromkeys([*self.arrays, *self.bank.arrays(), *(self.bank.relevance_arrays() if self.needs_relevance() else [])]))


def train_step(trainer: Trainer, arrays: dict[str, torch.Tensor], phases: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """One optimisation step on a batch already on the device: student logits (global batch
    under torchrun), the objective's loss parts (teacher logits rebuilt by their heads), a
    finite check, backward, gradient clip, AdamW, logit-scale clamp, schedule. Returns the
    parts. With ``phases``, the seconds of forward, backward and update are added there
    (synchronising the device)."""
    marks = [time.perf_counter()]

    def mark() -> None:
        if phases is not None:
            if next(trainer.student.parameters()).is_cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    trainer.student.train()
    logits, frame_logits = global_logits(trainer.student, trainer.embedder, trainer.rank, arrays)
    mask = arrays[trainer.student.video_arrays[-1]] if frame_logits is not None else None
    parts = trainer.objective.parts(StepOutputs(logits, frame_logits, mask, arrays, trainer.student), trainer.bank)
    bad = [k for k, v in parts.items() if not torch.isfinite(v)]
    if bad:
        raise NonFiniteLoss(bad)
    mark()
    trainer.optimizer.zero_grad(set_to_none=True)
    parts["total"].backward()
    mark()
    torch.nn.utils.clip_grad_norm_(trainer.student.parameters(), trainer.grad_clip)
    trainer.optimizer.step()
    trainer.student.clamp_scale()
    if trainer.scheduler is not None:
        trainer.scheduler.step()
    mark()
    if phases is not None:
        for key, a, b in zip(("forward_and_loss", "backward", "clip_and_adamw"), marks, marks[1:]):
            phases[key] = phases.get(key, 0.0) + b - a
    return parts


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state atomically (a kill never leaves a half-written file)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


class TrainingRecipe:
    """One student run over a store, step by step (see the module's docstring)."""

    def __init__(self, cfg: TrainConfig, store: Store, device: torch.device, rank: RankInfo, progress: bool = True, record: str | None = None):
        self.cfg, self.store, self.device, self.rank, self.progress, self.record = cfg, store, device, rank, progress, record
        self.run_dir = Path(cfg.run_dir)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": -1, "val_t2v_R1": -1.0}
        self.first_epoch = 0
        self.started = time.perf_counter()

    # ----- setup --------------------------------------------------------------------------
    def setup(self, resume: bool = False, force: bool = False) -> None:
        """Checks first (every value, the store, the run folder: a refused run writes nothing),
        then the student, teachers and optimiser (seeded), the data (the training split, maybe
        denoised; the selection and test splits) and the schedule over its steps. The run folder
        and its record (``config.toml``) are written last, once training can start."""
        cfg, store = self.cfg, self.store
        check_train_config(cfg)
        check_against_store(cfg, store)
        self.state = check_run_dir(cfg, resume, force)
        self.trainer = trainer = Trainer.build(cfg, store, self.device, rank=self.rank)
        if trainer.needs_relevance():
            trainer.bank.check_relevance(store, cfg.frames)
        rows, self.denoise = denoised_rows(store, cfg.denoise.top_k)
        if self.denoise and self.progress:
            d = self.denoise
            print(f"denoise: top_k {d['top_k']} drops {d['captions_dropped']} of {d['captions_dropped'] + d['captions_kept']} training captions and {d['videos_dropped']} videos")
        train_arrays = trainer.batch_arrays()
        self.train = load_split(store, "train", train_arrays, stream_videos=cfg.loader == "stream", rows=rows)
        self.loader: RamLoader | ShardLoader
        if cfg.loader == "ram":
            self.loader = RamLoader(self.train, cfg.batch_size)
        else:
            kinds = {a.name: a.rows for a in store.arrays}
            video_names = [n for n in train_arrays if kinds.get(n) == VIDEOS]
            self.loader = ShardLoader(store, self.train, rows, video_names, cfg.batch_size, cfg.buffer_shards)
        self.val, self.test = (load_split(store, split, trainer.arrays) for split in (cfg.val_split, "test"))
        if cfg.val_split == "test" and self.progress:
            print("note: the best epoch is selected on the test split (train.val_split = test); its test numbers are optimistic")
        self.warnings = selection_warnings(self.val, cfg.val_split) + left_out_warnings({"train": self.train, cfg.val_split: self.val, "test": self.test})
        for warning in self.warnings if self.progress else []:
            print(f"warning: {warning}", file=sys.stderr)
        trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, warmup_cosine(cfg.epochs * len(self.loader), cfg.warmup))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self._open_run_dir(starting_over=force and self.state != "new")

    def _open_run_dir(self, starting_over: bool) -> None:
        if not self.rank.is_main:
            return
        if starting_over:
            clear_run_dir(self.run_dir)
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if self.record is not None:
            (self.run_dir / "config.toml").write_text(self.record)

    # ----- resume -------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue after the last finished epoch of ``run_dir`` (refused for another config)."""
        state_path = self.run_dir / "last.pt"
        if not state_path.exists():
            return
        state = torch.load(state_path, weights_only=False)  # its settings were compared by check_run_dir
        t = self.trainer
        t.student.load_state_dict(state["student"])
        t.optimizer.load_state_dict(state["optimizer"])
        assert t.scheduler is not None
        t.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.history, self.best, self.first_epoch = state["history"], state["best"], state["epoch"]
        if self.progress:
            print(f"resume: continuing {self.run_dir} after epoch {self.first_epoch}")

    # ----- epochs -------------------------------------------------------------------------
    def epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training split, then validation; returns the epoch's record."""
        t = self.trainer
        t0, steps = time.perf_counter(), 0
        sums: dict[str, float] = {}
        t.bank.seconds = 0.0
        batches = tqdm(self.loader.epoch(self.generator), total=len(self.loader), desc=f"epoch {epoch + 1}/{self.cfg.epochs}", leave=False, disable=not self.progress)
        for step, batch in enumerate(batches):
            parts = self._step(batch, epoch, step)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            steps += 1
        seconds = time.perf_counter() - t0
        val = evaluate(t.student, self.val, self.device, self.cfg.eval_batch)
        return {"epoch": epoch + 1, "seconds": seconds, "teacher_seconds": t.bank.seconds, "steps": steps, "loss": {k: v / max(1, steps) for k, v in sums.items()}, "val": val}

    def _step(self, batch: Batch, epoch: int, step: int) -> dict[str, torch.Tensor]:
        arrays = {k: v.to(self.device) for k, v in batch.arrays.items()}
        try:
            return train_step(self.trainer, arrays)
        except NonFiniteLoss as exc:
            ids = [self.train.caption_ids[int(i)] for i in batch.captions[:8]]
            raise NumericalError(f"non-finite loss {exc.parts} at epoch {epoch}, step {step}; batch caption ids start {ids}") from None

    def save(self, record: dict[str, Any]) -> None:
        """Keep the epoch's record and the resume state; the best weights when validation improved."""
        self.history.append(record)
        student, epoch = self.trainer.student, record["epoch"]
        improved = record["val"]["t2v"]["R1"] > self.best["val_t2v_R1"]
        if improved:
            self.best = {"epoch": epoch, "val_t2v_R1": record["val"]["t2v"]["R1"]}
        if not self.rank.is_main:  # every rank holds the same weights; one writes them
            return
        if improved:
            save_file(student.state_dict(), self.run_dir / "best.safetensors")
        if self.cfg.keep_epoch_weights:
            save_file(student.state_dict(), self.run_dir / "checkpoints" / f"epoch_{epoch:03d}.safetensors")
        (self.run_dir / "checkpoints" / f"epoch_{epoch:03d}.json").write_text(json.dumps(record, indent=2))
        t = self.trainer
        assert t.scheduler is not None
        _save_state(self.run_dir / "last.pt", {
            "epoch": epoch, "student": student.state_dict(), "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
            "generator": self.generator.get_state(), "history": self.history, "best": self.best, "config": asdict(self.cfg),
        })  # fmt: skip

    # ----- finish -------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """The best epoch's weights on the selection and test splits; ``metrics.json`` and ``metrics.md``."""
        if self.rank.world > 1:
            torch.distributed.barrier()  # rank 0 has written best.safetensors
        t, cfg = self.trainer, self.cfg
        t.student.load_state_dict(load_file(self.run_dir / "best.safetensors"))
        history = self.history
        result = {
            "best_epoch": self.best["epoch"],
            "val": evaluate(t.student, self.val, self.device, cfg.eval_batch),
            "test": evaluate(t.student, self.test, self.device, cfg.eval_batch),
            "epoch_seconds": sum(h["seconds"] for h in history) / max(1, len(history)),
            "teacher_ms_per_step": 1000 * sum(h.get("teacher_seconds", 0.0) for h in history) / max(1, sum(h.get("steps", 0) for h in history)),
            "train_seconds": time.perf_counter() - self.started,
            "history": history,
            "denoise": self.denoise,
            "teachers": list(t.bank.heads),
            "selected_on": cfg.val_split,
            "warnings": self.warnings,
            "left_out": {name: split.left_out for name, split in (("train", self.train), (cfg.val_split, self.val), ("test", self.test)) if split.left_out.get("videos")},
            "store_fingerprint": self.store.fingerprint,
            "store_components": self.store.attrs.get("components", {}),
            "student_kind": t.student.kind,
            "student_widths": t.student.widths(),
            "config": asdict(cfg),
        }
        if self.rank.is_main:
            (self.run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
            (self.run_dir / "metrics.md").write_text(metrics_table(result))
        return result

    def run(self, resume: bool = False, force: bool = False) -> dict[str, Any]:
        self.setup(resume, force)
        if resume:
            self.resume()
        for epoch in range(self.first_epoch, self.cfg.epochs):
            record = self.epoch(epoch)
            self.save(record)
            if self.progress:
                print(f"epoch {epoch + 1}/{self.cfg.epochs}: loss {record['loss']['total']:.4f}, val t2v R1 {record['val']['t2v']['R1']:.1f} ({record['seconds']:.1f} s)")
        return self.finish()


def train_student(cfg: TrainConfig, store: Store, progress: bool = True, resume: bool = False, force: bool = False, record: str | None = None) -> dict[str, Any]:
    """Train, select the best epoch on validation t2v R@1, evaluate it on test; return the metrics.
    Teachers are rebuilt from the store. ``resume`` continues from the last finished epoch of
    ``cfg.run_dir`` (same result as an uninterrupted run); a folder holding a run is refused
    otherwise, unless ``force`` (start over). ``record`` (the resolved config as text) is kept
    as ``config.toml`` once training starts. Under torchrun: DDP over the ranks, ``batch_size``
    is the global batch; rank 0 writes the files."""
    torch.manual_seed(cfg.seed)
    rank = RankInfo.from_env()
    device = resolve_device(rank.device_name(cfg.device))
    own_group = start_process_group(rank, device)
    try:
        return TrainingRecipe(cfg, store, device, rank, progress and rank.is_main, record).run(resume, force)
    finally:
        if own_group:
            torch.distributed.destroy_process_group()
