"""Decode sampled frames in worker processes: decord first, PyAV as the fallback.

A worker opens a video (a file, or a folder of JPEG/PNG frames), samples frame indices (``sampling``), decodes only those frames
and applies the geometric part of each frame encoder's own preprocessing (resize,
centre crop) so that the main process receives small uint8 arrays. The tensor part of
the preprocessing (scale to [0, 1], mean/std) is done on the encoder's device.

``DecodePool`` keeps a bounded number of videos in flight, so decoding overlaps
encoding. Workers hand their frames back through shared memory (a pipe carries only the
block's name), since pickling megabytes per video through one pipe capped the whole pool
at a few hundred MB/s; a video that raises, crashes its worker or exceeds the timeout under decord is
retried with PyAV, and a video that fails both becomes a recorded failure. A frame
folder is read by the ``frames`` backend alone (PIL), at the frame rate its manifest row
gives.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import secrets
from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from teachcache.cache.errors import ConfigError
from teachcache.cache.lock import pid_alive
from teachcache.cache.registry import Registry
from teachcache.stages.extract.sampling import sample_indices


@dataclass(frozen=True)
class GeometrySpec:
    """The geometric part of a frame encoder's preprocessing (open_clip's own transform)."""

    image_size: int
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"


@dataclass(frozen=True)
class DecodeRequest:
    """One video to decode: where it is, how to sample it, which geometries to produce."""

    path: str
    sampler: str
    num_frames: int
    window: tuple[float, float] | None
    geometries: tuple[GeometrySpec, ...]
    fps: float | None = None  # frame folders: their frame rate (None: DEFAULT_FOLDER_FPS)
    keyframe_size: int = 0  # side of the keyframe to pick from the largest geometry (0 = none)


@dataclass
class DecodedVideo:
    """Sampled frames of one video (one uint8 [n, S, S, 3] array per geometry), or an error."""

    frames: list[np.ndarray] = field(default_factory=list)
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    frame_count: int = 0
    fps: float = 0.0
    backend: str = ""
    error: str | None = None
    keyframe: np.ndarray | None = None  # uint8 [k, k, 3] when the request asked for one

    @property
    def num_valid(self) -> int:
        return 0 if self.error else len(self.indices)


class DecodeError(RuntimeError):
    """A video could not be decoded; the message says why."""


RESIZE_MODES = ("shortest", "squash")


def _resample(name: str) -> int:
    from PIL import Image

    return int(Image.Resampling.BILINEAR if name == "bilinear" else Image.Resampling.BICUBIC)


def _resized_size(width: int, height: int, spec: GeometrySpec) -> tuple[int, int]:
    """Output (width, height) of torchvision's Resize(size) on a PIL image."""
    size = spec.image_size
    if spec.resize_mode == "squash":
        return size, size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def apply_geometry(frames: np.ndarray, spec: GeometrySpec) -> np.ndarray:
    """Resize and centre-crop RGB uint8 frames [n, H, W, 3] exactly as open_clip's eval
    transform does (torchvision Resize + CenterCrop on PIL images), without importing torch."""
    from PIL import Image

    if spec.resize_mode not in RESIZE_MODES:
        raise ConfigError(f"resize_mode {spec.resize_mode!r} is not supported; one of {RESIZE_MODES}")
    size = spec.image_size
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame).convert("RGB")
        new_w, new_h = _resized_size(image.width, image.height, spec)
        if (new_w, new_h) != image.size:
            image = image.resize((new_w, new_h), _resample(spec.interpolation))
        top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)
        out[i] = np.asarray(image.crop((left, top, left + size, top + size)))
    return out


def file_problem(path: str) -> str | None:
    """Why no decoder can read this path (missing, empty), or None."""
    if not os.path.exists(path):
        return "missing file"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    return None


def _check_file(path: str) -> None:
    problem = file_problem(path)
    if problem:
        raise DecodeError(problem)


