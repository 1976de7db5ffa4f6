"""Stage one: decode once, encode once, score teachers once, write the store.

Three phases, each cut into shards that are written whole and marked done:
``text/<encoder>`` over caption shards, ``frames`` (every frame encoder and its mask)
over video shards, ``relevance/<teacher>`` over caption shards (teachers are heads over
the cached features, so this phase reads the store, not the videos). A re-run with the
same config skips finished shards.

Under torchrun each rank owns the shards ``shard % world == rank``; rank 0 alone creates
the store (under the writer lock, which the job's other ranks share), fits the teachers'
heads, writes the denoising ranks and finalises once every rank's markers are there.
No collective is used: ranks wait on the store's markers.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from cache.fingerprint import canonical_json, fingerprint
from cache.lock import StoreLocked, WriterLock
from cache.manifest import Manifest, read_manifest
from cache.store import SCHEMA_VERSION, ArraySpec, Store
from stages.device import autocast_dtype, resolve_device
from stages.distributed import RankInfo, wait_for
from stages.extract.config import ExtractConfig, TextEncoderConfig
from stages.extract.decode import DecodePool, DecodeRequest
from stages.data import CAPTION_ROW, VIDEO_ROW, store_splits
from stages.extract.encoders import (
    MAX_WORDS_KINDS,
    TEXT_ENCODERS,
    TOKEN_KINDS,
    FrameEncoder,
    ModelSpec,
    build_text_encoder,
    package_version,
    hash_path,
    open_clip_identity,
    text_weights_identity,
)
from stages.extract.sampling import SAMPLERS
from stages.teachers.base import TeacherHead
from stages.teachers.fit import ensemble_ranks, fit_head, split_for, teacher_metrics
from stages.teachers.registry import build_teacher, load_checkpoint, load_teacher, save_head, teacher_class

PACKAGES = ("torch", "open_clip_torch", "decord", "av", "pillow", "numpy")  # plus each text kind's own
FRAMES_UNIT = "frames"
VIDEO_BATCH = 32  # videos whose frames are encoded together
KEYFRAMES = "keyframes"  # per video: one small uint8 RGB frame (its most contrasted sampled one), for search pages
DENOISE_UNIT = "denoise"
DENOISE_RANK = "denoise/rank"  # per caption: 0-based rank of its own video among the training videos (-1 outside train)
DENOISE_SCORE = "denoise/score"  # per caption: the teacher ensemble's score of its own video (NaN outside train)


@dataclass
class ExtractionSummary:
    """What one stage-one run did, for the closing line and the tests."""

    store: str
    videos: int
    captions: int
    failed: int
    seconds: float
    shards_done: int = 0
    shards_skipped: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def videos_per_s(self) -> float:
        return self.videos / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        if self.shards_done == 0:
            return (
                f"extract: nothing to do, all {self.shards_skipped} shards already done "
                f"({self.videos} videos, {self.failed} failed, {self.captions} captions) -> {self.store}"
            )
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.phase_seconds.items())
        return (
            f"extract: {self.videos} videos ({self.failed} failed), {self.captions} captions in "
            f"{self.seconds:.1f} s ({self.videos_per_s:.1f} videos/s; {phases}); "
            f"{self.shards_done} shards written, {self.shards_skipped} already done -> {self.store}"
        )


class ExtractionFailures(RuntimeError):
    """Raised in strict mode when any video failed."""


def text_spec(t: TextEncoderConfig) -> ModelSpec:
    return ModelSpec(t.model, t.pretrained, t.seed, t.tokenizer, t.output, t.max_words)


def configured_text_encoder(t: TextEncoderConfig, device: torch.device, precision: str):
    """The text encoder a ``[[extract.text_encoders]]`` entry describes (stage one's, and search's for queries)."""
    return build_text_encoder(t.kind, text_spec(t), device, precision, t.batch_size)


def validate_config(cfg: ExtractConfig) -> None:
    """Refuse an inconsistent config before any work, naming the bad field."""
    if cfg.sampling.sampler not in SAMPLERS:
        raise ValueError(f"sampling.sampler = {cfg.sampling.sampler!r}; choose one of {SAMPLERS}")
    if cfg.sampling.num_frames < 1:
        raise ValueError("sampling.num_frames must be >= 1")
    if cfg.decode.workers < 0 or cfg.decode.timeout_s <= 0:
        raise ValueError("decode.workers must be >= 0 and decode.timeout_s > 0")
    for group, items in (("frame_encoders", cfg.frame_encoders), ("text_encoders", cfg.text_encoders), ("teachers", cfg.teachers)):
        names = [i.name for i in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{group}: duplicate names {dupes}")
    if not cfg.frame_encoders:
        raise ValueError("frame_encoders: at least one frame encoder is needed")
    for te in cfg.text_encoders:
        if te.kind not in TEXT_ENCODERS:
            raise ValueError(f"text encoder {te.name!r}: unknown kind {te.kind!r}; choose one of {sorted(TEXT_ENCODERS)}")
    for te in cfg.text_encoders:
        if te.tokens < 0 or (te.tokens and te.kind not in TOKEN_KINDS):
            raise ValueError(f"text encoder {te.name!r}: tokens = {te.tokens}; word features need tokens >= 1 and a kind in {TOKEN_KINDS}")
        if te.max_words < 0 or (te.max_words and te.kind not in MAX_WORDS_KINDS):
            raise ValueError(f"text encoder {te.name!r}: max_words = {te.max_words}; cutting captions needs max_words >= 1 and a kind in {MAX_WORDS_KINDS}")
    frames = {f.name: f for f in cfg.frame_encoders}
    texts = {t.name: t for t in cfg.text_encoders}
    for t in cfg.teachers:
        teacher_class(t).check_config(t, frames, texts)
    unknown = sorted(set(cfg.denoise_teachers) - {t.name for t in cfg.teachers})
    if unknown:
        raise ValueError(f"denoise_teachers names {unknown}, not in [[extract.teachers]] ({[t.name for t in cfg.teachers]})")


def _teacher_identity(t) -> dict:
    """A teacher's config plus the content hash of the files it reads."""
    identity = asdict(t)
    for field_name in ("checkpoint", "scores"):
        path = getattr(t, field_name)
        if path:
            identity[field_name] = {"path": path, "sha256": hash_path(Path(path)) if Path(path).exists() else "missing"}
    return identity


