"""A generated text-video data set where frame order matters (the demo's default data).

Every video is a dark, low-noise 2-D scene in which 1-3 EVENTS happen one after another,
each in its own contiguous stretch of frames. An event is one object (size, colour,
shape) doing one action: it travels left/right/up/down, appears, disappears, grows,
shrinks or bounces. Only the current event's object is on screen, so "A then B" and
"B then A" are different videos. Captions describe the events in order with synonyms
("crimson box", "cobalt pyramid") and order phrases ("then", "before", "B after A").

Everything is a pure function of ``(SynthConfig, video index)``: each video draws from
its own numpy Generators seeded with ``[seed, index, purpose]``, so parallel rendering
is deterministic. Splits are positional: the first ``n_train`` videos are train, the
next ``n_val`` val, the last ``n_test`` test (all drawn from the same distribution).
Videos are H.264 (libx264, yuv420p, single-threaded encoder, fixed options) MP4 files.
x264's macroblock tree is off (``mbtree=0``): its AVX-512 kernel reads past the end of a
row whose width is not a multiple of 8 macroblocks (64-px frames have 4), so with it on the
bytes depended on leftover heap memory (190 of the demo's 1,350 files differed between two
runs); with it off, the same seed gives the same bytes on any x86-64 CPU from SSSE3 to AVX-512.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from teachcache.cache.errors import ConfigError
from teachcache.cache.manifest import Manifest, write_manifest
from teachcache.stages.common.options import opt

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 255),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 210),
    "orange": (255, 140, 20),
    "white": (240, 240, 240),
    "cyan": (40, 220, 230),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "lime"),
    "blue": ("blue", "cobalt", "azure"),
    "yellow": ("yellow", "golden", "lemon"),
    "purple": ("purple", "violet", "lilac"),
    "orange": ("orange", "tangerine", "amber"),
    "white": ("white", "snowy", "ivory"),
    "cyan": ("cyan", "turquoise", "aqua"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "ball", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid", "wedge"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "cross": ("cross", "plus sign", "plus"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little"),
    "big": ("big", "large", "huge"),
}
# action -> (present tense, gerund) phrasings
ACTION_WORDS: dict[str, tuple[tuple[str, str], ...]] = {
    "move_left": (("moves left", "moving left"), ("slides left", "sliding left"), ("travels left", "travelling left"), ("drifts to the left", "drifting to the left")),
    "move_right": (("moves right", "moving right"), ("slides right", "sliding right"), ("travels right", "travelling right"), ("drifts to the right", "drifting to the right")),
    "move_up": (("moves up", "moving up"), ("rises", "rising"), ("floats upward", "floating upward"), ("climbs", "climbing")),
    "move_down": (("moves down", "moving down"), ("falls", "falling"), ("drops", "dropping"), ("sinks", "sinking")),
    "appear": (("appears", "appearing"), ("fades in", "fading in"), ("pops up", "popping up"), ("shows up", "showing up")),
    "disappear": (("disappears", "disappearing"), ("fades out", "fading out"), ("vanishes", "vanishing")),
    "grow": (("grows", "growing"), ("gets bigger", "getting bigger"), ("expands", "expanding"), ("swells", "swelling")),
    "shrink": (("shrinks", "shrinking"), ("gets smaller", "getting smaller"), ("contracts", "contracting")),
    "bounce": (("bounces", "bouncing"), ("hops", "hopping"), ("jumps up and down", "jumping up and down")),
}
COLOURS, SHAPES, ACTIONS = tuple(PALETTE), tuple(SHAPE_WORDS), tuple(ACTION_WORDS)

# Caption templates: c<i> is event i as a clause ("a red box falls"), g<i> as a gerund
# phrase ("a red box falling"). "{c2} after {c1}" is the reversed order form.
TEMPLATES: dict[int, tuple[str, ...]] = {
    1: ("{c1}", "{c1}", "we see {g1}", "{c1} on a dark background", "a clip where {c1}", "{c1} on a black screen"),
    2: (
        "{c1}, then {c2}",
        "{c1} and then {c2}",
        "first {c1}, then {c2}",
        "{c1} before {c2}",
        "{c1}; after that, {c2}",
        "{c1}, followed by {g2}",
        "{c2} after {c1}",
        "after {c1}, {c2}",
    ),
    3: (
        "{c1}, then {c2}, then {c3}",
        "first {c1}, then {c2}, and finally {c3}",
        "{c1} before {c2}; after that, {c3}",
        "{c1}, followed by {g2} and then {g3}",
        "{c2} after {c1}, then {c3}",
        "{c1}; after that, {c2}, and then {c3}",
    ),
}

BACKGROUND_LEVEL = 14.0  # mean background brightness (of 255)
BACKGROUND_NOISE_STD = 3.0  # per-pixel grey Gaussian noise (of 255), fresh every frame
SMALL_HALF_SIZES = (8, 10)  # half-size range in px at 64x64 for "small" objects
BIG_HALF_SIZES = (12, 14)  # ... and for "big" objects
GROW_STEP = 6  # grow/shrink change the half-size by this many px (at 64x64)
MIN_EVENT_SECONDS = 2  # every event lasts at least this long (when the video allows)
PARTIAL_CAPTION_PROB = 0.25  # chance that the last caption names only the first event
EVENT_COUNT_WEIGHTS = (0.2, 0.45, 0.35)  # chance of 1, 2, 3 events
_PLAN, _PIXELS, _CAPTIONS = 0, 1, 2  # purposes of the per-video random generators


@dataclass
class SynthConfig:
    """What to generate; every field has a safe default."""

    n_train: int = opt(900, "number of training videos")
    n_val: int = opt(150, "number of validation videos")
    n_test: int = opt(300, "number of test videos")
    captions_per_video: int = opt(4, "captions written for every video")
    size: int = opt(64, "frame width = height in pixels (even)")
    fps: int = opt(2, "frames per second of the written mp4")
    min_seconds: int = opt(8, "video length is drawn uniformly in [min_seconds, max_seconds]")
    max_seconds: int = opt(14, "longest video length in seconds")
    seed: int = opt(0, "everything (plans, pixels, captions) is a function of this seed")
    workers: int = opt(2, "processes used to render/write videos")

    @property
    def n_videos(self) -> int:
        return self.n_train + self.n_val + self.n_test


@dataclass(frozen=True)
class Event:
    """One object doing one action during frames [start, stop)."""

    colour: str
    shape: str
    size: str  # "small" or "big": the object's size when the event starts
    action: str
    start: int
    stop: int
    x0: float  # centre and half-size (px) at the first frame ...
    y0: float
    h0: float
    x1: float  # ... and at the last frame of the event
    y1: float
    h1: float


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render and caption one video."""

    index: int
    video_id: str
    split: str
    n_frames: int
    events: tuple[Event, ...]


