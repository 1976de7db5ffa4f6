"""Stage-one speed and store size, measured side by side in one run.

- Extraction: the frames phase of stage one (decode in workers + encode + write) against
  decode alone and encode alone on the same videos. Goal: <= 1.15x of the larger.
- Pipeline overlap: stage one again with a stand-in encoder that only waits (no CPU, like
  a GPU), as long in all as decoding took once the workers had started. This measures
  stage one's own overlap on a machine whose cores are all busy decoding: perfect overlap
  takes as long as decode-only (worker start-up + decoding), none adds the wait.
- Store size: stored bytes per video of the frame arrays against F x D x 2 (raw float16).

Prints the ratios and writes JSON (``--out``/extraction.json).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arguments, verdict, write_json

from teachcache.cache import schema
from teachcache.cache.manifest import read_manifest
from teachcache.cache.store import Store
from teachcache.pipeline.synth import SynthConfig, generate
from teachcache.stages.common.device import resolve_device
from teachcache.stages.extract.config import DecodeConfig, ExtractConfig, FrameEncoderConfig, StoreLayoutConfig
from teachcache.stages.extract.decode import DecodePool, DecodeRequest
from teachcache.stages.extract.encoders.base import ModelSpec
from teachcache.stages.extract.encoders.open_clip import FrameEncoder
from teachcache.stages.extract.run import run_extraction


def _data(root: Path, videos: int) -> Path:
    if not (root / "videos.parquet").exists() or read_manifest(root).videos.num_rows != videos:
        shutil.rmtree(root, ignore_errors=True)
        generate(root, SynthConfig(n_train=videos, n_val=0, n_test=0, seed=11), progress=False)
    return root


def _requests(cfg: ExtractConfig, encoder: FrameEncoder) -> list[DecodeRequest]:
    manifest = read_manifest(cfg.data)
    return [DecodeRequest(str(p), cfg.sampling.sampler, cfg.sampling.num_frames, w, (encoder.geometry,)) for p, w in zip(manifest.video_paths(), manifest.windows())]


def standin_overlap(cfg: ExtractConfig, seconds_per_frame: float) -> float:
    """Stage one's frames phase with every frame encoder replaced by a wait of ``seconds_per_frame``."""
    original = FrameEncoder.encode

    def wait(self, frames: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        time.sleep(len(frames) * seconds_per_frame)
        return np.zeros((len(frames), self.dim), np.float32)

    FrameEncoder.encode = wait
    try:
        return run_extraction(cfg, force=True, progress=False).phase_seconds["frames"]
    finally:
        FrameEncoder.encode = original


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--videos", type=int, default=400)
    parser.add_argument("--model", default="teachcache-tiny-p8", help="open_clip architecture of the frame encoder")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    cfg = ExtractConfig(data=str(_data(out / "data", args.videos)), store=str(out / "store"))
    cfg.frame_encoders = {"clip": FrameEncoderConfig(name="clip", model=args.model)}
    cfg.text_encoders, cfg.teachers = {}, {}
    cfg.decode = DecodeConfig(workers=args.workers)
    cfg.layout = StoreLayoutConfig(shard_size=256)
    encoder = FrameEncoder(ModelSpec(args.model), resolve_device(cfg.device), cfg.precision)
    requests = _requests(cfg, encoder)

    t0 = time.perf_counter()
    with DecodePool(args.workers, cfg.decode.timeout_s) as pool:
        decoded = list(pool.imap(requests))
    decode_s = time.perf_counter() - t0

    frames = np.concatenate([d.frames[0] for d in decoded if d.error is None])
    t0 = time.perf_counter()
    for start in range(0, len(frames), 32 * cfg.sampling.num_frames):
        encoder.encode(frames[start : start + 32 * cfg.sampling.num_frames])
    encode_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with DecodePool(args.workers, cfg.decode.timeout_s) as pool:
        list(pool.imap(requests[: args.workers]))
    startup_s = time.perf_counter() - t0  # workers started, one video each

    summary = run_extraction(cfg, force=True, progress=False)
    stage_s = summary.phase_seconds["frames"]
    with Store.open(cfg.store) as store:
        info = store.info()
    raw_per_video = cfg.sampling.num_frames * encoder.dim * 2
    frame_bytes = next(a["stored_bytes"] for a in info["arrays"] if a["name"] == schema.frames("clip")) / info["videos"]
    standin_wait_s = max(0.0, decode_s - startup_s)
    standin_s = standin_overlap(cfg, standin_wait_s / len(frames))  # rewrites the store: sizes are read above

    result = {
        "videos": len(requests),
        "frames": len(frames),
        "model": args.model,
        "workers": args.workers,
        "decode_only_s": decode_s,
        "encode_only_s": encode_s,
        "stage_one_frames_s": stage_s,
        "stage_one_over_max": stage_s / max(decode_s, encode_s),
        "stage_one_over_sum": stage_s / (decode_s + encode_s),
        "goal_stage_one_over_max": 1.15,
        "videos_per_s": len(requests) / stage_s,
        "worker_startup_s": startup_s,
        "standin_encode_s": standin_wait_s,
        "stage_one_standin_s": standin_s,
        "standin_over_decode_only": standin_s / decode_s,
        "standin_no_overlap_over_decode_only": (decode_s + standin_wait_s) / decode_s,
        "frames_bytes_per_video": frame_bytes,
        "raw_f_x_d_x_2": raw_per_video,
        "frames_bytes_over_raw": frame_bytes / raw_per_video,
        "store_bytes_per_video": info["bytes_per_video"],
    }
    path = write_json(out, "extraction", result)
    print(
        f"extraction ({len(requests)} videos, {len(frames)} frames, {args.model}, {args.workers} decode workers): "
        f"decode-only {decode_s:.1f} s, encode-only {encode_s:.1f} s, stage one {stage_s:.1f} s "
        f"= {result['stage_one_over_max']:.2f}x of the larger ({verdict(result['stage_one_over_max'], 1.15, higher_is_better=False)}), "
        f"{result['stage_one_over_sum']:.2f}x of their sum (decode and encode share the same CPU cores here)"
    )
    print(
        f"pipeline overlap: with a stand-in encoder that waits {standin_wait_s:.1f} s in all (as long as decoding after "
        f"{startup_s:.1f} s of worker start-up), stage one {standin_s:.1f} s = {result['standin_over_decode_only']:.2f}x of decode-only "
        f"(1.00x: perfect overlap; {result['standin_no_overlap_over_decode_only']:.2f}x: none)"
    )
    print(
        f"store size: frames {frame_bytes:.0f} B/video vs F x D x 2 = {raw_per_video} B ({result['frames_bytes_over_raw']:.2f}x); whole store {info['bytes_per_video']:.0f} B/video"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
