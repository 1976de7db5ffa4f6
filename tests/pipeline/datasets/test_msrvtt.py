"""MSR-VTT annotations in the files' own formats, written from the format facts."""

import json

import pytest

from teachcache.pipeline.datasets.common import AnnotationError
from teachcache.pipeline.prepare import PrepareConfig, prepare

CAPTIONS = {f"video{i}": [f"caption {j} of video {i}" for j in range(2)] for i in range(4)}
JSON_SPLIT = {"video0": "train", "video1": "train", "video2": "validate", "video3": "test"}


def write_msrvtt(root, separator=","):
    """MSRVTT_data.json, the 9k training CSV and the 1k-A test CSV; videos under videos/all."""
    root.mkdir(parents=True)
    videos = [{"video_id": v, "id": i, "category": 1, "url": "u", "start time": 0.0, "end time": 9.0, "split": JSON_SPLIT[v]} for i, v in enumerate(CAPTIONS)]
    sentences = [{"video_id": v, "caption": c, "sen_id": 10 * i + j} for i, (v, cs) in enumerate(CAPTIONS.items()) for j, c in enumerate(cs)]
    (root / "MSRVTT_data.json").write_text(json.dumps({"info": {}, "videos": videos, "sentences": sentences}))
    (root / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo1\nvideo2\n")
    row = "ret0;msr3;video3;a man, talking" if separator == ";" else 'ret0,msr3,video3,"a man, talking"'
    (root / "MSRVTT_JSFUSION_test.csv").write_text(separator.join(["key", "vid_key", "video_id", "sentence"]) + "\n" + row + "\n")
    folder = root / "videos" / "all"
    folder.mkdir(parents=True)
    for name in ("video0.mp4", "video1.webm", "video3.mp4"):
        (folder / name).write_bytes(b"x")
    return root


@pytest.mark.parametrize("separator", [",", ";"])
def test_9k_training_captions_and_the_1k_a_test(tmp_path, separator):
    root = write_msrvtt(tmp_path / "msrvtt", separator)
    manifest, report = prepare(PrepareConfig(dataset="msrvtt", root=str(root)), tmp_path / "out")
    assert manifest.video_ids == ["video0", "video1", "video3"]
    assert [p.name for p in manifest.video_paths()] == ["video0.mp4", "video1.webm", "video3.mp4"]
    captions = manifest.captions.to_pylist()
    assert [c["text"] for c in captions if c["split"] == "train"] == CAPTIONS["video0"] + CAPTIONS["video1"]
    assert [(c["caption_id"], c["text"]) for c in captions if c["split"] == "test"] == [("ret0", "a man, talking")]
    assert report.missing == ["video2"] and (tmp_path / "out" / "missing.txt").read_text() == "video2\n"
    assert report.videos == {"train": 2, "test": 1}


def test_full_split_follows_the_json_with_every_caption(tmp_path):
    root = write_msrvtt(tmp_path / "msrvtt")
    (root / "videos" / "all" / "video2.mkv").write_bytes(b"x")
    manifest, report = prepare(PrepareConfig(dataset="msrvtt", root=str(root), variant="full"), tmp_path / "out")
    assert dict(zip(manifest.video_ids, manifest.videos.column("split").to_pylist())) == {"video0": "train", "video1": "train", "video2": "val", "video3": "test"}
    assert report.captions == {"train": 4, "val": 2, "test": 2} and not report.missing


def test_missing_training_files_say_how_to_prepare_the_test_split_alone(tmp_path):
    root = write_msrvtt(tmp_path / "msrvtt")
    (root / "MSRVTT_train.9k.csv").unlink()
    with pytest.raises(AnnotationError, match=r"MSRVTT_train.9k.csv not found .*--splits"):
        prepare(PrepareConfig(dataset="msrvtt", root=str(root)), tmp_path / "out")
    _, report = prepare(PrepareConfig(dataset="msrvtt", root=str(root), splits=["test"]), tmp_path / "out")
    assert report.videos == {"test": 1}


def test_a_test_csv_without_its_columns_is_refused(tmp_path):
    root = write_msrvtt(tmp_path / "msrvtt")
    (root / "MSRVTT_JSFUSION_test.csv").write_text("id,text\n1,hello\n")
    with pytest.raises(AnnotationError, match=r"lacks column\(s\) \['key', 'video_id', 'sentence'\]"):
        prepare(PrepareConfig(dataset="msrvtt", root=str(root), splits=["test"]), tmp_path / "out")