def check_config(config: SynthConfig) -> None:
    """Raise ValueError naming the first bad field of ``config``."""
    for name in ("n_train", "n_val", "n_test", "seed"):
        if getattr(config, name) < 0:
            raise ConfigError(f"SynthConfig.{name} must be >= 0, got {getattr(config, name)}")
    for name in ("captions_per_video", "fps", "min_seconds", "workers"):
        if getattr(config, name) < 1:
            raise ConfigError(f"SynthConfig.{name} must be >= 1, got {getattr(config, name)}")
    if config.n_videos == 0:
        raise ConfigError("SynthConfig asks for no videos: n_train + n_val + n_test must be > 0")
    if config.size % 2 or config.size < 16:
        raise ConfigError(f"SynthConfig.size must be even and >= 16 (H.264 yuv420p), got {config.size}")
    if config.min_seconds > config.max_seconds:
        raise ConfigError(f"SynthConfig.min_seconds ({config.min_seconds}) must be <= max_seconds ({config.max_seconds})")


def video_id(index: int) -> str:
    return f"synth{index:05d}"


def split_of(config: SynthConfig, index: int) -> str:
    """Positional split: train first, then val, then test."""
    if index < config.n_train:
        return "train"
    return "val" if index < config.n_train + config.n_val else "test"


def _rng(config: SynthConfig, index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, index, purpose])


def _segment_lengths(rng: np.random.Generator, n_frames: int, n_events: int, min_len: int) -> list[int]:
    """Split ``n_frames`` into ``n_events`` contiguous parts of at least ``min_len`` frames."""
    spare = n_frames - n_events * min_len
    extra = rng.multinomial(spare, [1.0 / n_events] * n_events)
    return [min_len + int(e) for e in extra]


def _half_sizes(rng: np.random.Generator, size_word: str, action: str, scale: float) -> tuple[float, float]:
    low, high = SMALL_HALF_SIZES if size_word == "small" else BIG_HALF_SIZES
    h0 = float(rng.integers(low, high + 1))
    h1 = h0 + GROW_STEP if action == "grow" else h0 - GROW_STEP if action == "shrink" else h0
    return h0 * scale, h1 * scale


