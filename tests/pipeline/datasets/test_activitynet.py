"""ActivityNet Captions: paragraphs, val_1 as the test split, 0-ceil(duration) windows."""

import json

import pytest

from teachcache.pipeline.prepare import PrepareConfig, prepare


def write_activitynet(root):
    root.mkdir(parents=True)
    train = {
        "v_aaa": {"duration": 82.73, "timestamps": [[0.8, 19.8], [17.3, 60.8]], "sentences": ["A girl dances.", " She stops."]},
        "v_bbb": {"duration": 10.0, "timestamps": [[0, 5]], "sentences": ["A man runs."]},
    }
    val_1 = {"v_ccc": {"duration": 30.2, "timestamps": [[0, 30]], "sentences": ["Kids play.", " They laugh."]}}
    (root / "train.json").write_text(json.dumps(train))
    (root / "val_1.json").write_text(json.dumps(val_1))
    (root / "train_ids.json").write_text(json.dumps(["v_aaa", "v_bbb", "v_unannotated"]))
    (root / "val_ids.json").write_text(json.dumps(["v_ccc"]))
    (root / "videos").mkdir()
    for name in ("v_aaa.mp4", "bbb.mkv", "v_ccc.webm"):  # with and without the v_ prefix
        (root / "videos" / name).write_bytes(b"x")
    return root


def test_paragraph_to_video_with_val_1_as_test(tmp_path):
    root = write_activitynet(tmp_path / "anet")
    manifest, report = prepare(PrepareConfig(dataset="activitynet", root=str(root)), tmp_path / "out")
    assert manifest.video_ids == ["v_aaa", "v_bbb", "v_ccc"] and not report.missing
    assert manifest.videos.column("split").to_pylist() == ["train", "train", "test"]
    assert manifest.captions.column("text").to_pylist() == ["A girl dances. She stops.", "A man runs.", "Kids play. They laugh."]
    assert manifest.windows() == [(0.0, 83.0), (0.0, 10.0), (0.0, 31.0)]


def test_a_val_split_is_held_out_of_train_reproducibly(tmp_path):
    root = write_activitynet(tmp_path / "anet")
    cfg = PrepareConfig(dataset="activitynet", root=str(root), val_videos=1, seed=5)
    first, _ = prepare(cfg, tmp_path / "a")
    again, report = prepare(cfg, tmp_path / "b")
    splits = first.videos.column("split").to_pylist()
    assert sorted(splits) == ["test", "train", "val"] and again.videos.column("split").to_pylist() == splits
    assert report.videos == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(ValueError, match="would leave no training video"):
        prepare(PrepareConfig(dataset="activitynet", root=str(root), val_videos=2), tmp_path / "c")
