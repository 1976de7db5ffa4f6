"""Stage one, frames phase: decode every video once (worker processes, one stream over every
shard to do) and run every frame encoder on the same frames, batching several videos per
forward pass; a video that fails is recorded, its frames masked out.

An encoder with ``blank_padding`` (the official checkpoints' kinds) also runs the padded slots
as blank frames, as the official loaders pad a short video, and stores their features (masked
all the same); one with ``tokens_per_frame`` stores its frame tokens (``frame_tokens/<name>``)
and draws any noise from ``noise_seed + shard``, so a resumed or re-run shard draws the same."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from teachcache.cache import schema
from teachcache.cache.schema import FRAMES_UNIT, KEYFRAMES, VIDEOS
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.extract.decode import DecodedVideo, DecodePool, DecodeRequest, GeometrySpec
from teachcache.stages.extract.encoders.motion import signed_differences
from teachcache.stages.extract.phases.base import Phase, PhaseResult

VIDEO_BATCH = 32  # videos whose frames are encoded together


class FramesPhase(Phase):
    name = "frames"

    def specs(self, known: dict[str, tuple[int, ...]]) -> list[ArraySpec]:
        num_frames = self.ctx.cfg.sampling.num_frames
        specs = []
        for name in self.ctx.cfg.frame_encoders:
            enc = self.ctx.encoders.frames(name)
            specs.append(ArraySpec(schema.frames(name), VIDEOS, (num_frames, enc.dim), "float16", FRAMES_UNIT))
            specs.append(ArraySpec(schema.frame_mask(name), VIDEOS, (num_frames,), "bool", FRAMES_UNIT))
            if enc.tokens_per_frame:
                specs.append(ArraySpec(schema.frame_tokens(name), VIDEOS, (num_frames, enc.tokens_per_frame, enc.dim), "float16", FRAMES_UNIT))
        if self.ctx.cfg.keyframe_size:
            size = self.ctx.cfg.keyframe_size
            specs.append(ArraySpec(KEYFRAMES, VIDEOS, (size, size, 3), "uint8", FRAMES_UNIT))
        return specs

    def run(self, store: Store) -> PhaseResult:
        todo, skipped = self.ctx.scheduler.todo(store, FRAMES_UNIT)
        if not todo:
            return PhaseResult(0, skipped)
        cfg, manifest = self.ctx.cfg, self.ctx.manifest
        paths = [str(p) for p in manifest.video_paths()]
        windows, rates, ids = manifest.windows(), manifest.frame_rates(), manifest.video_ids
        workers = cfg.decode.workers
        # in flight: two encoder batches at least, so the workers decode on while a batch encodes
        with DecodePool(workers, cfg.decode.timeout_s, tuple(cfg.decode.backends), max(2 * VIDEO_BATCH, 8 * workers)) as pool:
            encoders = {name: self.ctx.encoders.frames(name) for name in cfg.frame_encoders}  # while the workers start
            geometries = tuple(dict.fromkeys(e.geometry for e in encoders.values()))
            bar = tqdm(total=sum(hi - lo for _, lo, hi in todo), desc="frames", unit="video", disable=not self.ctx.progress)
            requests = (
                DecodeRequest(paths[i], cfg.sampling.sampler, cfg.sampling.num_frames, windows[i], geometries, rates[i], cfg.keyframe_size)
                for _, lo, hi in todo
                for i in range(lo, hi)
            )
            # one stream over every shard to do (no drain between shards), closed while the pool lives
            with contextlib.closing(pool.imap(requests)) as decoded:
                for shard, lo, hi in todo:
                    arrays, failures = self._encode_shard(encoders, geometries, itertools.islice(decoded, hi - lo), ids[lo:hi], shard, bar)
                    for name, data in arrays.items():
                        store.write(name, lo, data)
                    store.mark_done(FRAMES_UNIT, shard, failures)
            bar.close()
        return PhaseResult(len(todo), skipped)

    def _encode_shard(
        self, encoders: dict[str, Any], geometries: tuple[GeometrySpec, ...], decoded: Iterable[DecodedVideo], video_ids: list[str], shard: int, bar: Any
    ) -> tuple[dict[str, np.ndarray], list[dict[str, str]]]:
        """Encode one shard's videos, batching frames of several videos per forward pass."""
        n, num_frames = len(video_ids), self.ctx.cfg.sampling.num_frames
        feats = {name: np.zeros((n, num_frames, enc.dim), np.float16) for name, enc in encoders.items()}
        tokens = {name: np.zeros((n, num_frames, enc.tokens_per_frame, enc.dim), np.float16) for name, enc in encoders.items() if enc.tokens_per_frame}
        noise = {name: torch.Generator().manual_seed(encoders[name].noise_seed + shard) for name in tokens}
        masks = {name: np.zeros((n, num_frames), bool) for name in encoders}
        size = self.ctx.cfg.keyframe_size
        keyframes = np.zeros((n, size, size, 3), np.uint8) if size else None
        failures: list[dict[str, str]] = []
        batch: list[tuple[int, DecodedVideo]] = []

        def flush() -> None:
            for name, enc in encoders.items():
                frames, valid, slots = batch_frames(batch, geometries.index(enc.geometry), num_frames, enc.blank_padding, enc.frame_differences)
                if name in tokens:
                    out_tokens = enc.encode_tokens(frames, noise[name], valid).astype(np.float16)
                    out = out_tokens[:, 0]
                else:
                    out = enc.encode(frames, valid).astype(np.float16)
                pos = 0
                for row, video in batch:
                    k, width = video.num_valid, slots(video)
                    chunk = out[pos : pos + width]
                    if not np.isfinite(chunk).all() or (name in tokens and not np.isfinite(out_tokens[pos : pos + width]).all()):
                        failures.append({"video_id": video_ids[row], "stage": f"encode:{name}", "reason": "non-finite features (NaN/inf or beyond float16)"})
                    else:
                        feats[name][row, :width] = chunk
                        if name in tokens:
                            tokens[name][row, :width] = out_tokens[pos : pos + width]
                        masks[name][row, :k] = True
                    pos += width
            batch.clear()

        for row, video in enumerate(decoded):
            if video.error is not None:
                failures.append({"video_id": video_ids[row], "stage": "decode", "reason": video.error})
            else:
                if keyframes is not None and video.keyframe is not None:
                    keyframes[row] = video.keyframe
                batch.append((row, video))
                if len(batch) >= VIDEO_BATCH:
                    flush()
            bar.update(1)
        if batch:
            flush()
        arrays: dict[str, np.ndarray] = {schema.frames(k): v for k, v in feats.items()} | {schema.frame_mask(k): v for k, v in masks.items()}
        arrays |= {schema.frame_tokens(k): v for k, v in tokens.items()}
        if keyframes is not None:
            arrays[KEYFRAMES] = keyframes
        return arrays, failures


def batch_frames(
    batch: list[tuple[int, DecodedVideo]], geometry: int, num_frames: int, blank_padding: bool, differences: bool = False
) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """The frames of a batch of videos at one geometry, the valid mask (None: all valid) and each
    video's slot count: its decoded frames, or every slot with the padding blank (``blank_padding``);
    with ``differences``, each video's signed frame differences (a motion encoder's input)."""
    if not blank_padding:
        videos = [signed_differences(video.frames[geometry]) if differences else video.frames[geometry] for _, video in batch]
        return np.concatenate(videos), None, lambda video: video.num_valid
    first = batch[0][1].frames[geometry]
    frames = np.zeros((len(batch) * num_frames, *first.shape[1:]), first.dtype)
    valid = np.zeros(len(batch) * num_frames, bool)
    for i, (_, video) in enumerate(batch):
        k = video.num_valid
        frames[i * num_frames : i * num_frames + k] = video.frames[geometry][:k]
        valid[i * num_frames : i * num_frames + k] = True
    return frames, valid, lambda video: num_frames