def _track(rng: np.random.Generator, action: str, size: int, margin: float) -> tuple[float, float, float, float]:
    """Start and end centre (x0, y0, x1, y1); moves cross the frame, others stay put."""
    low, high = margin, size - 1 - margin
    x, y = rng.uniform(low, high), rng.uniform(low, high)
    if action == "move_left":
        return high, y, low, y
    if action == "move_right":
        return low, y, high, y
    if action == "move_up":
        return x, high, x, low
    if action == "move_down":
        return x, low, x, high
    if action == "bounce":  # rests on the floor; rendering adds the hops
        return x, high, x, high
    return x, y, x, y


def _plan_event(rng: np.random.Generator, colour: str, start: int, stop: int, size: int) -> Event:
    action = ACTIONS[rng.integers(len(ACTIONS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    size_word = {"grow": "small", "shrink": "big"}.get(action) or ("small", "big")[rng.integers(2)]
    h0, h1 = _half_sizes(rng, size_word, action, size / 64)
    x0, y0, x1, y1 = _track(rng, action, size, max(h0, h1) + 1)
    return Event(colour, shape, size_word, action, start, stop, x0, y0, h0, x1, y1, h1)


def plan_video(config: SynthConfig, index: int) -> VideoPlan:
    """The event plan of video ``index`` (length, events in time order, frame ranges)."""
    rng = _rng(config, index, _PLAN)
    n_frames = int(rng.integers(config.min_seconds, config.max_seconds + 1)) * config.fps
    min_len = min(MIN_EVENT_SECONDS * config.fps, n_frames)
    max_events = max(1, min(3, n_frames // min_len))
    weights = np.array(EVENT_COUNT_WEIGHTS[:max_events]) / sum(EVENT_COUNT_WEIGHTS[:max_events])
    n_events = int(rng.choice(np.arange(1, max_events + 1), p=weights))
    colours = [COLOURS[i] for i in rng.choice(len(COLOURS), n_events, replace=False)]
    events, start = [], 0
    for colour, length in zip(colours, _segment_lengths(rng, n_frames, n_events, min_len)):
        events.append(_plan_event(rng, colour, start, start + length, config.size))
        start += length
    return VideoPlan(index, video_id(index), split_of(config, index), n_frames, tuple(events))


# ---------------------------------------------------------------- rendering


def _shape_distance(shape: str, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """A degree-1 'radius' per pixel: the shape is where the value is <= half-size."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy)
    if shape == "square":
        return np.maximum(ax, ay) / 0.85
    if shape == "diamond":
        return (ax + ay) / 1.2
    if shape == "triangle":  # apex up, base below the centre
        return np.maximum(dy / 0.75, 1.732 * ax - dy)
    if shape == "cross":
        return np.minimum(np.maximum(ax, 3 * ay), np.maximum(3 * ax, ay))
    raise ValueError(f"unknown shape {shape!r}")


def _event_state(event: Event, frame: int, size: int) -> tuple[float, float, float, float]:
    """(x, y, half-size, opacity) of the event's object at ``frame``."""
    t = (frame - event.start) / max(1, event.stop - event.start - 1)
    x = event.x0 + (event.x1 - event.x0) * t
    y = event.y0 + (event.y1 - event.y0) * t
    half = event.h0 + (event.h1 - event.h0) * t
    alpha = 1.0
    if event.action == "appear":
        alpha = min(1.0, t / 0.5)
    elif event.action == "disappear":
        alpha = min(1.0, (1.0 - t) / 0.5)
    elif event.action == "bounce":
        y -= 0.7 * (size - 2 * (half + 1)) * abs(np.sin(2 * np.pi * t))
    return x, y, half, alpha


def _background(rng: np.random.Generator, n_frames: int, size: int) -> np.ndarray:
    """Near-black frames with fresh grey (luma-only) Gaussian noise in every frame."""
    noise = rng.standard_normal((n_frames, size, size, 1), dtype=np.float32)
    grey = noise * np.float32(BACKGROUND_NOISE_STD) + np.float32(BACKGROUND_LEVEL)
    return np.repeat(grey, 3, axis=3)


def render_frames(plan: VideoPlan, config: SynthConfig) -> np.ndarray:
    """The RGB uint8 frames [n_frames, size, size, 3] of one planned video."""
    frames = _background(_rng(config, plan.index, _PIXELS), plan.n_frames, config.size)
    grid = np.arange(config.size, dtype=np.float32)
    for event in plan.events:
        colour = np.array(PALETTE[event.colour], dtype=np.float32)
        for f in range(event.start, event.stop):
            x, y, half, alpha = _event_state(event, f, config.size)
            dist = _shape_distance(event.shape, grid[None, :] - x, grid[:, None] - y)
            cover = (np.clip(half - dist + 0.5, 0.0, 1.0) * alpha)[..., None]
            frames[f] = frames[f] * (1.0 - cover) + colour * cover
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode RGB frames as a deterministic H.264 (yuv420p) MP4 at ``path`` (atomic)."""
    import av

    partial = path.with_name(path.name + ".part")
    with av.open(str(partial), mode="w", format="mp4") as container:
        options = {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}  # mbtree: see the module's docstring
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width = stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 2 * fps
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    os.replace(partial, path)


def _render_job(job: tuple[VideoPlan, SynthConfig, str]) -> str:
    plan, config, path = job
    write_mp4(Path(path), render_frames(plan, config), config.fps)
    return plan.video_id


# ---------------------------------------------------------------- captions

T = TypeVar("T")


def _pick(rng: np.random.Generator, options: tuple[T, ...]) -> T:
    return options[rng.integers(len(options))]


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _event_phrases(rng: np.random.Generator, event: Event) -> tuple[str, str]:
    """(clause, gerund phrase) for one event, with random synonyms."""
    words = [_pick(rng, SIZE_WORDS[event.size])] if rng.random() < 0.8 else []
    words += [_pick(rng, COLOUR_WORDS[event.colour]), _pick(rng, SHAPE_WORDS[event.shape])]
    noun = _with_article(" ".join(words))
    present, gerund = _pick(rng, ACTION_WORDS[event.action])
    return f"{noun} {present}", f"{noun} {gerund}"


def _caption(rng: np.random.Generator, events: tuple[Event, ...]) -> str:
    fields = {}
    for i, event in enumerate(events, start=1):
        fields[f"c{i}"], fields[f"g{i}"] = _event_phrases(rng, event)
    return _pick(rng, TEMPLATES[len(events)]).format(**fields)


def captions_for(plan: VideoPlan, config: SynthConfig) -> list[str]:
    """``captions_per_video`` differently worded captions describing the events in order.

    With 3+ captions and 2+ events, the last caption names only the first event with
    probability ``PARTIAL_CAPTION_PROB``; all others describe every event."""
    rng = _rng(config, plan.index, _CAPTIONS)
    captions: list[str] = []
    for k in range(config.captions_per_video):
        may_be_partial = config.captions_per_video >= 3 and k == config.captions_per_video - 1
        if may_be_partial and len(plan.events) >= 2 and rng.random() < PARTIAL_CAPTION_PROB:
            events = plan.events[:1]
        else:
            events = plan.events
        text = _caption(rng, events)
        for _ in range(20):  # reword until it differs from the earlier captions
            if text not in captions:
                break
            text = _caption(rng, events)
        captions.append(text)
    return captions


# ---------------------------------------------------------------- data set


def _manifest_rows(plans: list[VideoPlan], config: SynthConfig) -> tuple[list[dict], list[dict]]:
    videos, captions = [], []
    for plan in plans:
        videos.append({"video_id": plan.video_id, "path": f"videos/{plan.video_id}.mp4", "split": plan.split, "start": None, "end": None})
        for k, text in enumerate(captions_for(plan, config)):
            captions.append({"caption_id": f"{plan.video_id}#{k}", "video_id": plan.video_id, "text": text, "split": plan.split})
    return videos, captions


def _render_all(jobs: list[tuple[VideoPlan, SynthConfig, str]], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    with tqdm(total=len(jobs), desc="synth", unit="video", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                _render_job(job)
                bar.update()
            return
        # spawn: safe even when the caller already runs threads (torch) or a GPU context
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_job, jobs, chunksize=8):
                bar.update()


def generate(out: str | Path, config: SynthConfig = SynthConfig(), progress: bool = True) -> Manifest:
    """Render the videos under out/videos/<video_id>.mp4 and write the manifests; return the Manifest.

    With ``progress`` a tqdm bar and a one-line summary are printed."""
    check_config(config)
    started = time.perf_counter()
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    plans = [plan_video(config, i) for i in range(config.n_videos)]
    jobs = [(plan, config, str(out / "videos" / f"{plan.video_id}.mp4")) for plan in plans]
    _render_all(jobs, min(config.workers, len(jobs)), progress)
    manifest = write_manifest(out, *_manifest_rows(plans, config))
    if progress:
        print(
            f"synth: {config.n_videos} videos ({config.n_train}/{config.n_val}/{config.n_test}), "
            f"{manifest.captions.num_rows} captions in {time.perf_counter() - started:.1f} s -> {out}"
        )
    return manifest
