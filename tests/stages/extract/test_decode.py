import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_CLIPS

from teachcache.stages.extract.decode import DecodePool, DecodeRequest, GeometrySpec, apply_geometry, decode_video, decode_with_fallback, shared_memory_room

CLIPS = sorted(REAL_CLIPS.glob("*.mp4"))


def _request(path, frames=12, sizes=(64,), sampler="clip4clip"):
    return DecodeRequest(str(path), sampler, frames, None, tuple(GeometrySpec(s) for s in sizes))


@pytest.mark.parametrize("clip", CLIPS, ids=lambda p: p.name)
def test_real_clips_decode_alike_with_decord_and_pyav(clip):
    a, b = decode_video(_request(clip), "decord"), decode_video(_request(clip), "pyav")
    assert a.error is None and b.error is None
    assert a.frame_count == b.frame_count > 0
    assert a.indices.tolist() == b.indices.tolist()
    assert a.frames[0].shape == (len(a.indices), 64, 64, 3) and a.frames[0].dtype == np.uint8
    # same frames, up to decoder rounding
    assert np.abs(a.frames[0].astype(int) - b.frames[0].astype(int)).mean() < 3


def test_geometry_matches_open_clip_preprocess_exactly():
    import av
    import open_clip
    import torch
    from PIL import Image

    with av.open(str(REAL_CLIPS / "languagebind_0.mp4")) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape[0] != frame.shape[1]  # a non-square frame exercises resize + crop
    for size, interpolation in ((224, "bicubic"), (64, "bilinear")):
        reference = open_clip.image_transform(size, is_train=False, interpolation=interpolation)(Image.fromarray(frame))
        mine = torch.from_numpy(apply_geometry(frame[None], GeometrySpec(size, interpolation))[0]).permute(2, 0, 1) / 255.0
        mean, std = (torch.tensor(x).view(3, 1, 1) for x in (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD))
        assert torch.equal((mine - mean) / std, reference)


def test_one_decode_serves_several_geometries():
    video = decode_video(_request(CLIPS[0], frames=4, sizes=(32, 96)), "decord")
    assert [f.shape[1] for f in video.frames] == [32, 96]


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: None, "missing file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not a video\n" * 100), ""),
        (lambda p: p.write_bytes((REAL_CLIPS / "tav_car-turn.mp4").read_bytes()[:3000]), ""),
    ],
    ids=["missing", "zero-bytes", "text-file", "truncated"],
)
def test_bad_files_become_errors_not_crashes(tmp_path, make, reason):
    path = tmp_path / "bad.mp4"
    make(path)
    result = decode_with_fallback(_request(path))
    assert result.error is not None and reason in result.error
    assert result.num_valid == 0


AV1_WRITER = """
import sys, av, numpy as np
with av.open(sys.argv[1], "w") as out:
    stream = out.add_stream("libsvtav1", rate=2)
    stream.width = stream.height = 64
    stream.pix_fmt = "yuv420p"
    for i in range(6):
        img = np.full((64, 64, 3), 40 * i % 255, np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
"""


def _write_av1(path):
    # in a child process: SVT-AV1 leaves state behind that stalls other native libraries
    subprocess.run([sys.executable, "-c", AV1_WRITER, str(path)], check=True, capture_output=True, timeout=120)


def test_av1_falls_back_to_pyav_in_the_pool(tmp_path):
    path = tmp_path / "av1.mp4"
    _write_av1(path)
    assert decode_video(_request(path), "decord").error is not None  # decord 0.6.0 cannot open AV1
    with DecodePool(workers=1, timeout_s=60) as pool:
        (video,) = list(pool.imap([_request(path)]))
    assert video.error is None and video.backend == "pyav" and video.num_valid == 3


def test_pool_keeps_order_and_records_timeouts(tmp_path):
    requests = [_request(c, frames=3) for c in CLIPS[:3]]
    with DecodePool(workers=2, timeout_s=60) as pool:
        results = list(pool.imap(requests))
    assert [r.frame_count for r in results] == [decode_with_fallback(r).frame_count for r in requests]
    with DecodePool(workers=1, timeout_s=0.001) as pool:
        (late,) = list(pool.imap(requests[:1]))
    assert "decord: timed out" in late.error and "pyav: timed out" in late.error


def _shared_blocks() -> set[str]:
    return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(("psm_", "wnsm_"))}


