import pytest

from teachcache.stages.extract.sampling import clip4clip_indices, sample_indices, uniform_indices


def test_clip4clip_takes_the_first_frame_of_each_second():
    # 30 fps, 10 s: seconds 0..9 (second 10 starts past the end)
    assert clip4clip_indices(300, 30.0, 12).tolist() == [0, 30, 60, 90, 120, 150, 180, 210, 240, 270]


def test_clip4clip_truncates_fps_and_counts_a_started_second():
    # 29.97 fps -> step 29; 91 frames -> 4 seconds (0, 29, 58, 87)
    assert clip4clip_indices(91, 29.97, 12).tolist() == [0, 29, 58, 87]


def test_clip4clip_reduces_with_linspace_cast_to_int():
    idx = clip4clip_indices(20 * 25, 25.0, 4)
    # 20 candidates (0..19 s); linspace(0, 19, 4) -> 0, 6.33, 12.67, 19 -> 0, 6, 12, 19
    assert idx.tolist() == [0, 150, 300, 475]


def test_clip4clip_window_restricts_seconds():
    # DiDeMo-style window 2-5 s of a 10 s video at 10 fps: seconds 2, 3, 4, 5 inclusive
    assert clip4clip_indices(100, 10.0, 12, (2.0, 5.0)).tolist() == [20, 30, 40, 50]
    # a window beyond the video is clipped to it
    assert clip4clip_indices(100, 10.0, 12, (8.0, 31.0)).tolist() == [80, 90]


def test_clip4clip_fps_below_one_and_empty_video():
    assert clip4clip_indices(5, 0.5, 12).tolist() == [0, 1, 2, 3, 4]
    assert clip4clip_indices(0, 30.0, 12).size == 0


def test_uniform_takes_interval_middles():
    # 120 frames, 4 intervals of 30: middles (0+29)//2 ...
    assert uniform_indices(120, 30.0, 4).tolist() == [14, 44, 74, 104]


def test_uniform_short_video_takes_every_frame_once_and_leaves_padding_to_the_mask():
    assert uniform_indices(3, 30.0, 8).tolist() == [0, 1, 2]
    assert uniform_indices(10, 30.0, 12).tolist() == list(range(10))


def test_uniform_window():
    idx = uniform_indices(300, 10.0, 2, (10.0, 20.0))
    assert idx.tolist() == [124, 174]
    # a window past the end of the video has no frames (a recorded failure downstream)
    assert uniform_indices(20, 1.0, 12, (30.0, 40.0)).size == 0


@pytest.mark.parametrize("count, fps, frames", [(1, 30.0, 12), (7, 2.0, 12), (10_000, 59.94, 64), (13, 1.0, 12)])
def test_samplers_respect_bounds(count, fps, frames):
    for sampler in ("clip4clip", "uniform"):
        idx = sample_indices(sampler, count, fps, frames)
        assert 1 <= len(idx) <= frames
        assert idx.min() >= 0 and idx.max() < count


def test_unknown_sampler_is_named():
    with pytest.raises(ValueError, match="unknown sampler 'random'"):
        sample_indices("random", 10, 1.0, 4)