def _short(message: str, limit: int = 200) -> str:
    """The first line of a library's message, cut at a word boundary with an ellipsis."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def decode_with_decord(request: DecodeRequest) -> DecodedVideo:
    """Decode the sampled frames with decord (seeks to each index)."""
    _check_file(request.path)
    import decord

    try:
        reader = decord.VideoReader(request.path, ctx=decord.cpu(0), num_threads=1)
        frame_count, fps = len(reader), float(reader.get_avg_fps())
        indices = sample_indices(request.sampler, frame_count, fps, request.num_frames, request.window)
        if len(indices) == 0:
            raise DecodeError("no frames in the video (or in its window)")
        raw = reader.get_batch(list(indices)).asnumpy()
    except decord.DECORDError as exc:
        raise DecodeError(f"decord: {_short(str(exc))}") from exc
    return DecodedVideo([apply_geometry(raw, g) for g in request.geometries], indices, frame_count, fps, "decord")


def _pyav_count_and_rate(path: str) -> tuple[int, float]:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise DecodeError("no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0.0)
        count = sum(1 for _ in container.decode(stream))
    return count, rate


def decode_with_pyav(request: DecodeRequest) -> DecodedVideo:
    """Decode the sampled frames with PyAV: one pass to count frames, one to keep them."""
    _check_file(request.path)
    import av

    try:
        frame_count, fps = _pyav_count_and_rate(request.path)
        indices = sample_indices(request.sampler, frame_count, fps, request.num_frames, request.window)
        if len(indices) == 0:
            raise DecodeError("no decodable frames in the video (or in its window)")
        wanted: dict[int, list[int]] = {}
        for slot, idx in enumerate(indices):
            wanted.setdefault(int(idx), []).append(slot)
        raw: list[np.ndarray | None] = [None] * len(indices)
        with av.open(request.path) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in wanted:
                    rgb = frame.to_ndarray(format="rgb24")
                    for slot in wanted[i]:
                        raw[slot] = rgb
                if i >= indices[-1] and all(r is not None for r in raw):
                    break
    except av.error.FFmpegError as exc:
        raise DecodeError(f"pyav: {exc}") from exc
    kept = [k for k, r in enumerate(raw) if r is not None]
    if not kept:
        raise DecodeError("pyav decoded none of the sampled frames")
    frames = np.stack([r for r in raw if r is not None])
    return DecodedVideo([apply_geometry(frames, g) for g in request.geometries], indices[kept], frame_count, fps, "pyav")


FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_FOLDER_FPS = 1.0  # a frame folder whose manifest row gives no rate: one frame per second


def _natural_key(name: str) -> list:
    """Sort key that puts frame_2.jpg before frame_10.jpg."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_files(folder: str) -> list[str]:
    """The image files of a frame folder, in natural order."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(FRAME_SUFFIXES) and not n.startswith(".")]
    return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def decode_frame_folder(request: DecodeRequest) -> DecodedVideo:
    """Read the sampled frames of a folder of images (pre-extracted frames)."""
    from PIL import Image, UnidentifiedImageError

    files = frame_files(request.path)
    if not files:
        raise DecodeError(f"frame folder holds no {'/'.join(FRAME_SUFFIXES)} files")
    fps = request.fps or DEFAULT_FOLDER_FPS
    indices = sample_indices(request.sampler, len(files), fps, request.num_frames, request.window)
    if len(indices) == 0:
        raise DecodeError("no frames in the folder's window")
    raw = []
    for i in indices:
        try:
            with Image.open(files[i]) as image:
                raw.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as exc:
            raise DecodeError(f"frame {os.path.basename(files[i])}: {exc}") from exc
    frames = [np.concatenate([apply_geometry(r[None], g) for r in raw]) for g in request.geometries]  # frames may differ in size
    return DecodedVideo(frames, indices, len(files), fps, "frames")


DECODERS: Registry[Any] = Registry("decode backend")
DECODERS.add("decord", decode_with_decord, "decord, seeking to each sampled frame")
DECODERS.add("pyav", decode_with_pyav, "PyAV (FFmpeg), the fallback")
DECODERS.add("frames", decode_frame_folder, "a folder of JPEG/PNG frames (chosen for folders)")


def backends_for(path: str, backends: tuple[str, ...]) -> tuple[str, ...]:
    """The backends to try for one path: a folder is read as frames, a file by the configured decoders."""
    return ("frames",) if os.path.isdir(path) else tuple(b for b in backends if b != "frames")


def keyframe(frames: np.ndarray, size: int) -> np.ndarray:
    """The sampled frame (already square-cropped) with the most contrast, so not a black or
    blank one, resized to ``size``; ties go to the earliest."""
    contrast = frames.reshape(len(frames), -1).std(axis=1)
    return apply_geometry(frames[int(np.argmax(contrast))][None], GeometrySpec(size))[0]


def decode_video(request: DecodeRequest, backend: str) -> DecodedVideo:
    """Run one backend (and pick the keyframe, in the worker, off the main process);
    an expected failure comes back as ``DecodedVideo.error``."""
    try:
        video = DECODERS.get(backend)(request)
        if request.keyframe_size:
            largest = max(range(len(request.geometries)), key=lambda g: request.geometries[g].image_size)
            video.keyframe = keyframe(video.frames[largest], request.keyframe_size)
        return video
    except DecodeError as exc:
        return DecodedVideo(error=str(exc), backend=backend)
    except Exception as exc:
        return DecodedVideo(error=f"{backend}: {type(exc).__name__}: {_short(str(exc))}", backend=backend)


def decode_with_fallback(request: DecodeRequest, backends: tuple[str, ...] = ("decord", "pyav")) -> DecodedVideo:
    """In-process decode: try each backend in turn, keep every error in the message."""
    problem = file_problem(request.path)
    if problem:  # no decoder can help: one reason, no fallback
        return DecodedVideo(error=problem, backend="")
    errors = []
    backends = backends_for(request.path, backends)
    for backend in backends:
        result = decode_video(request, backend)
        if result.error is None:
            return result
        errors.append(result.error)
    return DecodedVideo(error="; ".join(errors), backend=backends[-1])


@dataclass
class SharedFrames:
    """A worker's decoded video whose frame arrays wait in shared-memory blocks."""

    video: DecodedVideo  # every field but the frames
    blocks: list[tuple[str, tuple[int, ...]]]  # (block name, uint8 array shape) per geometry

    def take(self) -> DecodedVideo:
        """Copy the frames out and free the blocks (the receiving side owns them). Every
        block is freed even when one is missing; then OSError."""
        frames, lost = [], None
        for name, shape in self.blocks:
            try:
                block = shared_memory.SharedMemory(name=name)
            except OSError as exc:
                lost = exc
                continue
            try:
                frames.append(np.ndarray(shape, np.uint8, buffer=block.buf).copy())
            finally:
                block.close()
                block.unlink()
        if lost is not None:
            raise lost
        self.video.frames = frames
        return self.video