def test_pooled_frames_equal_in_process_ones_and_leave_no_shared_memory():
    if not shared_memory_room(1):
        pytest.skip("no room in /dev/shm: the pool uses the pipe here")
    requests = [_request(c, frames=3) for c in CLIPS[:3]] * 3
    before = _shared_blocks()
    with DecodePool(workers=2, timeout_s=60) as pool:
        pooled = list(pool.imap(requests))
        first = next(iter(pool.imap(requests)))  # a consumer that stops after one video
    for video, request in zip(pooled, requests):
        np.testing.assert_array_equal(video.frames[0], decode_with_fallback(request).frames[0])
    assert first.error is None
    assert _shared_blocks() - before == set()


def test_frames_go_through_the_pipe_when_shared_memory_is_short(monkeypatch):
    requests = [_request(c, frames=3) for c in CLIPS[:2]]
    monkeypatch.setenv("TEACHCACHE_SHM_RESERVE_MB", str(2**40))  # more than any machine has: workers inherit it
    assert not shared_memory_room(1)
    before = _shared_blocks()
    with DecodePool(workers=1, timeout_s=60) as pool:
        pooled = list(pool.imap(requests))
    for video, request in zip(pooled, requests):
        np.testing.assert_array_equal(video.frames[0], decode_with_fallback(request).frames[0])
    assert _shared_blocks() == before


def test_frames_lost_in_shared_memory_become_a_recorded_failure():
    from concurrent.futures import Future

    from teachcache.stages.extract.decode import DecodedVideo, SharedFrames

    lost = Future()
    lost.set_result(SharedFrames(DecodedVideo(), [("psm_teachcache_missing", (1, 2, 2, 3))]))
    with DecodePool(workers=0, timeout_s=1) as pool:
        video = pool._resolve(_request(CLIPS[0]), lost, ("decord",), [])
    assert video.error.startswith("decord: frames lost in shared memory")


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown decode backend 'opencv'"):
        DecodePool(0, 1.0, ("opencv",))


def _frame_folder(folder, count, size=(40, 30), name="frame_{}.png"):
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((size[1], size[0], 3), i, np.uint8)).save(folder / name.format(i))
    return folder


def test_a_frame_folder_is_read_in_natural_order_at_its_frame_rate(tmp_path):
    folder = _frame_folder(tmp_path / "v", 12)  # frame_10.png sorts after frame_9.png
    request = DecodeRequest(str(folder), "clip4clip", 12, None, (GeometrySpec(16),), fps=2.0)
    video = decode_with_fallback(request)
    assert video.error is None and video.backend == "frames"
    assert video.indices.tolist() == [0, 2, 4, 6, 8, 10]  # the first frame of each of the six seconds
    assert video.frames[0][:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8, 10]  # pixel value = frame number
    with DecodePool(workers=1, timeout_s=30) as pool:
        (pooled,) = list(pool.imap([request]))
    np.testing.assert_array_equal(pooled.frames[0], video.frames[0])


def test_bad_frame_folders_become_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no" in decode_with_fallback(DecodeRequest(str(empty), "uniform", 4, None, (GeometrySpec(16),))).error
    broken = _frame_folder(tmp_path / "broken", 3, name="{}.jpg")
    (broken / "1.jpg").write_text("not an image")
    assert "frame 1.jpg" in decode_with_fallback(DecodeRequest(str(broken), "uniform", 3, None, (GeometrySpec(16),))).error


def test_a_new_pool_frees_what_killed_runs_left_in_shared_memory(tmp_path):
    """kill -9 of a run (workers and resource tracker included) left its frame blocks and the pool's
    semaphores in /dev/shm; the next run's pool frees those whose owner is gone (issue 15, item 8)."""
    import subprocess
    from multiprocessing import shared_memory
    from pathlib import Path

    from teachcache.stages.extract.decode import sweep_orphans

    finished = subprocess.Popen(["true"])
    finished.wait()
    dead_pid = finished.pid  # a process that has exited: its pid owns nothing now
    orphan = shared_memory.SharedMemory(name=f"tc{dead_pid}_dead01_ab", create=True, size=16)
    live = shared_memory.SharedMemory(name=f"tc{os.getpid()}_live01_cd", create=True, size=16)
    orphan.close(), live.close()
    semaphore = Path("/dev/shm/sem.mp-teachcachetest")
    semaphore.write_bytes(b"\0" * 32)  # as a killed pool's lock is left: a file no process maps
    try:
        assert sweep_orphans() >= 2
        assert not Path(f"/dev/shm/tc{dead_pid}_dead01_ab").exists() and not semaphore.exists()
        assert Path(f"/dev/shm/tc{os.getpid()}_live01_cd").exists()  # its owner (this process) lives
    finally:
        for name in (f"tc{os.getpid()}_live01_cd",):
            shared_memory.SharedMemory(name=name).unlink()
