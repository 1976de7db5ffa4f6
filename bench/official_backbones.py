"""One decode, three official backbones (issue 13, item 6), in TeachCLIP's own setting: its
student's CLIP (a TeachCLIP checkpoint) and two teachers, X-CLIP and TS2-Net, each with its own
CLIP, every file written here with random weights in the official format (no hub is
reachable; the cost is that of real weights of the same shapes).

1. Stage one: decode-only (decode workers, CLIP's 224-px geometry), each backbone encode-only
   over the same decoded frames (padded slots run as blank frames, as the official loaders pad;
   TS2-Net with its token selection), and stage one's frames phase running all three on one
   decode. Ratios: frames phase / (decode + the sum of the encodes), and / the larger of the two.
2. The cache payoff: TeachCLIP's training step as its ``train.py`` takes it (the student's CLIP
   forward and backward over the batch's frames and captions, the two teachers' CLIPs forward,
   their heads, the loss; 1 + 2 backbone passes per batch) against teachcache's cached step
   (``recipe.train_step`` over the store: the student's heads only, the teachers' logits rebuilt
   by their heads from cached features). Decoding is left out of both (TeachCLIP's DataLoader
   workers decode ahead; at best that hides it): the online figure is a lower bound.

Sizes: ``tiny`` (width 128 towers, 12 visual layers: runs on a CPU in a minute) and
``vit-b-32`` (ViT-B/32's shapes: the released checkpoints'). On CUDA the towers run under
bf16 autocast, as stage one does. Prints the figures and writes JSON
(``--out``/official_backbones.json).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arguments, environment, median, sync, write_json

from teachcache.cache.manifest import read_manifest
from teachcache.cache.store import Store
from teachcache.pipeline.official import load_official
from teachcache.pipeline.synth import SynthConfig, generate
from teachcache.stages.common.checkpoints import read_checkpoint
from teachcache.stages.common.data import RamLoader, load_split
from teachcache.stages.common.device import autocast, resolve_device
from teachcache.stages.common.layers import cross_heads, temporal_module
from teachcache.stages.common.losses import coarse_teaching, fine_teaching, infonce
from teachcache.stages.extract.config import DecodeConfig, ExtractConfig, FrameEncoderConfig, SamplingConfig, StoreLayoutConfig, TextEncoderConfig
from teachcache.stages.extract.decode import DecodePool, DecodeRequest
from teachcache.stages.extract.encoders import build_frame_encoder
from teachcache.stages.extract.encoders.openai_clip import TextTower, VisualTower, clip_geometry
from teachcache.stages.extract.encoders.ts2net import ScorePredictor
from teachcache.stages.extract.phases.frames import VIDEO_BATCH, batch_frames
from teachcache.stages.extract.run import run_extraction
from teachcache.stages.student.config import ObjectiveConfig, StudentConfig, TrainConfig
from teachcache.stages.student.recipe import Trainer, train_step
from teachcache.stages.teachers.config import TeacherConfig

SIZES = {
    "tiny": {"vision_width": 128, "vision_layers": 12, "text_width": 128, "text_layers": 4, "embed": 128},
    "vit-b-32": {"vision_width": 768, "vision_layers": 12, "text_width": 512, "text_layers": 12, "embed": 512},
}
PATCH, IMAGE, CONTEXT, VOCAB, CROSS_LAYERS, WORDS = 32, 224, 77, 49408, 4, 32
MODELS = ("teachclip", "xclip", "ts2net")  # the student's file, then the two teachers'
TEACHERS = ("xclip", "ts2net")


def write_checkpoint(path: Path, model: str, size: dict, frames: int, seed: int) -> Path:
    """A random checkpoint in the official CLIP4Clip-family format (``clip.*`` plus the model's head)."""
    torch.manual_seed(seed)
    visual = VisualTower(size["vision_width"], size["vision_layers"], size["vision_width"] // 64, PATCH, IMAGE // PATCH, size["embed"])
    text = TextTower(size["text_width"], size["text_layers"], size["text_width"] // 64, VOCAB, CONTEXT, size["embed"])
    for tower in (visual, text):
        for name, p in tower.named_parameters():
            if not p.any():  # the towers start their embeddings and projections at zero
                torch.nn.init.normal_(p, std=0.02 if "embedding" in name else p.shape[0] ** -0.5)
    state = {f"clip.visual.{k}": v for k, v in visual.state_dict().items()} | {f"clip.{k}": v for k, v in text.state_dict().items()}
    state["clip.logit_scale"] = torch.tensor(math.log(1 / 0.07))
    state |= temporal_module(size["embed"], CROSS_LAYERS, cross_heads(size["text_width"])).state_dict()
    d = size["embed"]
    if model == "teachclip":
        state |= {
            "frameLinear.weight": torch.randn(d, d) * d**-0.5,
            "frameLinear.bias": torch.zeros(d),
            "frameLinear2.weight": torch.randn(1, d) * d**-0.5,
            "frameLinear2.bias": torch.zeros(1),
        }
    if model == "xclip":
        eye = {"dim": torch.eye(d), "words": torch.eye(WORDS), "frames": torch.eye(frames)}
        for name, axis in (("global_mat_weight", "dim"), ("local_mat_weight", "dim"), ("word_logit_weight", "words"), ("word_mat_weight", "words"), ("word_mat_weight2", "words")):
            state[name] = eye[axis]
        for name in ("frame_logit_weight", "frame_mat_weight", "frame_mat_weight2"):
            state[name] = eye["frames"]
    if model == "ts2net":
        state |= {f"visual_token_selector.score_predictor.{k}": v for k, v in ScorePredictor(d).state_dict().items()}
        state = {
            k.replace(".attn.", ".attn.net.") if k.startswith(("clip.visual.transformer.resblocks.10.", "clip.visual.transformer.resblocks.11.")) else k: v
            for k, v in state.items()
        }
    torch.save(state, path)
    assert read_checkpoint(str(path)).model == model
    return path


def extract_config(files: dict[str, Path], data: Path, store: Path, args) -> ExtractConfig:
    cfg = ExtractConfig(data=str(data), store=str(store), device="auto")
    cfg.frame_encoders = {
        "student": FrameEncoderConfig(name="student", kind="clip4clip", pretrained=str(files["teachclip"]), batch_size=args.encode_batch),
        "xclip": FrameEncoderConfig(name="xclip", kind="clip4clip", pretrained=str(files["xclip"]), batch_size=args.encode_batch),
        "ts2net": FrameEncoderConfig(name="ts2net", kind="ts2net", pretrained=str(files["ts2net"]), batch_size=args.encode_batch),
    }
    cfg.text_encoders = {
        name: TextEncoderConfig(name=name, kind="clip4clip", pretrained=str(files[m]), max_words=WORDS, tokens=WORDS if name == "xclip" else 0)
        for name, m in zip(("student", "xclip", "ts2net"), MODELS)
    }
    cfg.teachers = {name: TeacherConfig(name=name, kind=name, frames=name, text=name, checkpoint=str(files[name]), temporal_layers=CROSS_LAYERS) for name in TEACHERS}
    cfg.sampling = SamplingConfig(num_frames=args.frames)
    cfg.decode = DecodeConfig(workers=args.workers)
    cfg.layout = StoreLayoutConfig(shard_size=256)
    return cfg


def run_encoder(enc, frames, valid):
    """One batch through a frame encoder as stage one runs it (TS2-Net: its frame tokens)."""
    return enc.encode_tokens(frames, torch.Generator().manual_seed(0), valid) if enc.tokens_per_frame else enc.encode(frames, valid)


def stage_one(cfg: ExtractConfig, device: torch.device) -> dict:
    """Decode-only, each backbone encode-only over the decoded frames, and the frames phase."""
    manifest = read_manifest(cfg.data)
    geometry = clip_geometry(IMAGE)
    requests = [
        DecodeRequest(str(p), cfg.sampling.sampler, cfg.sampling.num_frames, w, (geometry,), r)
        for p, w, r in zip(manifest.video_paths(), manifest.windows(), manifest.frame_rates())
    ]
    t0 = time.perf_counter()
    with DecodePool(cfg.decode.workers, cfg.decode.timeout_s) as pool:
        list(pool.imap(requests[: max(1, cfg.decode.workers)]))  # workers started
        startup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoded = [d for d in pool.imap(requests) if d.error is None]
        decode_s = time.perf_counter() - t0
    encode_s = {}
    for name, f in cfg.frame_encoders.items():
        enc = build_frame_encoder(f, device, cfg.precision, cfg.sampling.num_frames)
        chunks = [batch_frames([(0, d) for d in decoded[i : i + VIDEO_BATCH]], 0, cfg.sampling.num_frames, enc.blank_padding) for i in range(0, len(decoded), VIDEO_BATCH)]
        run_encoder(enc, chunks[0][0][: cfg.sampling.num_frames], chunks[0][1][: cfg.sampling.num_frames])  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for frames, valid, _ in chunks:
            run_encoder(enc, frames, valid)
        sync(device)
        encode_s[name] = time.perf_counter() - t0
    summary = run_extraction(cfg, force=True, progress=False)
    frames_s = summary.phase_seconds["frames"]
    total_encode = sum(encode_s.values())
    return {
        "videos": len(decoded),
        "frames_decoded": sum(d.num_valid for d in decoded),
        "frames_encoded_per_backbone": len(decoded) * cfg.sampling.num_frames,
        "decode_only_s": decode_s,
        "decode_worker_startup_s": startup_s,
        "encode_only_s": encode_s,
        "stage_one_frames_phase_s": frames_s,
        "stage_one_phases_s": summary.phase_seconds,
        "stage_one_total_s": summary.seconds,
        "frames_phase_over_decode_plus_encodes": frames_s / (decode_s + total_encode),
        "frames_phase_over_larger": frames_s / max(decode_s, total_encode),
        "frames_phase_less_startup_over_decode_plus_encodes": (frames_s - startup_s) / (decode_s + total_encode),
        "videos_per_s": len(decoded) / frames_s,
    }


def cached_step_seconds(store: Store, tcfg: TrainConfig, device: torch.device, steps: int) -> tuple[float, list]:
    trainer = Trainer.build(tcfg, store, device)
    loader = RamLoader(load_split(store, "train", trainer.batch_arrays()), tcfg.batch_size)
    batches = [b for b in loader.epoch(torch.Generator().manual_seed(0)) if len(b.arrays["row/video"]) == tcfg.batch_size]
    for b in batches[:2]:
        train_step(trainer, {k: v.to(device) for k, v in b.arrays.items()})
    times = []
    for i in range(steps):
        arrays = {k: v.to(device) for k, v in batches[i % len(batches)].arrays.items()}
        sync(device)
        t0 = time.perf_counter()
        train_step(trainer, arrays)
        sync(device)
        times.append(time.perf_counter() - t0)
    return median(times), batches


class OnlineStep:
    """TeachCLIP's training step: the student's CLIP (train mode, gradients) and heads, the two
    teachers' CLIPs and heads (no gradients), InfoNCE + coarse (pear) + fine (ce) teaching, AdamW."""

    def __init__(self, files: dict[str, Path], device: torch.device, frames: int):
        self.student = load_official(files["teachclip"], device, frames=frames)
        self.teachers = [load_official(files[t], device, frames=frames) for t in TEACHERS]
        self.visual, self.text, self.head = self.student.frames.tower, self.student.text.tower, self.student.head
        params = [*self.visual.parameters(), *self.text.parameters(), *self.head.parameters()]
        for p in params:
            p.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(params, lr=1e-7)
        self.device = device

    def __call__(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> float:
        b, f = mask.shape
        with torch.no_grad(), autocast(self.device, "auto"):
            teacher_logits, relevance = [], []
            for t in self.teachers:
                video = t.video_arrays(pixels, mask, torch.Generator().manual_seed(0))
                text = t.text_arrays(ids)
                teacher_logits.append(t.similarity(text, video).float())
                relevance.append(t.relevance(text, video).float())
        self.visual.train(), self.text.train(), self.head.train()
        with autocast(self.device, "auto"):
            frames = self.visual(pixels.reshape(b * f, *pixels.shape[2:])).view(b, f, -1)
            sentence, _ = self.text(ids)
            logits, frame_logits = self.head(sentence, frames, mask)
            loss = infonce(logits.float()) + coarse_teaching(logits.float(), teacher_logits, "pear") + fine_teaching(frame_logits.float(), relevance, None, "ce")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def payoff(files: dict[str, Path], store: Store, args, device: torch.device) -> dict:
    objective = ObjectiveConfig(kind="teachclip", teachers=list(TEACHERS), coarse="pear", fine="ce")
    student = StudentConfig(layers=CROSS_LAYERS, video_projection=False, afa_masked=False, init=str(files["teachclip"]))
    tcfg = TrainConfig(text="student", frames="student", student=student, objective=objective, batch_size=args.batch, lr=1e-4, device="auto")
    cached_s, _ = cached_step_seconds(store, tcfg, device, args.cached_steps)

    online = OnlineStep(files, device, args.frames)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.batch, args.frames, 3, IMAGE, IMAGE, generator=generator).to(device)
    ids = torch.zeros(args.batch, WORDS, dtype=torch.long)
    ids[:, 0], ids[:, 1:11], ids[:, 11] = VOCAB - 2, torch.randint(1, 40000, (args.batch, 10), generator=generator), VOCAB - 1
    ids = ids.to(device)
    mask = torch.ones(args.batch, args.frames, dtype=torch.bool, device=device)
    online(pixels, ids, mask)  # warm-up
    times = []
    for _ in range(args.online_steps):
        sync(device)
        t0 = time.perf_counter()
        online(pixels, ids, mask)
        sync(device)
        times.append(time.perf_counter() - t0)
    online_s = median(times)
    return {"batch": args.batch, "online_s_per_step": online_s, "online_step_times_s": times, "cached_s_per_step": cached_s, "online_over_cached": online_s / cached_s}


def measure(size: str, args, out: Path, device: torch.device) -> dict:
    folder = out / f"official-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    files = {m: write_checkpoint(folder / f"{m}.bin", m, SIZES[size], args.frames, seed) for seed, m in enumerate(MODELS)}
    data = folder / "data"
    if not (data / "videos.parquet").exists() or read_manifest(data).videos.num_rows != args.videos:
        shutil.rmtree(data, ignore_errors=True)
        generate(data, SynthConfig(n_train=args.videos, n_val=0, n_test=0, seed=11), progress=False)
    cfg = extract_config(files, data, folder / "store", args)
    result = {"size": size, **SIZES[size], "frames_per_video": args.frames, "decode_workers": args.workers, "stage_one": stage_one(cfg, device)}
    with Store.open(cfg.store) as store:
        result["payoff"] = payoff(files, store, args, device)
    for f in files.values():
        f.unlink()  # hundreds of MB at ViT-B/32
    return result


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--sizes", default="tiny", help="comma-separated: tiny, vit-b-32")
    parser.add_argument("--videos", type=int, default=64, help="generated videos extracted")
    parser.add_argument("--frames", type=int, default=12, help="frames per video (F)")
    parser.add_argument("--batch", type=int, default=32, help="videos per training step (TeachCLIP's MSR-VTT batch: 128 over 8 GPUs... ; here one device)")
    parser.add_argument("--online-steps", type=int, default=3)
    parser.add_argument("--cached-steps", type=int, default=20)
    parser.add_argument("--encode-batch", type=int, default=384, help="frames per forward pass")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 2), help="decode worker processes")
    args = parser.parse_args()
    out = Path(args.out)
    device = resolve_device("auto")
    torch.manual_seed(0)
    results = {"environment": environment(device), "sizes": {}}
    for size in args.sizes.split(","):
        r = measure(size, args, out, device)
        results["sizes"][size] = r
        s, p = r["stage_one"], r["payoff"]
        enc = ", ".join(f"{k} {v:.2f} s" for k, v in s["encode_only_s"].items())
        print(
            f"official backbones [{size}, {device}]: {s['videos']} videos x {args.frames} frames; decode-only {s['decode_only_s']:.2f} s; "
            f"encode-only {enc}; stage one's frames phase (one decode, three backbones) {s['stage_one_frames_phase_s']:.2f} s = "
            f"{s['frames_phase_over_decode_plus_encodes']:.2f}x of decode + the encodes, {s['frames_phase_over_larger']:.2f}x of the larger "
            f"({s['videos_per_s']:.1f} videos/s; {s['decode_worker_startup_s']:.1f} s of it starting the decode workers: "
            f"{s['frames_phase_less_startup_over_decode_plus_encodes']:.2f}x without)"
        )
        print(
            f"cache payoff [{size}, batch {p['batch']}]: TeachCLIP's online step (student CLIP fwd+bwd, 2 teacher CLIPs fwd, heads) "
            f"{p['online_s_per_step'] * 1000:.1f} ms vs the cached step {p['cached_s_per_step'] * 1000:.2f} ms = {p['online_over_cached']:.0f}x (decode left out of both)"
        )
    print(f"wrote {write_json(out, 'official_backbones', results)}")


if __name__ == "__main__":
    main()
