import pytest

from teachcache.cache.manifest import ManifestError, read_manifest, write_manifest


def _videos(*ids, path=None):
    return [{"video_id": v, "path": path or f"videos/{v}.mp4", "split": "train"} for v in ids]


def _captions(*pairs):
    return [{"caption_id": c, "video_id": v, "text": t, "split": "train"} for c, v, t in pairs]


def test_round_trip_keeps_rows_and_order(tmp_path):
    write_manifest(tmp_path, _videos("b", "a"), _captions(("c1", "a", "x"), ("c0", "b", "y")))
    m = read_manifest(tmp_path)
    assert m.video_ids == ["b", "a"]
    assert m.captions.column("caption_id").to_pylist() == ["c1", "c0"]
    assert m.windows() == [None, None]


def test_window_is_kept(tmp_path):
    rows = [{"video_id": "a", "path": "a.mp4", "split": "test", "start": 0.0, "end": 31.0}]
    m = write_manifest(tmp_path, rows, _captions(("c", "a", "t")))
    assert m.windows() == [(0.0, 31.0)]


@pytest.mark.parametrize(
    "videos, captions, message",
    [
        (_videos("a", "a"), _captions(("c", "a", "t")), "videos row 1: duplicate video_id 'a'"),
        (_videos("a"), _captions(("c", "a", "t"), ("c", "a", "u")), "captions row 1: duplicate caption_id 'c'"),
        (_videos("a"), _captions(("c", "a", "  ")), "captions row 0 (caption_id='c'): empty caption text"),
        (_videos("a"), _captions(("c", "zz", "t")), "video_id 'zz' is not in the videos manifest"),
        (_videos("a", path="../outside.mp4"), _captions(("c", "a", "t")), "escapes the video root"),
        (_videos("a", path="/etc/passwd"), _captions(("c", "a", "t")), "is absolute"),
        ([{"video_id": "a", "path": "a.mp4", "split": "x", "start": 5.0, "end": 2.0}], _captions(("c", "a", "t")), "0 <= start < end"),
        ([{"video_id": "a", "path": "frames/a", "split": "x", "fps": 0.0}], _captions(("c", "a", "t")), "fps 0.0 must be a positive number"),
    ],
)
def test_bad_rows_are_refused_with_the_row_named(tmp_path, videos, captions, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_manifest(tmp_path, videos, captions)
    assert not (tmp_path / "videos.parquet").exists()


def test_missing_manifest_tells_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="teachcache synth"):
        read_manifest(tmp_path)


def test_a_video_root_elsewhere_is_recorded_and_paths_stay_inside_it(tmp_path):
    videos_dir, data = tmp_path / "benchmark" / "videos", tmp_path / "data"
    videos_dir.mkdir(parents=True)
    write_manifest(data, _videos("a", path="a.mp4"), _captions(("c", "a", "t")), video_root=videos_dir)
    m = read_manifest(data)
    assert m.video_root == videos_dir.resolve() and m.video_paths() == [videos_dir.resolve() / "a.mp4"]
    with pytest.raises(ManifestError, match="escapes the video root"):
        write_manifest(data, _videos("a", path="../a.mp4"), _captions(("c", "a", "t")), video_root=videos_dir)
    assert read_manifest(data).video_ids == ["a"]  # the refused write left the manifests as they were


def test_a_video_root_inside_the_data_root_is_stored_relative(tmp_path):
    write_manifest(tmp_path, _videos("a", path="a.mp4"), _captions(("c", "a", "t")), video_root=tmp_path / "clips")
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    assert read_manifest(moved).video_paths() == [(moved / "clips" / "a.mp4").resolve()]


def test_frame_folders_carry_their_frame_rate(tmp_path):
    rows = [{"video_id": "a", "path": "frames/a", "split": "test", "fps": 5.0}, {"video_id": "b", "path": "b.mp4", "split": "test"}]
    m = write_manifest(tmp_path, rows, _captions(("c", "a", "t"), ("d", "b", "u")))
    assert read_manifest(tmp_path).frame_rates() == m.frame_rates() == [5.0, None]