def manifest_digest(manifest: Manifest) -> str:
    """Hash of the manifests' content: a store belongs to one data set."""
    h = hashlib.sha256()
    for table in (manifest.videos, manifest.captions):
        h.update(canonical_json(table.to_pydict()).encode())
    return h.hexdigest()[:16]


def extraction_components(cfg: ExtractConfig, manifest: Manifest) -> dict:
    """Everything that determines the store's content; hashed into its fingerprint.
    Cheap: weight identities come from tags, seeds or file hashes, not from loading models."""
    return {
        "schema_version": SCHEMA_VERSION,
        "manifest": manifest_digest(manifest),
        "sampling": asdict(cfg.sampling),
        "precision": cfg.precision,
        "keyframe_size": cfg.keyframe_size,
        "frame_encoders": [
            {"name": f.name, "model": f.model, **open_clip_identity(ModelSpec(f.model, f.pretrained, f.seed))}
            for f in cfg.frame_encoders
        ],
        "text_encoders": [
            {
                "name": t.name,
                "kind": t.kind,
                "model": t.model,
                "weights": text_weights_identity(t.kind, text_spec(t)),
                "tokenizer": t.tokenizer,
                "output": t.output,
                "tokens": t.tokens,
                "max_words": t.max_words,
            }
            for t in cfg.text_encoders
        ],
        "teachers": [_teacher_identity(t) for t in cfg.teachers],
        "denoise_teachers": list(cfg.denoise_teachers),
        "packages": {p: package_version(p) for p in sorted(set(PACKAGES).union(*(TEXT_ENCODERS[t.kind][1] for t in cfg.text_encoders)))},
    }


