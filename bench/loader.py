"""Loader: stage-two samples per second against a plain numpy gather from RAM, side by side
in one run, in RAM mode (``RamLoader``) and shard-streaming mode (``ShardLoader``).

A synthetic store is written the way stage one writes one (``Store.prepare``, Zarr backend,
every shard written whole and marked done, then finalised): ``frames/x`` float16 [V, F, D],
``frame_mask/x`` bool [V, F], ``text/x`` float16 [T, D], one caption per video, every video in
``train``, random values (feature-like float16, which compresses about as badly as real ones).

- Bound: per batch, numpy fancy-index gathers of the same arrays (frames, mask, text) from
  in-RAM numpy arrays, over a shuffled epoch.
- RAM mode: ``load_split`` then ``RamLoader.epoch`` (one random caption per video, batches).
- Stream mode: ``ShardLoader`` reading whole Zarr shards ``--buffer-shards`` at a time; measured
  with the store's files in the OS page cache (just written, "warm") and, where the OS allows,
  after asking it to drop those files' pages (``posix_fadvise DONTNEED``: "cold").

Samples/s = samples of full epochs / their seconds (median epoch).
Goals: RAM >= 0.5x of the gather bound; streaming >= 50k samples/s.

Prints the figures and writes JSON (``--out``/loader.json).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arguments, environment, median, verdict, write_json  # noqa: E402

from cache.manifest import CAPTION_SCHEMA, VIDEO_SCHEMA  # noqa: E402
from cache.store import ArraySpec, Store  # noqa: E402
from stages.data import RamLoader, ShardLoader, load_split, one_caption_per_video, split_rows  # noqa: E402
from stages.device import resolve_device  # noqa: E402

GOAL_RAM = 0.5  # of the gather bound
GOAL_STREAM = 50_000.0  # samples/s
NAMES = ("text/x", "frames/x", "frame_mask/x")


def build_store(path: Path, videos: int, frames: int, dim: int, shard_size: int, seed: int, codec: str = "zstd") -> float:
    """Write the synthetic store; returns the seconds it took."""
    start = time.perf_counter()
    ids = [f"v{i:07d}" for i in range(videos)]
    video_table = pa.Table.from_pylist(
        [{"video_id": v, "path": f"videos/{v}.mp4", "split": "train"} for v in ids], schema=VIDEO_SCHEMA
    )
    caption_table = pa.Table.from_pylist(
        [{"caption_id": f"{v}#0", "video_id": v, "text": f"caption of {v}", "split": "train"} for v in ids], schema=CAPTION_SCHEMA
    ).append_column("video_index", pa.array(np.arange(videos, dtype=np.int64)))
    specs = [
        ArraySpec("frames/x", "videos", (frames, dim), "float16", "frames"),
        ArraySpec("frame_mask/x", "videos", (frames,), "bool", "frames"),
        ArraySpec("text/x", "captions", (dim,), "float16", "text/x"),
    ]
    components = {"bench": "loader", "videos": videos, "frames": frames, "dim": dim, "seed": seed}
    store = Store.prepare(
        path, backend="zarr", fingerprint=f"bench-loader-{videos}-{frames}-{dim}-{seed}", components=components,
        videos=video_table, captions=caption_table, arrays=specs, shard_size=shard_size, codec=codec, float_codec=codec, force=True,
    )
    rng = np.random.default_rng(seed)
    with store:
        for shard, lo, hi in store.shards("videos"):
            n = hi - lo
            store.write("frames/x", lo, rng.standard_normal((n, frames, dim), dtype=np.float32).astype(np.float16))
            mask = np.ones((n, frames), bool)
            short = np.flatnonzero(rng.random(n) < 0.2)  # a fifth of the videos shorter than F frames, padded and masked
            mask[short] = np.arange(frames)[None, :] < rng.integers(max(1, frames // 2), frames, len(short))[:, None]
            store.write("frame_mask/x", lo, mask)
            store.mark_done("frames", shard)
        for shard, lo, hi in store.shards("captions"):
            store.write("text/x", lo, rng.standard_normal((hi - lo, dim), dtype=np.float32).astype(np.float16))
            store.mark_done("text/x", shard)
        store.finalize()
    return time.perf_counter() - start


def drop_page_cache(path: Path) -> bool:
    """Ask the OS to drop the cached pages of the store's own files (nothing else); False where it cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True


