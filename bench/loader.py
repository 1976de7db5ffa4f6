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
from common import arguments, environment, median, verdict, write_json

from teachcache.cache import schema
from teachcache.cache.manifest import CAPTION_SCHEMA, VIDEO_SCHEMA
from teachcache.cache.schema import CAPTIONS, FRAMES_UNIT, VIDEOS
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.common.data import RamLoader, ShardLoader, load_split, one_caption_per_video, split_rows
from teachcache.stages.common.device import resolve_device

GOAL_RAM = 0.5  # of the gather bound
GOAL_STREAM = 50_000.0  # samples/s
TEXT, FRAMES, MASK = schema.text("x"), schema.frames("x"), schema.frame_mask("x")
NAMES = (TEXT, FRAMES, MASK)


def build_store(path: Path, videos: int, frames: int, dim: int, shard_size: int, seed: int, codec: str = "zstd") -> float:
    """Write the synthetic store; returns the seconds it took."""
    start = time.perf_counter()
    ids = [f"v{i:07d}" for i in range(videos)]
    video_table = pa.Table.from_pylist([{"video_id": v, "path": f"videos/{v}.mp4", "split": "train"} for v in ids], schema=VIDEO_SCHEMA)
    caption_table = pa.Table.from_pylist([{"caption_id": f"{v}#0", "video_id": v, "text": f"caption of {v}", "split": "train"} for v in ids], schema=CAPTION_SCHEMA).append_column(
        "video_index", pa.array(np.arange(videos, dtype=np.int64))
    )
    specs = [
        ArraySpec(FRAMES, VIDEOS, (frames, dim), "float16", FRAMES_UNIT),
        ArraySpec(MASK, VIDEOS, (frames,), "bool", FRAMES_UNIT),
        ArraySpec(TEXT, CAPTIONS, (dim,), "float16", schema.text_unit("x")),
    ]
    components = {"config": {"bench": "loader", "videos": videos, "frames": frames, "dim": dim, "seed": seed}, "inputs": {}}
    store = Store.prepare(
        path,
        backend="zarr",
        components=components,
        videos=video_table,
        captions=caption_table,
        arrays=specs,
        shard_size=shard_size,
        codec=codec,
        float_codec=codec,
        force=True,
    )
    rng = np.random.default_rng(seed)
    with store:
        for shard, lo, hi in store.shards(VIDEOS):
            n = hi - lo
            store.write(FRAMES, lo, rng.standard_normal((n, frames, dim), dtype=np.float32).astype(np.float16))
            mask = np.ones((n, frames), bool)
            short = np.flatnonzero(rng.random(n) < 0.2)  # a fifth of the videos shorter than F frames, padded and masked
            mask[short] = np.arange(frames)[None, :] < rng.integers(max(1, frames // 2), frames, len(short))[:, None]
            store.write(MASK, lo, mask)
            store.mark_done(FRAMES_UNIT, shard)
        for shard, lo, hi in store.shards(CAPTIONS):
            store.write(TEXT, lo, rng.standard_normal((hi - lo, dim), dtype=np.float32).astype(np.float16))
            store.mark_done(schema.text_unit("x"), shard)
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


def parse_args():
    parser = arguments(__doc__)
    parser.add_argument("--videos", type=int, default=20000, help="V (one caption each)")
    parser.add_argument("--frames", type=int, default=12, help="F")
    parser.add_argument("--dim", type=int, default=512, help="D")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (median taken)")
    parser.add_argument("--buffer-shards", type=int, default=4, help="stream: shards per shuffle buffer (train.buffer_shards)")
    parser.add_argument("--shard-size", type=int, default=1024, help="rows per store shard (layout.shard_size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--codecs", default="none,zstd", help="codecs of the float arrays (layout.float_codec) measured in stream mode; the first is the headline (none: the default)"
    )
    return parser.parse_args()


def frame_bytes_of(path: Path) -> int:
    with Store.open(path) as probe:
        return next(a["stored_bytes"] for a in probe.info()["arrays"] if a["name"] == FRAMES)


class Gathers:
    """The bound: per batch, numpy fancy-index gathers of the split's arrays held in RAM."""

    def __init__(self, split, seed: int):
        self.frames, self.mask = split.video_arrays[FRAMES].numpy(), split.video_arrays[MASK].numpy()
        self.text = split.caption_arrays[TEXT].numpy()
        self.caption_of_video = np.empty(split.num_videos, np.int64)
        self.caption_of_video[split.caption_video.numpy()] = np.arange(split.num_captions)
        self.rng = np.random.default_rng(seed)

    def epoch(self, batch: int) -> int:
        order = self.rng.permutation(len(self.frames))
        n = 0
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            if len(idx) < 2:
                continue
            f, m, t = self.frames[idx], self.mask[idx], self.text[self.caption_of_video[idx]]  # noqa: F841 - the gather is the work
            n += len(f)
        return n


def measure_batch(batch: int, args, paths: dict, stored: dict, ram_split, stream_split, rows, gathers: Gathers) -> dict:
    """Every figure at one batch size: bound, RAM, stream (warm, cold, by codec)."""
    codecs = list(paths)
    generator = torch.Generator().manual_seed(args.seed)
    ram_loader = RamLoader(ram_split, batch)
    stream_stores = {codec: Store.open(paths[codec]) for codec in codecs}
    stream_loaders = {codec: ShardLoader(stream_stores[codec], stream_split, rows, [FRAMES, MASK], batch, args.buffer_shards) for codec in codecs}

    def epoch_of(loader):
        return lambda: sum(len(b.captions) for b in loader.epoch(generator))

    gathers.epoch(batch)  # warm-up (first touch of the arrays)
    bound_t, bound_n = epoch_seconds(lambda: gathers.epoch(batch), args.epochs)
    ram_t, ram_n = epoch_seconds(epoch_of(ram_loader), args.epochs)
    stream_epoch = epoch_of(stream_loaders[codecs[0]])
    stream_t, stream_n = epoch_seconds(stream_epoch, args.epochs)
    cold = drop_page_cache(paths[codecs[0]])
    cold_t, cold_n = epoch_seconds(stream_epoch, 1) if cold else ([], 0)
    by_codec = {}
    for codec, loader in stream_loaders.items():
        times, n = epoch_seconds(epoch_of(loader), args.epochs)
        by_codec[codec] = {"epoch_s": times, "samples_per_s": n / median(times), "frames_stored_bytes": stored[codec]}
    for opened in stream_stores.values():
        opened.close()
    bound_rate, ram_rate, stream_rate = bound_n / median(bound_t), ram_n / median(ram_t), stream_n / median(stream_t)
    return {
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


def diagnose(store: Store, ram_split, args) -> dict:
    """Where the time goes: the caption draw (over every caption of the split), and a whole-array
    slice read against load_split's read by row index."""
    generator = torch.Generator().manual_seed(args.seed)
    draw_t = []
    for _ in range(args.epochs):
        videos = torch.randperm(ram_split.num_videos, generator=generator)
        t0 = time.perf_counter()
        one_caption_per_video(ram_split.caption_video, videos, generator)
        draw_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    store.read(FRAMES, slice(0, args.videos))
    return {"one_caption_per_video_s_per_epoch": median(draw_t), "read_frames_whole_slice_s": time.perf_counter() - t0}


def report(result: dict, args) -> None:
    """Print the figures against their goals."""
    s, diagnostics = result["store"], result["diagnostics"]
    raw = args.videos * args.frames * args.dim * 2
    print(
        f"loader: store V={args.videos} videos (one caption each), F={args.frames}, D={args.dim}, float16 frames "
        f"{s['frames_stored_bytes'] / 2**20:.0f} MiB stored ({s['frames_stored_bytes'] / raw:.2f}x raw), "
        f"{args.shard_size}-row shards; written in {s['build_s']:.1f} s, split read into RAM in {s['load_split_ram_s']:.1f} s; "
        f"{args.epochs} full epochs per figure (median), stream buffer {args.buffer_shards} shards"
    )
    for r in result["batches"].values():
        print(
            f"loader RAM, batch {r['batch']}: RamLoader {r['ram_samples_per_s']:,.0f} samples/s vs numpy gather bound "
            f"{r['bound_samples_per_s']:,.0f} samples/s = {r['ram_over_bound']:.2f}x ({verdict(r['ram_over_bound'], GOAL_RAM)})"
        )
        cold_note = (
            f"; after dropping the store's pages from the OS cache {r['stream_cold_samples_per_s']:,.0f} samples/s (1 epoch)"
            if r["stream_cold_samples_per_s"]
            else "; cold-cache epoch not measured (no posix_fadvise)"
        )
        print(
            f"loader stream, batch {r['batch']}: ShardLoader {r['stream_samples_per_s']:,.0f} samples/s with the store in the page cache "
            f"({verdict(r['stream_samples_per_s'], GOAL_STREAM)}), {r['stream_over_bound']:.2f}x of the bound{cold_note}"
        )
        for codec, c in r["stream_by_codec"].items():
            print(
                f"  stream with layout.float_codec = {codec} ({c['frames_stored_bytes'] / raw:.2f}x raw): "
                f"{c['samples_per_s']:,.0f} samples/s ({verdict(c['samples_per_s'], GOAL_STREAM)})"
            )
    print(
        f"where the time goes: drawing one caption per video takes {1000 * diagnostics['one_caption_per_video_s_per_epoch']:.0f} ms per epoch "
        f"over all {s['captions']} captions (RamLoader once per epoch; ShardLoader once per buffer, "
        f"{-(-len(range(0, args.videos, args.shard_size)) // args.buffer_shards)} buffers per epoch); load_split's read of frames by row index took "
        f"{s['load_split_ram_s']:.1f} s for all arrays, a plain slice read of frames {diagnostics['read_frames_whole_slice_s']:.2f} s"
    )


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device("auto")  # the loaders produce CPU tensors; stage two moves them to this device
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    paths = {codec: out / f"loader-store-{codec}" for codec in codecs}
    build_times = {codec: build_store(paths[codec], args.videos, args.frames, args.dim, args.shard_size, args.seed, codec) for codec in codecs}
    stored = {codec: frame_bytes_of(paths[codec]) for codec in codecs}
    store = Store.open(paths[codecs[0]])

    t0 = time.perf_counter()
    ram_split = load_split(store, "train", list(NAMES))
    load_ram_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = split_rows(store, "train")
    stream_split = load_split(store, "train", list(NAMES), stream_videos=True, rows=rows)
    load_stream_s = time.perf_counter() - t0
    gathers = Gathers(ram_split, args.seed)
    batches = {str(b): measure_batch(int(b), args, paths, stored, ram_split, stream_split, rows, gathers) for b in args.batch_sizes.split(",") if b.strip()}
    diagnostics = diagnose(store, ram_split, args)
    store.close()

    result = {
        "environment": environment(device),
        "settings": vars(args),
        "store": {
            "path": str(paths[codecs[0]]),
            "codecs": codecs,
            "videos": args.videos,
            "captions": ram_split.num_captions,
            "shape_frames": [args.videos, args.frames, args.dim],
            "frames_stored_bytes": stored[codecs[0]],
            "frames_raw_bytes": args.videos * args.frames * args.dim * 2,
            "build_s": build_times[codecs[0]],
            "load_split_ram_s": load_ram_s,
            "load_split_stream_s": load_stream_s,
        },
        "goals": {"ram_over_bound_at_least": GOAL_RAM, "stream_samples_per_s_at_least": GOAL_STREAM},
        "batches": batches,
        "diagnostics": diagnostics,
    }
    path_json = write_json(out, "loader", result)
    report(result, args)
    print(f"wrote {path_json}")


if __name__ == "__main__":
    main()