def ordered_captions(manifest: Manifest) -> pa.Table:
    """Captions sorted (stably) by their video's row, with ``video_index``: the store's row order,
    so the captions of a video shard are contiguous."""
    index = {vid: i for i, vid in enumerate(manifest.video_ids)}
    video_index = np.array([index[v] for v in manifest.captions.column("video_id").to_pylist()], dtype=np.int64)
    order = np.argsort(video_index, kind="stable")
    table = manifest.captions.take(pa.array(order))
    return table.append_column("video_index", pa.array(video_index[order]))


def store_fingerprint(cfg: ExtractConfig, manifest: Manifest | None = None) -> tuple[str, dict]:
    """The fingerprint (and its components) a store built from this config carries; cheap
    (reads the manifests, loads no model), so consumers can check the store they read."""
    components = extraction_components(cfg, manifest or read_manifest(cfg.data))
    return fingerprint(components), components


def open_extracted_store(cfg: ExtractConfig) -> Store:
    """Open the complete store this config's extraction wrote, refusing any other (stage two's entry)."""
    expected, components = store_fingerprint(cfg)
    return Store.open(cfg.store, expected_fingerprint=expected, expected_components=components)


class Extractor:
    """Runs stage one for one config; encoders are built lazily, only if work remains."""

    def __init__(self, cfg: ExtractConfig, progress: bool = True, rank: RankInfo | None = None):
        validate_config(cfg)
        self.rank = rank or RankInfo.from_env()
        self.cfg, self.progress = cfg, progress and self.rank.is_main
        self.device = resolve_device(self.rank.device_name(cfg.device))
        self.manifest = read_manifest(cfg.data)
        self.fingerprint, self.components = store_fingerprint(cfg, self.manifest)
        self._frame_encoders: dict[str, FrameEncoder] = {}
        self._text_encoders: dict = {}

    # ----- encoders (lazy) ----------------------------------------------------------------
    def frame_encoder(self, name: str) -> FrameEncoder:
        if name not in self._frame_encoders:
            f = next(f for f in self.cfg.frame_encoders if f.name == name)
            self._frame_encoders[name] = FrameEncoder(ModelSpec(f.model, f.pretrained, f.seed), self.device, self.cfg.precision, f.batch_size)
        return self._frame_encoders[name]

    def text_encoder(self, name: str):
        if name not in self._text_encoders:
            t = next(t for t in self.cfg.text_encoders if t.name == name)
            self._text_encoders[name] = configured_text_encoder(t, self.device, self.cfg.precision)
        return self._text_encoders[name]

    def array_specs(self) -> list[ArraySpec]:
        """Every array of the store (builds the encoders to learn their widths)."""
        num_frames = self.cfg.sampling.num_frames
        specs: list[ArraySpec] = []
        for f in self.cfg.frame_encoders:
            dim = self.frame_encoder(f.name).dim
            specs.append(ArraySpec(f"frames/{f.name}", "videos", (num_frames, dim), "float16", FRAMES_UNIT))
            specs.append(ArraySpec(f"frame_mask/{f.name}", "videos", (num_frames,), "bool", FRAMES_UNIT))
        if self.cfg.keyframe_size:
            size = self.cfg.keyframe_size
            specs.append(ArraySpec(KEYFRAMES, "videos", (size, size, 3), "uint8", FRAMES_UNIT))
        for t in self.cfg.text_encoders:
            dim, unit = self.text_encoder(t.name).dim, f"text/{t.name}"
            specs.append(ArraySpec(f"text/{t.name}", "captions", (dim,), "float16", unit))
            if t.tokens:
                specs.append(ArraySpec(f"tokens/{t.name}", "captions", (t.tokens, dim), "float16", unit))
                specs.append(ArraySpec(f"token_mask/{t.name}", "captions", (t.tokens,), "bool", unit))
        dims = {s.name: s.tail for s in specs}
        caption_video = ordered_captions(self.manifest).column("video_index").to_numpy()
        for t in self.cfg.teachers:
            head = build_teacher(t, dims)
            specs.extend(head.input_specs(len(self.manifest.video_ids), caption_video))
            if head.has_relevance:
                specs.append(ArraySpec(f"relevance/{t.name}", "captions", (num_frames,), "float16", f"relevance/{t.name}"))
        if self.cfg.teachers:
            specs.append(ArraySpec(DENOISE_RANK, "captions", (), "int32", DENOISE_UNIT))
            specs.append(ArraySpec(DENOISE_SCORE, "captions", (), "float32", DENOISE_UNIT))
        return specs

    def open_store(self, force: bool) -> Store:
        """Resume the store of this fingerprint, or create it (refusing another config's).
        Encoders are built here only when the store must be created."""
        layout = self.cfg.layout
        resuming = not force and Store.exists(self.cfg.store)
        return Store.prepare(
            self.cfg.store,
            backend=layout.backend,
            fingerprint=self.fingerprint,
            components=self.components,
            videos=self.manifest.videos,
            captions=ordered_captions(self.manifest),
            arrays=[] if resuming else self.array_specs(),
            shard_size=layout.shard_size,
            chunk_rows=layout.chunk_rows,
            codec=layout.codec,
            float_codec=layout.float_codec,
            clevel=layout.clevel,
            force=force,
            config=asdict(self.cfg),
            compute={"device": self.device.type, "autocast": str(autocast_dtype(self.device, self.cfg.precision))},
        )

    # ----- phases -----------------------------------------------------------------------
    def run(self, force: bool = False, strict: bool = False) -> ExtractionSummary:
        """Run (or resume) the whole extraction and finalise the store. The writer lock is
        taken before anything in the store directory is created, resumed or removed."""
        start = time.perf_counter()
        lock = WriterLock(self.cfg.store, job=self.rank.job)
        if self.rank.world > 1:
            self._check_multi_rank(force)
        if not self.rank.is_main:
            with self._join_store(lock) as store:
                summary = self._run_phases(store)
                summary.failed = len(store.failures())
        else:
            with lock, self.open_store(force) as store:
                summary = self._run_phases(store)
                self._wait(lambda: not store.missing_work(), "every rank's shards", lock)
                store.finalize()
                summary.failed = store.failures().num_rows
        summary.seconds = time.perf_counter() - start
        if strict and summary.failed:
            raise ExtractionFailures(f"{summary.failed} videos failed (see `teachcache info {store.path}`); --strict makes that an error")
        return summary

    def _check_multi_rank(self, force: bool) -> None:
        if self.cfg.layout.backend != "zarr":
            raise ValueError(f"extract.layout.backend = {self.cfg.layout.backend!r} has a single writer; torchrun needs zarr (one file per shard)")
        if force:
            raise ValueError("--force under torchrun: rebuild with one process (or delete the store), then run the job")

    def _run_phases(self, store: Store) -> ExtractionSummary:
        summary = ExtractionSummary(str(store.path), store.num_rows("videos"), store.num_rows("captions"), 0, 0.0)
        for name, phase in (("text", self._text_phase), ("frames", self._frames_phase), ("teachers", self._teacher_phase)):
            t0 = time.perf_counter()
            done, skipped = phase(store)
            summary.shards_done += done
            summary.shards_skipped += skipped
            summary.phase_seconds[name] = time.perf_counter() - t0
        return summary

    def _wait(self, ready, what: str, lock: WriterLock) -> None:
        """Wait for work other ranks own (no-op in a one-process run, where it is done)."""
        if self.rank.world > 1:
            wait_for(ready, what, self.cfg.wait_timeout_s, check=lock.check_holder_alive)

    def _join_store(self, lock: WriterLock) -> Store:
        """A rank other than 0: wait for rank 0 to hold the lock and create the store, then open it."""

        def created() -> bool:
            if not lock.held_by_my_job() or not Store.exists(self.cfg.store):
                return False
            try:
                with Store.open(self.cfg.store, require_complete=False) as probe:
                    return bool(probe.attrs.get("arrays") is not None and probe.attrs.get("fingerprint"))
            except Exception:  # noqa: BLE001 - half-created: keep waiting
                return False

        wait_for(created, f"rank 0 to create store {self.cfg.store}", self.cfg.wait_timeout_s)
        store = Store.open(self.cfg.store, require_complete=False, mode="a")
        if store.fingerprint != self.fingerprint:
            store.close()
            raise StoreLocked(f"store {self.cfg.store} has fingerprint {store.fingerprint}, this rank's config gives {self.fingerprint}; every rank must run the same config")
        return store

    def _todo(self, store: Store, unit: str, all_ranks: bool = False) -> tuple[list[tuple[int, int, int]], int]:
        """This rank's unfinished shards of a unit (every rank's with ``all_ranks``), and how many of its shards were done."""
        shards = [s for s in store.shards(store.units[unit]) if all_ranks or self.rank.owns(s[0])]
        todo = [s for s in shards if not store.is_done(unit, s[0])]
        return todo, len(shards) - len(todo)

    def _wait_unit(self, store: Store, unit: str) -> None:
        """Wait until every shard of a unit is done, whichever rank owns it."""
        self._wait(lambda: not self._todo(store, unit, all_ranks=True)[0], f"unit {unit} of the other ranks", WriterLock(self.cfg.store, self.rank.job))

    def _text_phase(self, store: Store) -> tuple[int, int]:
        texts = store.captions().column("text").to_pylist()
        done = skipped = 0
        for t in self.cfg.text_encoders:
            unit = f"text/{t.name}"
            todo, n_skipped = self._todo(store, unit)
            skipped += n_skipped
            for shard, lo, hi in tqdm(todo, desc=f"text {t.name}", unit="shard", disable=not self.progress or not todo):
                store.write(unit, lo, self._encode_texts(t.name, texts[lo:hi]))
                if t.tokens:
                    words, mask = self.text_encoder(t.name).encode_tokens(texts[lo:hi], t.tokens)
                    store.write(f"tokens/{t.name}", lo, self._finite_float16(words, t.name))
                    store.write(f"token_mask/{t.name}", lo, mask)
                store.mark_done(unit, shard)
                done += 1
        return done, skipped

    def _encode_texts(self, name: str, texts: list[str]) -> np.ndarray:
        """Encode each distinct sentence once; refuse non-finite output."""
        unique, inverse = np.unique(np.array(texts, dtype=object), return_inverse=True)
        return self._finite_float16(self.text_encoder(name).encode([str(u) for u in unique])[inverse], name)

    @staticmethod
    def _finite_float16(values: np.ndarray, name: str) -> np.ndarray:
        out = values.astype(np.float16)
        if not np.isfinite(out).all():
            raise FloatingPointError(f"text encoder {name!r} produced NaN/inf (or values beyond float16) for some captions")
        return out

    def _frames_phase(self, store: Store) -> tuple[int, int]:
        todo, skipped = self._todo(store, FRAMES_UNIT)
        if not todo:
            return 0, skipped
        paths = [str(p) for p in self.manifest.video_paths()]
        windows, rates, ids = self.manifest.windows(), self.manifest.frame_rates(), self.manifest.video_ids
        total = sum(hi - lo for _, lo, hi in todo)
        workers = self.cfg.decode.workers
        # in flight: two encoder batches at least, so the workers decode on while a batch encodes
        with DecodePool(workers, self.cfg.decode.timeout_s, tuple(self.cfg.decode.backends), max(2 * VIDEO_BATCH, 8 * workers)) as pool:
            encoders = [self.frame_encoder(f.name) for f in self.cfg.frame_encoders]  # while the workers start
            geometries = tuple(dict.fromkeys(e.geometry for e in encoders))
            bar = tqdm(total=total, desc="frames", unit="video", disable=not self.progress)
            requests = (
                DecodeRequest(paths[i], self.cfg.sampling.sampler, self.cfg.sampling.num_frames, windows[i], geometries, rates[i], self.cfg.keyframe_size)
                for _, lo, hi in todo
                for i in range(lo, hi)
            )
            # one stream over every shard to do (no drain between shards), closed while the pool lives
            with contextlib.closing(pool.imap(requests)) as decoded:
                for shard, lo, hi in todo:
                    arrays, failures = self._encode_shard(encoders, geometries, itertools.islice(decoded, hi - lo), ids[lo:hi], bar)
                    for name, data in arrays.items():
                        store.write(name, lo, data)
                    store.mark_done(FRAMES_UNIT, shard, failures)
            bar.close()
        return len(todo), skipped

    def _encode_shard(self, encoders, geometries, decoded, video_ids, bar) -> tuple[dict[str, np.ndarray], list[dict]]:
        """Encode one shard's videos, batching frames of several videos per forward pass."""
        n, num_frames = len(video_ids), self.cfg.sampling.num_frames
        feats = {e_cfg.name: np.zeros((n, num_frames, enc.dim), np.float16) for e_cfg, enc in zip(self.cfg.frame_encoders, encoders)}
        masks = {e_cfg.name: np.zeros((n, num_frames), bool) for e_cfg in self.cfg.frame_encoders}
        size = self.cfg.keyframe_size
        keyframes = np.zeros((n, size, size, 3), np.uint8) if size else None
        failures: list[dict] = []
        batch: list[tuple[int, object]] = []

        def flush() -> None:
            for e_cfg, enc in zip(self.cfg.frame_encoders, encoders):
                g = geometries.index(enc.geometry)
                frames = np.concatenate([video.frames[g] for _, video in batch])
                out = enc.encode(frames).astype(np.float16)
                pos = 0
                for row, video in batch:
                    k = video.num_valid
                    chunk = out[pos : pos + k]
                    pos += k
                    if not np.isfinite(chunk).all():
                        failures.append({"video_id": video_ids[row], "stage": f"encode:{e_cfg.name}", "reason": "non-finite features (NaN/inf or beyond float16)"})
                        continue
                    feats[e_cfg.name][row, :k] = chunk
                    masks[e_cfg.name][row, :k] = True
            batch.clear()

        for row, video in enumerate(decoded):
            if video.error is not None:
                failures.append({"video_id": video_ids[row], "stage": "decode", "reason": video.error})
            else:
                if keyframes is not None:
                    keyframes[row] = video.keyframe
                batch.append((row, video))
                if len(batch) >= VIDEO_BATCH:
                    flush()
            bar.update(1)
        if batch:
            flush()
        arrays = {f"frames/{k}": v for k, v in feats.items()} | {f"frame_mask/{k}": v for k, v in masks.items()}
        if keyframes is not None:
            arrays[KEYFRAMES] = keyframes
        return arrays, failures

    def _teacher_phase(self, store: Store) -> tuple[int, int]:
        """Per teacher: its inputs (caption banks, user scores), its head (fitted on the
        training split, loaded, or weightless; kept in the store with its own metrics), its
        relevance per caption shard. Then the ensemble's denoising ranks."""
        dims = {a.name: a.tail for a in store.arrays}
        done = skipped = 0
        heads: dict[str, TeacherHead] = {}
        if self.cfg.teachers:  # heads read every text and frame shard, whichever rank wrote it
            for unit in [u for u in store.units if u.startswith("text/") or u == FRAMES_UNIT]:
                self._wait_unit(store, unit)
        for t_cfg in self.cfg.teachers:
            head = build_teacher(t_cfg, dims).to(self.device)
            inputs_unit, head_unit = f"inputs/{t_cfg.name}", f"head/{t_cfg.name}"
            if inputs_unit in store.units:
                if self.rank.is_main:
                    d, s = self._inputs(store, head)
                    done, skipped = done + d, skipped + s
                self._wait_unit(store, inputs_unit)
            if store.is_done(head_unit, 0):
                head, skipped = load_teacher(store, t_cfg.name).to(self.device), skipped + 1
            elif self.rank.is_main:
                save_head(store, head, self._obtain_head(store, head))
                store.mark_done(head_unit, 0)
                done += 1
            else:
                self._wait(lambda: store.is_done(head_unit, 0), f"rank 0 to fit teacher {t_cfg.name!r}", WriterLock(self.cfg.store, self.rank.job))
                head = load_teacher(store, t_cfg.name).to(self.device)
            heads[t_cfg.name] = head
            if head.has_relevance:
                d, s = self._relevance(store, head)
                done, skipped = done + d, skipped + s
        if self.cfg.teachers and self.rank.is_main:
            d, s = self._denoise(store, [heads[n] for n in (self.cfg.denoise_teachers or list(heads))])
            done, skipped = done + d, skipped + s
        return done, skipped

    def _inputs(self, store: Store, head: TeacherHead) -> tuple[int, int]:
        """Arrays stage one prepares for a head (written whole, then every shard marked)."""
        unit = f"inputs/{head.config.name}"
        todo, skipped = self._todo(store, unit, all_ranks=True)
        if todo:
            head.write_inputs(store)
            for shard, _, _ in todo:
                store.mark_done(unit, shard)
        return len(todo), skipped

    def _obtain_head(self, store: Store, head: TeacherHead) -> dict:
        """Fit or load the head's weights; measure it on val and test. Returns its record."""
        splits = store_splits(store)
        val = split_for(store, "val", [head]) if "val" in splits else None
        if head.learns and head.config.checkpoint:
            load_checkpoint(head, head.config.checkpoint)
            record = {"fitted": False, "checkpoint": head.config.checkpoint}
        elif head.learns:
            if "train" not in splits:
                raise ValueError(f"teacher {head.config.name!r} must be fitted but the store has no train split; give it a checkpoint")
            record = fit_head(head, split_for(store, "train", [head]), val, self.device, self.progress)
        else:
            record = {"fitted": False}
        head.eval()
        record["metrics"] = {split: teacher_metrics(head, val if split == "val" else split_for(store, split, [head]), self.device) for split in ("val", "test") if split in splits}
        if self.progress:
            shown = ", ".join(f"{k} t2v R1 {m['t2v']['R1']:.1f}" for k, m in record["metrics"].items())
            print(f"teacher {head.config.name} ({head.kind}): {shown}")
        return record

    @torch.no_grad()
    def _relevance(self, store: Store, head: TeacherHead) -> tuple[int, int]:
        unit = f"relevance/{head.config.name}"
        todo, skipped = self._todo(store, unit)
        video_index = store.captions().column("video_index").to_numpy()
        for shard, lo, hi in tqdm(todo, desc=f"relevance {head.config.name}", unit="shard", disable=not self.progress or not todo):
            text, video = matched_inputs(store, head, lo, hi, video_index, self.device)
            store.write(unit, lo, head.relevance(text, video).float().cpu().numpy().astype(np.float16))
            store.mark_done(unit, shard)
        return len(todo), skipped

    def _denoise(self, store: Store, heads: list[TeacherHead]) -> tuple[int, int]:
        """Rank and score of each training caption's own video under the teachers' mean logits."""
        todo, skipped = self._todo(store, DENOISE_UNIT, all_ranks=True)
        if not todo:
            return 0, skipped
        n = store.num_rows("captions")
        ranks, scores = np.full(n, -1, np.int32), np.full(n, np.nan, np.float32)
        if "train" in store_splits(store):
            train = split_for(store, "train", heads)
            rows = train.caption_arrays[CAPTION_ROW].numpy()
            ranks[rows], scores[rows] = ensemble_ranks(heads, train, self.device)
        store.write(DENOISE_RANK, 0, ranks)
        store.write(DENOISE_SCORE, 0, scores)
        for shard, _, _ in todo:
            store.mark_done(DENOISE_UNIT, shard)
        return len(todo), skipped


def matched_inputs(store: Store, head: TeacherHead, lo: int, hi: int, video_index: np.ndarray, device: torch.device) -> tuple[dict, dict]:
    """Caption rows lo..hi and, row for row, their own videos: the inputs of ``head.relevance``."""
    vids = video_index[lo:hi]
    v0, v1 = int(vids.min()), int(vids.max()) + 1
    text = {k: torch.arange(lo, hi) if k == CAPTION_ROW else torch.from_numpy(store.read(k, slice(lo, hi))) for k in head.text_inputs()}
    video = {k: torch.from_numpy(vids.astype(np.int64)) if k == VIDEO_ROW else torch.from_numpy(store.read(k, slice(v0, v1))[vids - v0]) for k in head.video_inputs()}
    return {k: v.to(device) for k, v in text.items()}, {k: v.to(device) for k, v in video.items()}


def run_extraction(cfg: ExtractConfig, force: bool = False, strict: bool = False, progress: bool = True) -> ExtractionSummary:
    """Stage one end to end: returns the summary (its ``line()`` is the closing line)."""
    return Extractor(cfg, progress=progress).run(force=force, strict=strict)
