"""``open_clip_motion``: an open_clip image tower over frame differences, a motion expert.

Each sampled frame is replaced by its signed difference with the previous sampled frame,
``(x_f - x_{f-1}) / 2 + 128`` per pixel (mid-grey where nothing moved; the first frame's
difference is blank), so the leading and trailing edges of a moving object differ and the
direction of motion is visible. The tower is an open_clip model as for ``open_clip``."""

from __future__ import annotations

import numpy as np

from teachcache.stages.extract.encoders.open_clip import FrameEncoder


def signed_differences(frames: np.ndarray) -> np.ndarray:
    """uint8 [k, S, S, 3] frames of one video -> uint8 differences of consecutive frames."""
    previous = np.concatenate([frames[:1], frames[:-1]]).astype(np.int16)
    return ((frames.astype(np.int16) - previous) // 2 + 128).astype(np.uint8)


class MotionFrameEncoder(FrameEncoder):
    """The frames phase hands it each video's frame differences."""

    frame_differences = True