def epoch_seconds(run_epoch, epochs: int) -> tuple[list[float], int]:
    """Seconds of each of ``epochs`` full epochs and the samples of one."""
    times, samples = [], 0
    for _ in range(epochs):
        start = time.perf_counter()
        samples = run_epoch()
        times.append(time.perf_counter() - start)
    return times, samples


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--videos", type=int, default=20000, help="V (one caption each)")
    parser.add_argument("--frames", type=int, default=12, help="F")
    parser.add_argument("--dim", type=int, default=512, help="D")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (median taken)")
    parser.add_argument("--buffer-shards", type=int, default=4, help="stream: shards per shuffle buffer (train.buffer_shards)")
    parser.add_argument("--shard-size", type=int, default=1024, help="rows per store shard (layout.shard_size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codecs", default="none,zstd", help="codecs of the float arrays (layout.float_codec) measured in stream mode; the first is the headline (none: the default)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device("auto")  # the loaders produce CPU tensors; stage two moves them to this device
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    paths = {codec: out / f"loader-store-{codec}" for codec in codecs}
    build_times = {codec: build_store(paths[codec], args.videos, args.frames, args.dim, args.shard_size, args.seed, codec) for codec in codecs}
    path, build_s = paths[codecs[0]], build_times[codecs[0]]
    stored = {}
    for codec in codecs:
        with Store.open(paths[codec]) as probe:
            stored[codec] = next(a["stored_bytes"] for a in probe.info()["arrays"] if a["name"] == "frames/x")
    store = Store.open(path)
    info = store.info()
    frame_bytes = next(a["stored_bytes"] for a in info["arrays"] if a["name"] == "frames/x")

    t0 = time.perf_counter()
    ram_split = load_split(store, "train", list(NAMES))
    load_ram_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = split_rows(store, "train")
    stream_split = load_split(store, "train", list(NAMES), stream_videos=True, rows=rows)
    load_stream_s = time.perf_counter() - t0

    # the bound's arrays: the same data as plain numpy arrays in RAM
    frames_np = ram_split.video_arrays["frames/x"].numpy()
    mask_np = ram_split.video_arrays["frame_mask/x"].numpy()
    text_np = ram_split.caption_arrays["text/x"].numpy()
    caption_of_video = np.empty(ram_split.num_videos, np.int64)
    caption_of_video[ram_split.caption_video.numpy()] = np.arange(ram_split.num_captions)
    rng = np.random.default_rng(args.seed)

    results = {}
    for batch in batch_sizes:
        def bound_epoch() -> int:
            order = rng.permutation(len(frames_np))
            n = 0
            for i in range(0, len(order), batch):
                idx = order[i : i + batch]
                if len(idx) < 2:
                    continue
                f, m, t = frames_np[idx], mask_np[idx], text_np[caption_of_video[idx]]  # noqa: F841 - the gather is the work
                n += len(f)
            return n

        generator = torch.Generator().manual_seed(args.seed)
        ram_loader = RamLoader(ram_split, batch)
        stream_stores = {codec: Store.open(paths[codec]) for codec in codecs}
        stream_loaders = {codec: ShardLoader(stream_stores[codec], stream_split, rows, ["frames/x", "frame_mask/x"], batch, args.buffer_shards) for codec in codecs}
        stream_loader = stream_loaders[codecs[0]]

        def ram_epoch() -> int:
            return sum(len(b.captions) for b in ram_loader.epoch(generator))

        def stream_epoch() -> int:
            return sum(len(b.captions) for b in stream_loader.epoch(generator))

        bound_epoch()  # warm-up (first touch of the arrays)
        bound_t, bound_n = epoch_seconds(bound_epoch, args.epochs)
        ram_t, ram_n = epoch_seconds(ram_epoch, args.epochs)
        stream_t, stream_n = epoch_seconds(stream_epoch, args.epochs)
        cold = drop_page_cache(path)
        cold_t, cold_n = epoch_seconds(stream_epoch, 1) if cold else ([], 0)
        by_codec = {}
        for codec, loader in stream_loaders.items():
            times, n = epoch_seconds(lambda loader=loader: sum(len(b.captions) for b in loader.epoch(generator)), args.epochs)
            by_codec[codec] = {"epoch_s": times, "samples_per_s": n / median(times), "frames_stored_bytes": stored[codec]}
        for opened in stream_stores.values():
            opened.close()

        bound_rate, ram_rate, stream_rate = bound_n / median(bound_t), ram_n / median(ram_t), stream_n / median(stream_t)
        results[str(batch)] = {
            "batch": batch,
            "samples_per_epoch": {"bound": bound_n, "ram": ram_n, "stream": stream_n},
            "bound_epoch_s": bound_t,
            "ram_epoch_s": ram_t,
            "stream_epoch_s": stream_t,
            "stream_cold_epoch_s": cold_t,
            "bound_samples_per_s": bound_rate,
            "ram_samples_per_s": ram_rate,
            "stream_samples_per_s": stream_rate,
            "stream_cold_samples_per_s": cold_n / cold_t[0] if cold_t else None,
            "ram_over_bound": ram_rate / bound_rate,
            "stream_over_bound": stream_rate / bound_rate,
            "stream_by_codec": by_codec,
        }
    # where the time goes: the caption draw (over every caption of the split) and
    # a whole-array slice read against load_split's read by row index
    generator = torch.Generator().manual_seed(args.seed)
    draw_t = []
    for _ in range(args.epochs):
        videos = torch.randperm(ram_split.num_videos, generator=generator)
        t0 = time.perf_counter()
        one_caption_per_video(ram_split.caption_video, videos, generator)
        draw_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    store.read("frames/x", slice(0, args.videos))
    slice_read_s = time.perf_counter() - t0
    store.close()
    diagnostics = {"one_caption_per_video_s_per_epoch": median(draw_t), "read_frames_whole_slice_s": slice_read_s}

    result = {
        "environment": environment(device),
        "settings": vars(args),
        "store": {
            "path": str(path),
            "codecs": codecs,
            "videos": args.videos,
            "captions": info["captions"],
            "shape_frames": [args.videos, args.frames, args.dim],
            "frames_stored_bytes": frame_bytes,
            "frames_raw_bytes": args.videos * args.frames * args.dim * 2,
            "build_s": build_s,
            "load_split_ram_s": load_ram_s,
            "load_split_stream_s": load_stream_s,
        },
        "goals": {"ram_over_bound_at_least": GOAL_RAM, "stream_samples_per_s_at_least": GOAL_STREAM},
        "batches": results,
        "diagnostics": diagnostics,
    }
    path_json = write_json(out, "loader", result)
    print(
        f"loader: store V={args.videos} videos (one caption each), F={args.frames}, D={args.dim}, float16 frames "
        f"{frame_bytes / 2**20:.0f} MiB stored ({frame_bytes / (args.videos * args.frames * args.dim * 2):.2f}x raw), "
        f"{args.shard_size}-row shards; written in {build_s:.1f} s, split read into RAM in {load_ram_s:.1f} s; "
        f"{args.epochs} full epochs per figure (median), stream buffer {args.buffer_shards} shards"
    )
    for r in results.values():
        print(
            f"loader RAM, batch {r['batch']}: RamLoader {r['ram_samples_per_s']:,.0f} samples/s vs numpy gather bound "
            f"{r['bound_samples_per_s']:,.0f} samples/s = {r['ram_over_bound']:.2f}x ({verdict(r['ram_over_bound'], GOAL_RAM)})"
        )
        cold_note = (
            f"; after dropping the store's pages from the OS cache {r['stream_cold_samples_per_s']:,.0f} samples/s (1 epoch)"
            if r["stream_cold_samples_per_s"] else "; cold-cache epoch not measured (no posix_fadvise)"
        )
        print(
            f"loader stream, batch {r['batch']}: ShardLoader {r['stream_samples_per_s']:,.0f} samples/s with the store in the page cache "
            f"({verdict(r['stream_samples_per_s'], GOAL_STREAM)}), {r['stream_over_bound']:.2f}x of the bound{cold_note}"
        )
        for codec, c in r["stream_by_codec"].items():
            print(
                f"  stream with layout.float_codec = {codec} ({c['frames_stored_bytes'] / (args.videos * args.frames * args.dim * 2):.2f}x raw): "
                f"{c['samples_per_s']:,.0f} samples/s ({verdict(c['samples_per_s'], GOAL_STREAM)})"
            )
    print(
        f"where the time goes: drawing one caption per video takes {1000 * diagnostics['one_caption_per_video_s_per_epoch']:.0f} ms per epoch "
        f"over all {ram_split.num_captions} captions (RamLoader once per epoch; ShardLoader once per buffer, "
        f"{-(-len(range(0, args.videos, args.shard_size)) // args.buffer_shards)} buffers per epoch); load_split's read of frames/x by row index took {load_ram_s:.1f} s for all arrays, "
        f"a plain slice read of frames/x {slice_read_s:.2f} s"
    )
    print(f"wrote {path_json}")


if __name__ == "__main__":
    main()
