"""Stage one: decode once, encode once, score teachers once, write the store.

The run checks the config, opens (or resumes, or creates) the store under its writer lock,
then runs the phases in order (``phases/``: text, frames, teachers, denoising), each cut
into shards written whole and marked done; a re-run with the same config skips finished
shards. Under torchrun each rank owns some shards (``scheduler.py``); rank 0 creates the
store, fits the teachers' heads, writes the denoising ranks and finalises once every
rank's markers are there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from teachcache.cache.errors import ConfigError, TeachcacheError
from teachcache.cache.fingerprint import fingerprint
from teachcache.cache.location import Location
from teachcache.cache.lock import LOCK_FILE
from teachcache.cache.manifest import Manifest, read_manifest
from teachcache.cache.store import ArraySpec, Store, StoreError
from teachcache.stages.common.device import autocast_dtype, resolve_device
from teachcache.stages.common.distributed import RankInfo
from teachcache.stages.extract.components import store_components, text_spec
from teachcache.stages.extract.config import ExtractConfig
from teachcache.stages.extract.encoders import FRAME_ENCODERS, TEXT_ENCODERS
from teachcache.stages.extract.phases import PHASES, PhaseContext
from teachcache.stages.extract.phases.base import Encoders
from teachcache.stages.extract.scheduler import ShardScheduler
from teachcache.stages.teachers.heads import teacher_class


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
            return f"extract: nothing to do, all {self.shards_skipped} shards already done ({self.videos} videos, {self.failed} failed, {self.captions} captions) -> {self.store}"
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.phase_seconds.items())
        return (
            f"extract: {self.videos} videos ({self.failed} failed), {self.captions} captions in "
            f"{self.seconds:.1f} s ({self.videos_per_s:.1f} videos/s; {phases}); "
            f"{self.shards_done} shards written, {self.shards_skipped} already done -> {self.store}"
        )


class ExtractionFailures(TeachcacheError, RuntimeError):
    """Raised in strict mode when any video failed."""


def validate_config(cfg: ExtractConfig) -> None:
    """Refuse an inconsistent config before any work, naming the bad field."""
    if cfg.sampling.num_frames < 1:
        raise ConfigError("extract.sampling.num_frames must be >= 1")
    if cfg.decode.workers < 0 or cfg.decode.timeout_s <= 0:
        raise ConfigError("extract.decode.workers must be >= 0 and extract.decode.timeout_s > 0")
    if not cfg.frame_encoders:
        raise ConfigError("extract.frame_encoders: at least one frame encoder is needed")
    for name, te in cfg.text_encoders.items():
        kind = TEXT_ENCODERS.get(te.kind)
        if te.tokens < 0 or (te.tokens and not kind.gives_tokens):
            gives = [k for k in TEXT_ENCODERS if TEXT_ENCODERS.get(k).gives_tokens]
            raise ConfigError(f"extract.text_encoders.{name}.tokens = {te.tokens}; word features need tokens >= 1 and a kind in {gives}")
        if te.max_words < 0 or (te.max_words and not kind.cuts_words):
            cuts = [k for k in TEXT_ENCODERS if TEXT_ENCODERS.get(k).cuts_words]
            raise ConfigError(f"extract.text_encoders.{name}.max_words = {te.max_words}; cutting captions needs max_words >= 1 and a kind in {cuts}")
    for t in cfg.teachers.values():
        teacher_class(t).check_config(t, cfg.frame_encoders, cfg.text_encoders)
    unknown = sorted(set(cfg.denoise_teachers) - set(cfg.teachers))
    if unknown:
        raise ConfigError(f"extract.denoise_teachers names {unknown}, not among the teachers {list(cfg.teachers)}")


def ordered_captions(manifest: Manifest) -> pa.Table:
    """Captions sorted (stably) by their video's row, with ``video_index``: the store's row order,
    so the captions of a video shard are contiguous."""
    index = {vid: i for i, vid in enumerate(manifest.video_ids)}
    video_index = np.array([index[v] for v in manifest.captions.column("video_id").to_pylist()], dtype=np.int64)
    order = np.argsort(video_index, kind="stable")
    table = manifest.captions.take(pa.array(order))
    return table.append_column("video_index", pa.array(video_index[order]))


class Extractor:
    """Runs stage one for one config; encoders are built lazily, only if work remains."""

    def __init__(self, cfg: ExtractConfig, progress: bool = True, rank: RankInfo | None = None):
        validate_config(cfg)
        self.rank = rank or RankInfo.from_env()
        self.cfg = cfg
        self.device = resolve_device(self.rank.device_name(cfg.device))
        self.manifest = read_manifest(cfg.data)
        self.components = store_components(cfg, self.manifest)
        self.fingerprint = fingerprint(self.components)
        self.captions = ordered_captions(self.manifest)
        self.scheduler = ShardScheduler(cfg.store, self.rank, cfg.wait_timeout_s)
        ctx = PhaseContext(
            cfg, self.manifest, self.device, self.rank, self.scheduler, Encoders(cfg, self.device), progress and self.rank.is_main, self.captions.column("video_index").to_numpy()
        )
        self.phases = [phase(ctx) for phase in PHASES]

    def array_specs(self) -> list[ArraySpec]:
        """Every array of the store, phase by phase (builds the encoders to learn their widths)."""
        specs: list[ArraySpec] = []
        for phase in self.phases:
            specs.extend(phase.specs({s.name: s.tail for s in specs}))
        return specs

    def open_store(self, force: bool) -> Store:
        """Resume the store of this fingerprint, or create it (refusing another config's).
        Encoders are built here only when the store must be created."""
        layout = self.cfg.layout
        resuming = not force and Store.exists(self.cfg.store)
        return Store.prepare(
            self.cfg.store,
            backend=layout.backend,
            components=self.components,
            videos=self.manifest.videos,
            captions=self.captions,
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

    def run(self, force: bool = False, strict: bool = False) -> ExtractionSummary:
        """Run (or resume) the whole extraction and finalise the store. The writer lock is
        taken before anything in the store directory is created, resumed or removed."""
        start = time.perf_counter()
        if self.rank.world > 1:
            self._check_multi_rank(force)
        if force or not self._already_complete():
            self.check_models()  # before any folder or lock: an unavailable model leaves nothing behind
        if not self.rank.is_main:
            with self.scheduler.join(self.fingerprint) as store:
                summary = self._run_phases(store)
                summary.failed = len(store.failures())
        else:
            with removed_if_left_empty(self.cfg.store), self.scheduler.lock(), self.open_store(force) as store:
                summary = self._run_phases(store)
                self.scheduler.wait(lambda: not store.missing_work(), "every rank's shards")
                store.finalize()
                summary.failed = store.failures().num_rows
        summary.seconds = time.perf_counter() - start
        if strict and summary.failed:
            raise ExtractionFailures(f"{summary.failed} videos failed (see `teachcache info {summary.store}`); --strict makes that an error")
        return summary

    def check_models(self) -> None:
        """Refuse, without loading them, models whose weights cannot be had (offline: at once)."""
        for f in self.cfg.frame_encoders.values():
            FRAME_ENCODERS.get(f.kind).available(f)
        for t in self.cfg.text_encoders.values():
            TEXT_ENCODERS.get(t.kind).check_available(text_spec(t))

    def _already_complete(self) -> bool:
        """A finished store of this fingerprint: the run has nothing to do (and loads nothing)."""
        if not Store.exists(self.cfg.store):
            return False
        try:
            with Store.open(self.cfg.store, require_complete=False) as store:
                return store.complete and store.fingerprint == self.fingerprint
        except StoreError:
            return False

    def _check_multi_rank(self, force: bool) -> None:
        if self.cfg.layout.backend != "zarr":
            raise ConfigError(f"extract.layout.backend = {self.cfg.layout.backend!r} has a single writer; torchrun needs zarr (one file per shard)")
        if force:
            raise ConfigError("--force under torchrun: rebuild with one process (or delete the store), then run the job")

    def _run_phases(self, store: Store) -> ExtractionSummary:
        summary = ExtractionSummary(str(store.path), store.num_rows("videos"), store.num_rows("captions"), 0, 0.0)
        for phase in self.phases:
            t0 = time.perf_counter()
            result = phase.run(store)
            summary.shards_done += result.done
            summary.shards_skipped += result.skipped
            summary.phase_seconds[phase.name] = time.perf_counter() - t0
        return summary


@contextlib.contextmanager
def removed_if_left_empty(store_path: str) -> Iterator[None]:
    """Remove the store's folder if this run created it and a failure left it with no store in it."""
    location = Location(store_path)
    existed = location.exists()
    try:
        yield
    except BaseException:
        if not existed and not Store.exists(location) and all(name == LOCK_FILE for name in location.names()):
            location.rmtree()
        raise


def run_extraction(cfg: ExtractConfig, force: bool = False, strict: bool = False, progress: bool = True) -> ExtractionSummary:
    """Stage one end to end: returns the summary (its ``line()`` is the closing line)."""
    return Extractor(cfg, progress=progress).run(force=force, strict=strict)
