"""MSVD: list files and raw-captions.pkl, loaded without running code."""

import os
import pickle

import pytest

from teachcache.pipeline.datasets.common import AnnotationError
from teachcache.pipeline.prepare import PrepareConfig, prepare

CAPTIONS = {
    "-4wsuPCjDBc_5_15": [["a", "man", "is", "cooking"], ["someone", "cooks"]],
    "0lh_UWF9ZP4_62_69": [["a", "cat", "plays"], []],
    "zv2RIbUsnSw_159_165": [["a", "dog", "runs"]],
}


def write_msvd(root, captions=CAPTIONS):
    root.mkdir(parents=True)
    with open(root / "raw-captions.pkl", "wb") as f:
        pickle.dump(captions, f)
    for split, vid in zip(("train", "val", "test"), CAPTIONS):
        (root / f"{split}_list.txt").write_text(vid + "\n")
    (root / "YouTubeClips").mkdir()
    for vid in CAPTIONS:
        (root / "YouTubeClips" / f"{vid}.avi").write_bytes(b"x")
    return root


def test_token_lists_become_captions_and_empty_ones_are_counted(tmp_path):
    root = write_msvd(tmp_path / "msvd")
    manifest, report = prepare(PrepareConfig(dataset="msvd", root=str(root)), tmp_path / "out")
    assert manifest.video_ids == list(CAPTIONS) and manifest.videos.column("split").to_pylist() == ["train", "val", "test"]
    assert manifest.captions.column("text").to_pylist() == ["a man is cooking", "someone cooks", "a cat plays", "a dog runs"]
    assert report.dropped_captions == 1 and "1 empty captions left out" in report.line()
    assert manifest.video_paths()[0].suffix == ".avi"


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    Exploit.marker = marker
    root = write_msvd(tmp_path / "msvd", captions={"-4wsuPCjDBc_5_15": [Exploit()]})
    with pytest.raises(AnnotationError, match="refused to load"):
        prepare(PrepareConfig(dataset="msvd", root=str(root)), tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out" / "videos.parquet").exists()


@pytest.mark.parametrize("payload", [{"v": {1, 2}}, {"v": [[3]]}, ["not", "a", "dict"]], ids=["set", "int", "list"])
def test_a_pickle_of_other_plain_types_is_refused(tmp_path, payload):
    root = write_msvd(tmp_path / "msvd", captions=payload)
    with pytest.raises(AnnotationError, match="raw-captions.pkl"):
        prepare(PrepareConfig(dataset="msvd", root=str(root)), tmp_path / "out")
