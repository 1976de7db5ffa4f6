"""Stage two: train the student from the store only (METHOD section 4).

Each step reads cached features (from RAM, or streamed by whole shards), rebuilds every teacher's batch logits from the
cached features with the teacher's head, and takes relevance from the store. No video is
decoded and no encoder runs. Each epoch writes its record (JSON) and the resume state
(``last.pt``); the epoch with the best validation text-to-video R@1 is kept as
``best.safetensors`` and evaluated on the test split. Every epoch's weights only on request.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from cache.store import Store
from stages.data import RamLoader, ShardLoader, SplitArrays, keep_captions, load_split, split_rows, store_splits
from stages.device import resolve_device
from stages.distributed import RankInfo, gather_rows, rank_sizes, start_process_group
from stages.losses import coarse_teaching, fine_teaching, infonce, max_margin_ranking, mckd, teachtext_distillation
from stages.metrics import retrieval_metrics
from stages.student.config import OBJECTIVES, ObjectiveConfig, TrainConfig, results_config
from stages.student.model import Student
from stages.teachers.base import TeacherHead
from stages.teachers.registry import load_teacher, stored_teachers

def loss_weights(obj: ObjectiveConfig) -> tuple[float, float, float]:
    """(InfoNCE, coarse, fine) weights: METHOD 4d's defaults where -1."""
    defaults = (1.0, 10.0, 1.0) if obj.coarse == "ce" else (0.2, 1.0, 2.0)
    return tuple(d if w < 0 else w for w, d in zip((obj.w_infonce, obj.w_coarse, obj.w_fine), defaults))  # type: ignore[return-value]


