"""Retrieval: the student's scoring (one dot product per (query, video) pair) against the X-Pool
head's per-pair pooling, side by side in one run, at 10k and 100k videos; and the student's
query latency over 1M stored video vectors.

- Student: precomputed L2-normalised video vectors [N, D] (float32); a batch of Q normalised
  query vectors is scored by one matmul [N, D] x [D, Q].
- X-Pool: the head of ``stages/teachers/xpool.py`` (built with ``build_teacher``, random
  identity-initialised weights: the cost does not depend on them) over [N, F, D] frame
  features. Its query-independent work (``prepare_video``: LayerNorm, keys, values) is done
  once per video set and kept out of the per-pair time (reported apart); ``score`` (the
  text-conditioned attention pooling, output projection, LayerNorms, residual linear and cosine
  of every (query, video) pair) is timed, over chunks of videos. Where a set has more than
  ``--xpool-max-videos`` videos, X-Pool is timed on that many and its time extrapolated
  linearly (it is per pair), as the output says.
- Per-pair time = seconds / (Q x N). Goal: X-Pool / student >= 100x per pair.
- Latency: one query against 1M random normalised student vectors stored in float16 (D=512),
  scores then top 10; median over ``--latency-queries`` queries.

Prints the figures and writes JSON (``--out``/retrieval.json).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arguments, environment, fmt_s, median, sync, verdict, write_json

from teachcache.stages.common.device import resolve_device
from teachcache.stages.teachers.config import TeacherConfig
from teachcache.stages.teachers.heads import build_teacher

GOAL = 100.0  # X-Pool per-pair time / student per-pair time


def student_per_pair(num_videos: int, queries: int, dim: int, repeats: int, device: torch.device, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    videos = F.normalize(torch.randn(num_videos, dim, generator=g), dim=-1).to(device)
    text = F.normalize(torch.randn(queries, dim, generator=g), dim=-1).to(device)
    videos @ text.T  # warm-up; [N, Q] is the faster layout of the same matmul on the CPU
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        videos @ text.T
        sync(device)
        times.append(time.perf_counter() - t0)
    s = median(times)
    return {"seconds_per_call": s, "per_pair_s": s / (queries * num_videos), "repeats": repeats}


@torch.inference_mode()
def xpool_per_pair(head, num_videos: int, measured: int, queries: int, frames: int, dim: int, chunk: int, device: torch.device, seed: int) -> dict:
    """Score Q queries against the first ``measured`` of ``num_videos`` videos, chunk by chunk."""
    g = torch.Generator().manual_seed(seed + 1)
    text = {"text/x": torch.randn(queries, dim, generator=g).to(device)}
    prepare_s = score_s = 0.0
    n = min(chunk, measured)  # warm-up at the measured chunk shape (kernels, allocator)
    warm = head.prepare_video({"frames/x": torch.randn(n, frames, dim, generator=g).to(device), "frame_mask/x": torch.ones(n, frames, dtype=torch.bool, device=device)})
    head.score(text, warm)
    del warm
    done = 0
    while done < measured:
        n = min(chunk, measured - done)
        video = {
            "frames/x": torch.randn(n, frames, dim, generator=g).to(device),
            "frame_mask/x": torch.ones(n, frames, dtype=torch.bool, device=device),
        }
        sync(device)
        t0 = time.perf_counter()
        prepared = head.prepare_video(video)
        sync(device)
        t1 = time.perf_counter()
        head.score(text, prepared)
        sync(device)
        t2 = time.perf_counter()
        prepare_s, score_s, done = prepare_s + t1 - t0, score_s + t2 - t1, done + n
    per_pair = score_s / (queries * measured)
    return {
        "videos_measured": measured,
        "extrapolated": measured < num_videos,
        "score_s_measured": score_s,
        "score_s_for_all_videos": per_pair * queries * num_videos,
        "per_pair_s": per_pair,
        "prepare_s_per_video": prepare_s / measured,
    }


def latency_1m(num_videos: int, dim: int, topk: int, queries: int, device: torch.device, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed + 2)
    store = torch.empty(num_videos, dim, dtype=torch.float16, device=device)
    for i in range(0, num_videos, 65536):  # normalised in float32, stored in float16
        n = min(65536, num_videos - i)
        store[i : i + n] = F.normalize(torch.randn(n, dim, generator=g), dim=-1).to(device=device, dtype=torch.float16)
    text = F.normalize(torch.randn(queries + 1, dim, generator=g), dim=-1).to(device=device, dtype=torch.float16)

    def one(q: torch.Tensor):
        return torch.topk(store @ q, topk)

    one(text[-1])  # warm-up
    times = []
    for i in range(queries):
        sync(device)
        t0 = time.perf_counter()
        _, indices = one(text[i])
        indices.cpu()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"videos": num_videos, "dim": dim, "dtype": "float16", "topk": topk, "queries": queries, "median_s": median(times), "times_s": times}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--videos", default="10000,100000", help="video set sizes N")
    parser.add_argument("--queries", type=int, default=8, help="Q: queries scored together, for both methods")
    parser.add_argument("--dim", type=int, default=512, help="D")
    parser.add_argument("--frames", type=int, default=12, help="F: frames per video (X-Pool)")
    parser.add_argument("--xpool-max-videos", type=int, default=10000, help="X-Pool timed on at most this many videos of a set (the rest extrapolated)")
    parser.add_argument("--xpool-chunk", type=int, default=2000, help="videos per X-Pool score call")
    parser.add_argument("--student-repeats", type=int, default=20)
    parser.add_argument("--latency-videos", type=int, default=1_000_000)
    parser.add_argument("--latency-queries", type=int, default=20)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    device = resolve_device("auto")
    sizes = [int(v) for v in args.videos.split(",") if v.strip()]

    dims = {"frames/x": (args.frames, args.dim), "frame_mask/x": (args.frames,), "text/x": (args.dim,)}
    head = build_teacher(TeacherConfig(name="xpool", kind="xpool", frames="x", text="x", temporal_layers=0), dims).to(device).eval()

    per_size = {}
    for n in sizes:
        student = student_per_pair(n, args.queries, args.dim, args.student_repeats, device, args.seed)
        xpool = xpool_per_pair(head, n, min(n, args.xpool_max_videos), args.queries, args.frames, args.dim, args.xpool_chunk, device, args.seed)
        per_size[str(n)] = {"videos": n, "student": student, "xpool": xpool, "xpool_over_student_per_pair": xpool["per_pair_s"] / student["per_pair_s"]}
    latency = latency_1m(args.latency_videos, args.dim, args.topk, args.latency_queries, device, args.seed)
    xpool_pair = per_size[str(sizes[-1])]["xpool"]["per_pair_s"] if sizes else float("nan")

    result = {
        "environment": environment(device),
        "settings": vars(args),
        "goal": {"xpool_over_student_per_pair_at_least": GOAL},
        "sizes": per_size,
        "latency": latency,
        "xpool_query_over_latency_videos_extrapolated_s": xpool_pair * args.latency_videos,
    }
    path = write_json(out, "retrieval", result)
    for r in per_size.values():
        x, s = r["xpool"], r["student"]
        how = (
            f"X-Pool timed on {x['videos_measured']} of the {r['videos']} videos and extrapolated per pair to all: {fmt_s(x['score_s_for_all_videos'])}"
            if x["extrapolated"]
            else f"X-Pool over all {r['videos']} videos: {x['score_s_measured']:.2f} s"
        )
        print(
            f"retrieval N={r['videos']} videos, Q={args.queries} queries, D={args.dim}, F={args.frames} ({device}): "
            f"student {fmt_s(s['per_pair_s'])}/pair vs X-Pool {fmt_s(x['per_pair_s'])}/pair "
            f"= {r['xpool_over_student_per_pair']:.0f}x ({verdict(r['xpool_over_student_per_pair'], GOAL)}); "
            f"{how}; student {fmt_s(s['seconds_per_call'])} for the Q x N scores; "
            f"X-Pool's query-independent prepare_video {fmt_s(x['prepare_s_per_video'])}/video, not counted"
        )
    print(
        f"query latency over {latency['videos']:,} student vectors ({latency['dtype']}, D={latency['dim']}, top {latency['topk']}): "
        f"median {fmt_s(latency['median_s'])} over {latency['queries']} queries "
        f"(X-Pool at its measured per-pair time would take ~{fmt_s(result['xpool_query_over_latency_videos_extrapolated_s'])} per query, extrapolated)"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
