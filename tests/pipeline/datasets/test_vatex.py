"""VATEX: the official JSON (English captions) with the HGR val/test lists, and the HGR layout."""

import json

import pytest

from teachcache.pipeline.datasets.common import AnnotationError
from teachcache.pipeline.prepare import PrepareConfig, prepare

IDS = ["Ptf_2VRj-V0_000122_000132", "5-xGskbsBgI_000055_000065", "abc_000001_000011", "def_000002_000012"]


def entry(vid):
    return {"videoID": vid, "enCap": [f"english {i} for {vid}" for i in range(3)], "chCap": ["中文"] * 3}


def write_vatex(root, lists=True):
    root.mkdir(parents=True)
    (root / "vatex_training_v1.0.json").write_text(json.dumps([entry(IDS[0]), entry(IDS[1])]))
    (root / "vatex_validation_v1.0.json").write_text(json.dumps([entry(IDS[2]), entry(IDS[3])]))
    if lists:
        (root / "val_list.txt").write_text(IDS[2] + "\n")
        (root / "test_list.txt").write_text(IDS[3] + "\n")
    for vid in IDS:
        (root / f"{vid}.mp4").write_bytes(b"x")
    return root


def test_official_json_english_captions_with_the_hgr_split(tmp_path):
    root = write_vatex(tmp_path / "vatex")
    manifest, report = prepare(PrepareConfig(dataset="vatex", root=str(root)), tmp_path / "out")
    assert manifest.videos.column("split").to_pylist() == ["train", "train", "val", "test"]
    assert report.captions == {"train": 6, "val": 3, "test": 3}
    assert all(t.startswith("english") for t in manifest.captions.column("text").to_pylist())


def test_without_split_lists_the_validation_file_is_the_test_split(tmp_path):
    root = write_vatex(tmp_path / "vatex", lists=False)
    _, report = prepare(PrepareConfig(dataset="vatex", root=str(root)), tmp_path / "out")
    assert report.videos == {"train": 2, "test": 2}


def test_hgr_layout_with_ref_captions(tmp_path):
    root = tmp_path / "vatex"
    root.mkdir()
    (root / "ref_captions.json").write_text(json.dumps({vid: [f"s {vid}"] for vid in IDS}))
    (root / "train_list.txt").write_text("\n".join(IDS[:2]) + "\n")
    (root / "test_list.txt").write_text(IDS[3] + "\n")
    for vid in IDS:
        (root / f"{vid}.mp4").write_bytes(b"x")
    _, report = prepare(PrepareConfig(dataset="vatex", root=str(root)), tmp_path / "out")
    assert report.videos == {"train": 2, "test": 1}
    (root / "test_list.txt").write_text("unknown_000000_000010\n")
    with pytest.raises(AnnotationError, match="'unknown_000000_000010' has no entry in ref_captions.json"):
        prepare(PrepareConfig(dataset="vatex", root=str(root)), tmp_path / "out")