SHM_DIR = "/dev/shm"
SHM_RESERVE_ENV = "TEACHCACHE_SHM_RESERVE_MB"  # free shared memory to leave alone (default 256 MB)


def shared_memory_room(nbytes: int) -> bool:
    """Whether ``nbytes`` fit in shared memory with the reserve left free. A full tmpfs
    kills the writer (SIGBUS) rather than raising, so frames go through the pipe instead
    when room is short: Docker's default /dev/shm is 64 MB."""
    try:
        stat = os.statvfs(SHM_DIR)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize >= nbytes + shared_memory_reserve()


def shared_memory_reserve() -> float:
    """Bytes of /dev/shm to leave free (``TEACHCACHE_SHM_RESERVE_MB``, default 256)."""
    raw = os.environ.get(SHM_RESERVE_ENV, "256")
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise ConfigError(f"{SHM_RESERVE_ENV}={raw!r}: give the megabytes of /dev/shm to leave free, a number >= 0")
    return mb * 2**20


def decode_to_shared(request: DecodeRequest, backend: str, prefix: str) -> DecodedVideo | SharedFrames:
    """``decode_video`` for a worker process: the frames go back through shared memory
    (blocks named ``prefix...``) where there is room, else (slower) pickled through the pipe."""
    video = decode_video(request, backend)
    if video.error is not None or not video.frames or not shared_memory_room(sum(f.nbytes for f in video.frames)):
        return video
    blocks = []
    try:
        for frames in video.frames:
            block = shared_memory.SharedMemory(name=f"{prefix}{secrets.token_hex(4)}", create=True, size=max(1, frames.nbytes))
            np.ndarray(frames.shape, np.uint8, buffer=block.buf)[...] = frames
            blocks.append((block.name, frames.shape))
            block.close()
    except OSError:  # no shared memory after all: free what was made, use the pipe
        SharedFrames(DecodedVideo(), blocks).take()
        return video
    video.frames = []
    return SharedFrames(video, blocks)


ORPHAN_BLOCK = re.compile(r"^tc(\d+)_")  # a pool's blocks carry its owner's pid: tc<pid>_<pool>_<block>
PYTHON_SEMAPHORE = "sem.mp-"  # multiprocessing's named semaphores (the pool's locks)


def _mapped_shm_names() -> set[str] | None:
    """Names under /dev/shm that some process has mapped (from /proc/*/maps), or None without /proc."""
    if not os.path.isdir("/proc/self"):
        return None
    mapped: set[str] = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as maps:
            mapped.update(os.path.basename(line.split()[-1]) for line in maps if f"{SHM_DIR}/" in line)
    return mapped