class TeacherBank:
    """The teachers' heads, rebuilt from the store (weights and config), scoring each batch
    from its cached features. Frozen: no gradient reaches a teacher."""

    def __init__(self, names: list[str], store: Store, device: torch.device):
        unknown = [n for n in names if n not in stored_teachers(store)]
        if unknown:
            raise ValueError(f"objective.teachers names {unknown}, but store {store.path} keeps teachers {stored_teachers(store)}; add them to [[extract.teachers]] and run `teachcache extract`")
        self.heads: dict[str, TeacherHead] = {n: load_teacher(store, n).to(device) for n in names}
        self.seconds = 0.0  # time spent rebuilding teacher logits (the cost of not caching [T, V])

    def arrays(self) -> list[str]:
        """Every array (and row key) the heads read."""
        return list(dict.fromkeys(a for h in self.heads.values() for a in h.inputs()))

    def check_relevance(self, store: Store, frames: str) -> None:
        """Refuse relevance whose frame count differs from the student's frames (names the teacher)."""
        widths = {a.name: a.tail for a in store.arrays}
        num_frames = widths[f"frames/{frames}"][0]
        for name in self.relevance_arrays():
            if widths[name] != (num_frames,):
                teacher = name.split("/", 1)[1]
                raise ValueError(f"teacher {teacher!r}: {name} has shape {widths[name]} per caption, the student's frames/{frames} have {num_frames} frames; rebuild the store")

    def relevance_arrays(self) -> list[str]:
        return [f"relevance/{n}" for n, h in self.heads.items() if h.has_relevance]

    @torch.no_grad()
    def logits(self, arrays: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each teacher's [B, B] logits for this batch (captions and videos both from ``arrays``)."""
        start = time.perf_counter()
        out = [head.logits(arrays, arrays).float() for head in self.heads.values()]
        if out and out[0].is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return out

    def relevance(self, arrays: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [arrays[name].float() for name in self.relevance_arrays()]

    def scales(self) -> list[float]:
        return [head.scale for head in self.heads.values()]


def objective_loss(cfg: ObjectiveConfig, student: Student, S, frame_logits, mask, bank: TeacherBank, arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The named parts of the loss for one batch (``arrays`` on the device); ``total`` is their weighted sum."""
    parts: dict[str, torch.Tensor] = {}
    if cfg.kind == "infonce":
        parts["infonce"] = infonce(S)
        parts["total"] = parts["infonce"]
    elif cfg.kind == "teachclip":
        w_in, w_coarse, w_fine = loss_weights(cfg)
        parts["infonce"] = infonce(S)
        parts["coarse"] = coarse_teaching(S, bank.logits(arrays), cfg.coarse)
        total = w_in * parts["infonce"] + w_coarse * parts["coarse"]
        relevance = bank.relevance(arrays)
        if frame_logits is not None and relevance:
            parts["fine"] = fine_teaching(frame_logits, relevance, mask if student.config.afa_masked else None, cfg.fine, cfg.fine_temperature)
            total = total + w_fine * parts["fine"]
        parts["total"] = total
    elif cfg.kind == "teachtext":
        raw = S / student.scale()
        parts["rank"] = max_margin_ranking(raw, cfg.margin) if cfg.rank_loss == "max_margin" else infonce(S)
        parts["total"] = parts["rank"]
        if cfg.w_distill:  # 0 isolates the ranking loss: no teacher is scored
            teachers = [t / scale for t, scale in zip(bank.logits(arrays), bank.scales())]
            parts["distill"] = teachtext_distillation(raw, teachers)
            parts["total"] = parts["total"] + cfg.w_distill * parts["distill"]
    elif cfg.kind == "mckd":
        parts["infonce"] = infonce(S)
        teacher = torch.stack(bank.logits(arrays)).mean(0)
        profiles = {"student_text": S, "student_video": S.T, "teacher_text": teacher, "teacher_video": teacher.T} if cfg.mckd_relations else {}
        parts["mckd"] = mckd(S, teacher, cfg.mckd_tau, cfg.mckd_margin, **profiles)
        parts["total"] = parts["infonce"] + parts["mckd"]
    else:
        raise ValueError(f"objective.kind = {cfg.kind!r}; choose one of {OBJECTIVES}")
    return parts


def param_groups(student: Student, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: decayed weights, undecayed biases/norms (and the scalar logit scale), AFA at a higher rate."""
    groups = {"decay": [], "no_decay": [], "afa_decay": [], "afa_no_decay": []}
    for name, p in student.named_parameters():
        afa = name.startswith("afa.")
        plain = p.ndim < 2  # biases, norm weights and the logit scale
        groups[("afa_" if afa else "") + ("no_decay" if plain else "decay")].append(p)
    afa_lr = cfg.lr * cfg.afa_lr_multiplier
    spec = {
        "decay": (cfg.lr, cfg.weight_decay),
        "no_decay": (cfg.lr, 0.0),
        "afa_decay": (afa_lr, cfg.weight_decay),
        "afa_no_decay": (afa_lr, 0.0),
    }
    return [{"params": ps, "lr": spec[k][0], "weight_decay": spec[k][1], "name": k} for k, ps in groups.items() if ps]


def warmup_cosine(total_steps: int, warmup: float):
    warm = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.inference_mode()
def evaluate(student: Student, split: SplitArrays, arrays: tuple[str, str, str], device: torch.device, batch: int = 1024) -> dict:
    """Retrieval metrics of a split: one vector per video, one per caption, dot products.
    ``arrays`` names the (text, frames, mask) arrays the student reads."""
    student.eval()
    text_array, frames_array, mask_array = arrays
    frames, mask, text = split.video_arrays[frames_array], split.video_arrays[mask_array], split.caption_arrays[text_array]
    videos = torch.cat([
        student.encode_video(frames[i : i + batch].to(device), mask[i : i + batch].to(device))[0] for i in range(0, split.num_videos, batch)
    ])
    texts = torch.cat([student.encode_text(text[i : i + batch].to(device)) for i in range(0, split.num_captions, batch)])
    return retrieval_metrics((texts @ videos.T).cpu(), split.caption_video.numpy())


def _check_finite(parts: dict[str, torch.Tensor], epoch: int, step: int, captions: torch.Tensor, split: SplitArrays) -> None:
    bad = [k for k, v in parts.items() if not torch.isfinite(v)]
    if bad:
        ids = [split.caption_ids[int(i)] for i in captions[:8]]
        raise FloatingPointError(f"non-finite loss {bad} at epoch {epoch}, step {step}; batch caption ids start {ids}")


def _save_state(path: Path, state: dict) -> None:
    """Write the resume state atomically (a kill never leaves a half-written file)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def denoised_rows(store: Store, top_k: int):
    """Training rows without the captions the teacher ensemble ranked beyond ``top_k``, and a
    summary of what was dropped (METHOD section 6)."""
    rows = split_rows(store, "train")
    if top_k <= 0:
        return rows, None
    if not store.has("denoise/rank"):
        raise ValueError(f"denoise.top_k = {top_k}, but store {store.path} has no denoise ranks (it has no teacher); add [[extract.teachers]]")
    ranks = store.read("denoise/rank", rows.caption_rows)
    kept = keep_captions(store, rows, (ranks >= 0) & (ranks < top_k))
    summary = {
        "top_k": top_k,
        "captions_dropped": int(len(rows.caption_rows) - len(kept.caption_rows)),
        "captions_kept": int(len(kept.caption_rows)),
        "videos_dropped": int(len(rows.video_rows) - len(kept.video_rows)),
    }
    if len(kept.video_rows) < 2:
        raise ValueError(f"denoise.top_k = {top_k} leaves {len(kept.video_rows)} training videos; raise top_k")
    return kept, summary


class BatchEmbedder(torch.nn.Module):
    """One rank's share of a step: its captions' and videos' embeddings (what DDP wraps)."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor):
        video, frame_logits = self.student.encode_video(frames, mask)
        return self.student.encode_text(text), video, frame_logits, self.student.scale()


def global_logits(student: Student, embedder, rank: RankInfo, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor):
    """S [B, B] and AFA frame logits of the whole (global) batch. Under torchrun each rank
    embeds its contiguous share and the embeddings are all-gathered with gradient, so every
    loss sees the global batch (METHOD section 4) and DDP's averaged gradients equal a
    one-process step's."""
    if rank.world == 1:
        return student(text, frames, mask)
    sizes = rank_sizes(len(text), rank.world)
    part = slice(sum(sizes[: rank.rank]), sum(sizes[: rank.rank + 1]))
    t, v, frame_logits, scale = embedder(text[part], frames[part], mask[part])
    t, v = gather_rows(t, sizes), gather_rows(v, sizes)
    return scale * t @ v.T, None if frame_logits is None else gather_rows(frame_logits, sizes)


def train_student(cfg: TrainConfig, store: Store, progress: bool = True, resume: bool = False) -> dict:
    """Train, select the best epoch on validation t2v R@1, evaluate it on test; return the metrics.
    Teachers are rebuilt from the store. ``resume`` continues from the last finished epoch of
    ``cfg.run_dir`` (same result as an uninterrupted run). Under torchrun: DDP over the ranks,
    ``batch_size`` is the global batch; rank 0 writes the files."""
    torch.manual_seed(cfg.seed)
    rank = RankInfo.from_env()
    device = resolve_device(rank.device_name(cfg.device))
    own_group = start_process_group(rank, device)
    progress = progress and rank.is_main
    try:
        return _train(cfg, store, progress, resume, rank, device)
    finally:
        if own_group:
            torch.distributed.destroy_process_group()


def _train(cfg: TrainConfig, store: Store, progress: bool, resume: bool, rank: RankInfo, device: torch.device) -> dict:
    run_dir = Path(cfg.run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    obj = cfg.objective
    bank = TeacherBank([] if obj.kind == "infonce" else obj.teachers, store, device)
    needs_relevance = obj.kind == "teachclip" and cfg.student.afa
    student_arrays = (f"text/{cfg.text}", f"frames/{cfg.frames}", f"frame_mask/{cfg.frames}")
    train_arrays = [*student_arrays, *bank.arrays(), *(bank.relevance_arrays() if needs_relevance else [])]
    if needs_relevance:
        bank.check_relevance(store, cfg.frames)
    if cfg.loader not in ("ram", "stream"):
        raise ValueError(f"train.loader = {cfg.loader!r}; choose ram or stream")
    rows, denoise = denoised_rows(store, cfg.denoise.top_k)
    if denoise and progress:
        print(f"denoise: top_k {denoise['top_k']} drops {denoise['captions_dropped']} of {denoise['captions_dropped'] + denoise['captions_kept']} training captions and {denoise['videos_dropped']} videos")
    train = load_split(store, "train", train_arrays, stream_videos=cfg.loader == "stream", rows=rows)
    if cfg.loader == "ram":
        loader = RamLoader(train, cfg.batch_size)
    else:
        video_names = [n for n in train_arrays if store.has(n) and next(a.rows for a in store.arrays if a.name == n) == "videos"]
        loader = ShardLoader(store, train, rows, video_names, cfg.batch_size, cfg.buffer_shards)
    val, test = (load_split(store, split, list(student_arrays)) for split in (selection_split(store, cfg, progress), "test"))
    student = Student.for_store(cfg.student, store, cfg.text, cfg.frames).to(device)
    embedder = BatchEmbedder(student)
    if rank.world > 1:
        embedder = torch.nn.parallel.DistributedDataParallel(embedder, device_ids=[device.index] if device.type == "cuda" else None)
    generator = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(loader)
    optimizer = torch.optim.AdamW(param_groups(student, cfg), betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.epochs * steps_per_epoch, cfg.warmup))
    history, best, first_epoch = [], {"epoch": -1, "val_t2v_R1": -1.0}, 0
    state_path = run_dir / "last.pt"
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if results_config(state["config"]) != results_config(asdict(cfg)):
            raise ValueError(f"--resume: {run_dir} was started with another [train] config; use a new run_dir or the same config")
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        history, best, first_epoch = state["history"], state["best"], state["epoch"]
        if progress:
            print(f"resume: continuing {run_dir} after epoch {first_epoch}")
    start = time.perf_counter()
    for epoch in range(first_epoch, cfg.epochs):
        student.train()
        t0, sums, bank.seconds = time.perf_counter(), {}, 0.0
        steps = 0
        for step, batch in enumerate(tqdm(loader.epoch(generator), total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress)):
            arrays = {k: v.to(device) for k, v in batch.arrays.items()}
            mask = arrays[student_arrays[2]]
            S, frame_logits = global_logits(student, embedder, rank, arrays[student_arrays[0]], arrays[student_arrays[1]], mask)
            parts = objective_loss(obj, student, S, frame_logits, mask, bank, arrays)
            _check_finite(parts, epoch, step, batch.captions, train)
            optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
            optimizer.step()
            student.clamp_scale()
            scheduler.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            steps += 1
        train_seconds = time.perf_counter() - t0
        val_metrics = evaluate(student, val, student_arrays, device, cfg.eval_batch)
        record = {
            "epoch": epoch + 1,
            "seconds": train_seconds,
            "teacher_seconds": bank.seconds,
            "steps": steps,
            "loss": {k: v / max(1, steps) for k, v in sums.items()},
            "val": val_metrics,
        }
        history.append(record)
        if val_metrics["t2v"]["R1"] > best["val_t2v_R1"]:
            best = {"epoch": epoch + 1, "val_t2v_R1": val_metrics["t2v"]["R1"]}
            if rank.is_main:
                save_file(student.state_dict(), run_dir / "best.safetensors")
        if rank.is_main:  # every rank holds the same weights; one writes them
            if cfg.keep_epoch_weights:
                save_file(student.state_dict(), run_dir / "checkpoints" / f"epoch_{epoch + 1:03d}.safetensors")
            (run_dir / "checkpoints" / f"epoch_{epoch + 1:03d}.json").write_text(json.dumps(record, indent=2))
            _save_state(state_path, {
                "epoch": epoch + 1, "student": student.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "generator": generator.get_state(), "history": history,
                "best": best, "config": asdict(cfg),
            })
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']['total']:.4f}, val t2v R1 {val_metrics['t2v']['R1']:.1f} ({record['seconds']:.1f} s)")
    if rank.world > 1:
        torch.distributed.barrier()  # rank 0 has written best.safetensors
    student.load_state_dict(load_file(run_dir / "best.safetensors"))
    result = {
        "best_epoch": best["epoch"],
        "val": evaluate(student, val, student_arrays, device, cfg.eval_batch),
        "test": evaluate(student, test, student_arrays, device, cfg.eval_batch),
        "epoch_seconds": sum(h["seconds"] for h in history) / max(1, len(history)),
        "teacher_ms_per_step": 1000 * sum(h.get("teacher_seconds", 0.0) for h in history) / max(1, sum(h.get("steps", 0) for h in history)),
        "train_seconds": time.perf_counter() - start,
        "history": history,
        "denoise": denoise,
        "teachers": list(bank.heads),
        "selected_on": cfg.val_split,
        "store_fingerprint": store.fingerprint,
        "config": asdict(cfg),
    }
    if rank.is_main:
        (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
        (run_dir / "metrics.md").write_text(metrics_table(result))
    return result


def selection_split(store: Store, cfg: TrainConfig, progress: bool) -> str:
    """The split that selects the epoch, refused with what to do when the store lacks it."""
    splits = store_splits(store)
    if cfg.val_split not in ("val", "test"):
        raise ValueError(f"train.val_split = {cfg.val_split!r}; choose val or test")
    if cfg.val_split not in splits:
        raise ValueError(
            f"store {store.path} has no {cfg.val_split!r} split to select the epoch on (it has {sorted(splits)}): "
            "hold training videos out with `teachcache prepare --val-videos N`, or set train.val_split=test "
            "(the published MSR-VTT 1k-A / ActivityNet protocol; test numbers are then optimistic)"
        )
    if cfg.val_split == "test" and progress:
        print("note: the best epoch is selected on the test split (train.val_split = test); its test numbers are optimistic")
    return cfg.val_split


def metrics_table(result: dict) -> str:
    """A readable Markdown table of the best epoch's validation and test metrics."""
    keys = ("R1", "R5", "R10", "R50", "MdR", "MnR", "GeoMean")
    lines = ["| split | direction | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for split in ("val", "test"):
        for direction in ("t2v", "v2t"):
            m = result[split][direction]
            lines.append(f"| {split} | {direction} | " + " | ".join(f"{m[k]:.1f}" for k in keys) + " |")
    note = "v2t with several captions per video takes each video's best caption (optimistic at R@5/R@10)."
    selected = result.get("selected_on", "val")
    caveat = " (the test split: its numbers are optimistic)" if selected == "test" else ""
    return f"best epoch {result['best_epoch']} (by {selected} t2v R@1{caveat}; the 'val' rows are that split)\n\n" + "\n".join(lines) + f"\n\n{note}\n"
