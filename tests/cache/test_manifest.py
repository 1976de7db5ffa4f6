import pytest

from cache.manifest import ManifestError, read_manifest, write_manifest


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
        (_videos("a", path="../outside.mp4"), _captions(("c", "a", "t")), "escapes the data root"),
        (_videos("a", path="/etc/passwd"), _captions(("c", "a", "t")), "is absolute"),
        ([{"video_id": "a", "path": "a.mp4", "split": "x", "start": 5.0, "end": 2.0}], _captions(("c", "a", "t")), "0 <= start < end"),
    ],
)
def test_bad_rows_are_refused_with_the_row_named(tmp_path, videos, captions, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_manifest(tmp_path, videos, captions)
    assert not (tmp_path / "videos.parquet").exists()


def test_missing_manifest_tells_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="teachcache synth"):
        read_manifest(tmp_path)
