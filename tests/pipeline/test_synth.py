"""The generated data set: real, decodable, deterministic MP4s whose frame order matters."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from decord import VideoReader

from teachcache.cache.manifest import read_manifest
from teachcache.pipeline.synth import COLOUR_WORDS, PALETTE, SynthConfig, generate, plan_video

TINY = SynthConfig(n_train=3, n_val=2, n_test=1, captions_per_video=4, seed=7, workers=1)


def decode_pyav(path: Path) -> tuple[np.ndarray, float]:
    """All frames (RGB) and the stream's frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


def dominant_colour(frames: np.ndarray) -> str:
    """Name of the palette colour nearest to the mean of the bright (object) pixels."""
    pixels = frames.reshape(-1, 3).astype(np.float64)
    bright = pixels[pixels.max(axis=1) > 120]
    assert len(bright), "no object visible"
    mean = bright.mean(axis=0)
    return min(PALETTE, key=lambda name: np.linalg.norm(mean - np.array(PALETTE[name])))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth")
    return root, generate(root, TINY, progress=False)


def test_videos_decode_with_pyav(tiny) -> None:
    root, manifest = tiny
    for index, path in enumerate(manifest.video_paths()):
        assert path.is_file() and path.parent == root / "videos"
        frames, fps = decode_pyav(path)
        assert frames.shape == (plan_video(TINY, index).n_frames, TINY.size, TINY.size, 3)
        assert fps == TINY.fps


def test_videos_decode_with_decord(tiny) -> None:
    _, manifest = tiny
    for index, path in enumerate(manifest.video_paths()):
        reader = VideoReader(str(path))
        n_frames = plan_video(TINY, index).n_frames
        assert len(reader) == n_frames
        assert reader.get_avg_fps() == pytest.approx(TINY.fps)
        assert reader[n_frames - 1].shape == (TINY.size, TINY.size, 3)
        assert TINY.min_seconds * TINY.fps <= n_frames <= TINY.max_seconds * TINY.fps


def test_manifest_on_disk_matches_the_returned_one(tiny) -> None:
    root, manifest = tiny
    on_disk = read_manifest(root)
    assert on_disk.videos.equals(manifest.videos) and on_disk.captions.equals(manifest.captions)
    assert manifest.video_ids == [f"synth{i:05d}" for i in range(6)]
    assert manifest.videos.column("path").to_pylist()[0] == "videos/synth00000.mp4"


def test_same_seed_is_deterministic_across_worker_counts(tiny, tmp_path: Path, capsys) -> None:
    _, manifest = tiny
    again = generate(tmp_path, dataclasses.replace(TINY, workers=2), progress=True)
    assert again.videos.drop(["path"]).equals(manifest.videos.drop(["path"]))
    assert again.captions.equals(manifest.captions)
    for first, second in zip(manifest.video_paths(), again.video_paths()):
        assert np.array_equal(decode_pyav(first)[0], decode_pyav(second)[0])
        assert first.read_bytes() == second.read_bytes()
    assert capsys.readouterr().out.strip().startswith("synth: 6 videos (3/2/1), 24 captions in")


def test_other_seed_gives_other_captions(tiny, tmp_path: Path) -> None:
    _, manifest = tiny
    other = generate(tmp_path, dataclasses.replace(TINY, seed=8, n_train=1, n_val=0, n_test=0), progress=False)
    assert other.captions.column("text").to_pylist() != manifest.captions.column("text").to_pylist()[:4]


def test_captions_splits_and_ids(tiny) -> None:
    _, manifest = tiny
    captions = manifest.captions.to_pylist()
    assert len(captions) == 6 * TINY.captions_per_video
    assert len({c["caption_id"] for c in captions}) == len(captions)
    splits = manifest.videos.column("split").to_pylist()
    assert {s: splits.count(s) for s in ("train", "val", "test")} == {"train": 3, "val": 2, "test": 1}
    for index, vid in enumerate(manifest.video_ids):
        texts = [c["text"] for c in captions if c["video_id"] == vid]
        assert len(set(texts)) > 1, texts
        first_colour = plan_video(TINY, index).events[0].colour
        for text in texts:  # every caption names the first event's object's colour
            assert any(word in text.split() for word in COLOUR_WORDS[first_colour]), (text, first_colour)
        assert all(c["split"] == splits[index] for c in captions if c["video_id"] == vid)


def test_frame_order_follows_the_event_plan(tiny) -> None:
    _, manifest = tiny
    multi_event = [i for i in range(6) if len(plan_video(TINY, i).events) >= 2]
    assert multi_event, "the tiny config should contain a video with two or more events"
    for index in multi_event:
        plan = plan_video(TINY, index)
        frames, _ = decode_pyav(manifest.video_paths()[index])
        first, last = plan.events[0], plan.events[-1]
        assert first.colour != last.colour
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1.0
        assert dominant_colour(frames[first.start : first.stop]) == first.colour
        assert dominant_colour(frames[last.start : last.stop]) == last.colour


def test_event_plans_tile_the_video() -> None:
    config = SynthConfig(seed=3)
    lengths = []
    for index in range(200):
        plan = plan_video(config, index)
        assert plan.events[0].start == 0 and plan.events[-1].stop == plan.n_frames
        assert all(a.stop == b.start for a, b in zip(plan.events, plan.events[1:]))
        assert len({e.colour for e in plan.events}) == len(plan.events)
        lengths.append(plan.n_frames // config.fps)
    assert min(lengths) == config.min_seconds and max(lengths) == config.max_seconds
    assert {len(plan_video(config, i).events) for i in range(200)} == {1, 2, 3}


@pytest.mark.parametrize(
    "change",
    [
        {"size": 63},
        {"size": 8},
        {"n_train": -1},
        {"n_test": -5},
        {"captions_per_video": 0},
        {"min_seconds": 10, "max_seconds": 5},
        {"fps": 0},
        {"workers": 0},
        {"n_train": 0, "n_val": 0, "n_test": 0},
    ],
)
def test_bad_config_is_refused(change: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, dataclasses.replace(TINY, **change), progress=False)
    assert not (tmp_path / "videos").exists()


HEAP_FILL_WRITER = """
import sys
from pathlib import Path
from teachcache.pipeline.synth import SynthConfig, plan_video, render_frames, write_mp4
config = SynthConfig()
for index in (4, 5, 19):  # earlier videos leave their heap behind for the next one
    write_mp4(Path(sys.argv[1]) / f"{index}.mp4", render_frames(plan_video(config, index), config), config.fps)
"""


def test_the_same_video_has_the_same_bytes_whatever_the_heap_holds(tmp_path: Path) -> None:
    """x264's AVX-512 mbtree kernels read leftover heap memory on 64-px frames (the demo's size): with
    mbtree on, MALLOC_PERTURB_ (glibc's fill of fresh allocations) changed the bytes. Off, it does not."""
    outputs = []
    for fill in ("101", "204"):
        folder = tmp_path / fill
        folder.mkdir()
        env = {**os.environ, "MALLOC_PERTURB_": fill}
        subprocess.run([sys.executable, "-c", HEAP_FILL_WRITER, str(folder)], env=env, check=True, timeout=120)
        outputs.append([(folder / f"{i}.mp4").read_bytes() for i in (4, 5, 19)])
    assert outputs[0] == outputs[1]
