"""Which frames of a video stage one encodes (docs/method.md section 1).

Both samplers are pure functions of (frame count, fps, F, window): they return the
sampled frame indices, at most F of them. The caller pads to F and masks the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from teachcache.cache.registry import Registry


def _window_seconds(window: tuple[float, float] | None, total_seconds: int) -> tuple[int, int]:
    """CLIP4Clip's window handling: integer seconds, clipped to the video, start < end."""
    if window is None:
        return 0, total_seconds
    start, end = int(window[0]), int(window[1])
    start = max(0, start)
    if start > end:
        start, end = end, start
    elif start == end:
        end = start + 1
    return start, min(end, total_seconds)


def clip4clip_indices(frame_count: int, fps: float, num_frames: int, window: tuple[float, float] | None = None) -> np.ndarray:
    """CLIP4Clip sampling: the first frame of every second (fps truncated to an integer,
    seconds ``start..end`` inclusive, as CLIP4Clip iterates them), reduced to
    ``num_frames`` with ``linspace(0, n-1, F).astype(int)``."""
    if frame_count <= 0:
        return np.zeros(0, dtype=np.int64)
    step = max(1, int(fps))
    total_seconds = (frame_count + step - 1) // step
    start, end = _window_seconds(window, total_seconds)
    candidates = np.arange(start, end + 1, dtype=np.int64) * step
    candidates = candidates[candidates < frame_count]
    if len(candidates) > num_frames:
        candidates = candidates[np.linspace(0, len(candidates) - 1, num=num_frames).astype(int)]
    return candidates


def uniform_indices(frame_count: int, fps: float, num_frames: int, window: tuple[float, float] | None = None) -> np.ndarray:
    """X-Pool sampling: the middle frame of ``min(F, n)`` equal intervals over the ``n``
    decoded frames (of the window, if given). X-Pool repeats the last frame of a short
    video; here, as for clip4clip, the caller pads and masks instead."""
    first, stop = 0, frame_count
    if window is not None:
        rate = max(fps, 1e-6)
        first = max(0, int(window[0] * rate))
        stop = min(frame_count, int(np.ceil(window[1] * rate)))
    if stop <= first:
        return np.zeros(0, dtype=np.int64)
    count = min(num_frames, stop - first)
    bounds = np.linspace(first, stop, num=count + 1).astype(np.int64)
    return (bounds[:-1] + bounds[1:] - 1) // 2


SAMPLERS: Registry[Any] = Registry("sampler")
SAMPLERS.add("clip4clip", clip4clip_indices, "CLIP4Clip: the first frame of each second, then linspace")
SAMPLERS.add("uniform", uniform_indices, "X-Pool: the middle frame of F equal intervals")


def sample_indices(sampler: str, frame_count: int, fps: float, num_frames: int, window: tuple[float, float] | None = None) -> np.ndarray:
    """Dispatch to the named sampler (``SAMPLERS``)."""
    indices: np.ndarray = SAMPLERS.get(sampler)(frame_count, fps, num_frames, window)
    return indices