def sweep_orphans() -> int:
    """Free what decode pools of runs killed with their workers (kill -9) left in /dev/shm: frame
    blocks whose owner process is gone, and multiprocessing semaphores no process maps. Returns
    how many were freed."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    semaphores = [n for n in names if n.startswith(PYTHON_SEMAPHORE)]
    mapped = _mapped_shm_names() if semaphores else set()
    freed = 0
    for name in names:
        match = ORPHAN_BLOCK.match(name)
        orphan_block = match is not None and not pid_alive(int(match.group(1)))
        orphan_semaphore = name in semaphores and mapped is not None and name not in mapped
        if orphan_block or orphan_semaphore:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SHM_DIR, name))
                freed += 1
    return freed


class DecodePool:
    """Decode videos in worker processes with a per-video timeout, yielding results in order.

    ``workers=0`` decodes in this process (no timeout), which tests and debuggers like.
    """

    def __init__(self, workers: int, timeout_s: float, backends: tuple[str, ...] = ("decord", "pyav"), lookahead: int = 0):
        for b in backends:
            DECODERS.check(b, "extract.decode.backends")
        self.workers, self.timeout_s, self.backends = workers, timeout_s, backends
        self.lookahead = lookahead or max(4, 8 * max(1, workers))
        self.block_prefix = f"tc{os.getpid()}_{secrets.token_hex(3)}_"  # this pool's shared-memory blocks (macOS: names <= 31)
        if workers > 0:
            shared_memory_reserve()  # a bad setting is refused here, not in every worker
        self._pool: Any = None  # pebble's ProcessPool while open

    def __enter__(self) -> DecodePool:
        if self.workers > 0:
            from pebble import ProcessPool

            sweep_orphans()  # what a run killed with its workers left in /dev/shm
            self._pool = ProcessPool(max_workers=self.workers, context=multiprocessing.get_context("spawn"))
            self._pool.schedule(os.getpid)  # start the workers now: they boot while the caller loads its encoders
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.stop()  # kill the workers and anything still decoding (close() leaked blocks when an error came mid-stream)
            self._pool.join()
            self._pool = None
            self._sweep_blocks()

    def _sweep_blocks(self) -> None:
        """Free the blocks no one will read: made by workers killed (timeout, stop) after
        writing them, or results dropped after their timeout."""
        try:
            names = [n for n in os.listdir(SHM_DIR) if n.startswith(self.block_prefix)]
        except OSError:
            return
        for name in names:
            with contextlib.suppress(OSError):
                SharedFrames(DecodedVideo(), [(name, (0,))]).take()

    def _schedule(self, request: DecodeRequest, backend: str):
        return self._pool.schedule(decode_to_shared, args=(request, backend, self.block_prefix), timeout=self.timeout_s)

    def _resolve(self, request: DecodeRequest, future, backends: tuple[str, ...], errors: list[str]) -> DecodedVideo:
        """Wait for one video, falling back to the next of its backends on any failure."""
        from pebble import ProcessExpired

        backend = backends[0]
        try:
            result = future.result()
        except FutureTimeout:
            result = DecodedVideo(error=f"{backend}: timed out after {self.timeout_s:g} s", backend=backend)
        except ProcessExpired as exc:
            result = DecodedVideo(error=f"{backend}: worker died (exit code {exc.exitcode})", backend=backend)
        if isinstance(result, SharedFrames):
            try:
                result = result.take()
            except OSError as exc:  # a block removed under us (someone cleaned /dev/shm): retry or record
                result = DecodedVideo(error=f"{backend}: frames lost in shared memory ({exc})", backend=backend)
        if result.error is None:
            return result
        errors.append(result.error)
        if len(backends) > 1:
            return self._resolve(request, self._schedule(request, backends[1]), backends[1:], errors)
        return DecodedVideo(error="; ".join(errors), backend=backend)

    def imap(self, requests: Iterable[DecodeRequest]) -> Generator[DecodedVideo, None, None]:
        """Decode in order with at most ``lookahead`` videos in flight."""
        if self._pool is None:
            for request in requests:
                yield decode_with_fallback(request, self.backends)
            return
        pending: deque = deque()
        try:
            for request in requests:
                problem = file_problem(request.path)
                if problem:
                    pending.append((request, (), DecodedVideo(error=problem)))
                    continue
                backends = backends_for(request.path, self.backends)
                pending.append((request, backends, self._schedule(request, backends[0])))
                if len(pending) >= self.lookahead:
                    yield self._result(*pending.popleft())
            while pending:
                yield self._result(*pending.popleft())
        finally:  # the consumer stopped early: free the frames already waiting in shared memory
            for _, _, future in pending:
                self._discard(future)

    def _discard(self, future) -> None:
        """Free a video nobody will read. The wait is bounded: a stopped pool never settles
        its futures, and ``__exit__`` sweeps whatever is left."""
        if isinstance(future, DecodedVideo) or self._pool is None or (not future.running() and future.cancel()):
            return  # cancelling a running task would kill its worker, maybe holding a block
        try:
            result = future.result(timeout=self.timeout_s)
            if isinstance(result, SharedFrames):
                result.take()
        except Exception:
            return

    def _result(self, request: DecodeRequest, backends: tuple[str, ...], future) -> DecodedVideo:
        return future if isinstance(future, DecodedVideo) else self._resolve(request, future, backends, [])
