"""Custom CSV / JSONL manifests, videos as files or as folders of JPEG frames."""

import json

import numpy as np
import pytest
from PIL import Image

from teachcache.pipeline.datasets.common import AnnotationError
from teachcache.pipeline.prepare import PrepareConfig, prepare


def write_frames(folder, count, size=(40, 30)):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((size[1], size[0], 3), 20 * i, np.uint8)).save(folder / f"frame_{i + 1}.jpg")


def test_csv_with_files_frame_folders_and_several_captions(tmp_path):
    root = tmp_path / "mine"
    (root / "clips").mkdir(parents=True)
    (root / "clips" / "a.mp4").write_bytes(b"x")
    write_frames(root / "frames" / "b", 3)
    (root / "captions.csv").write_text(
        "video,caption,split,fps\nclips/a.mp4,a red car,train,\nclips/a.mp4,a car drives,train,\nframes/b,two people talk,test,5\nclips/gone.mp4,lost,test,\n"
    )
    manifest, report = prepare(PrepareConfig(dataset="custom", root=str(root)), tmp_path / "out")
    assert manifest.video_ids == ["clips/a", "frames/b"] and report.missing == ["clips/gone"]
    assert manifest.frame_rates() == [None, 5.0] and manifest.captions.num_rows == 3


def test_jsonl_with_ids_windows_and_the_default_frame_rate(tmp_path):
    root = tmp_path / "mine"
    write_frames(root / "f1", 2)
    rows = [{"video": "f1", "video_id": "one", "caption": "x", "split": "val", "start": 0, "end": 4}]
    (root / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    manifest, _ = prepare(PrepareConfig(dataset="custom", root=str(root), file="data.jsonl", frames_fps=2.0), tmp_path / "out")
    assert manifest.video_ids == ["one"] and manifest.windows() == [(0.0, 4.0)] and manifest.frame_rates() == [2.0]


@pytest.mark.parametrize(
    "line, message",
    [
        ("../escape.mp4,x,train", "row 1: video path '../escape.mp4' must be relative"),
        ("/etc/passwd,x,train", "row 1: video path '/etc/passwd' must be relative"),
        ("a.mp4,x,holdout", "row 1: split 'holdout' is not one of"),
        ("a.mp4,x,train\na.mp4,y,test", "row 2: video 'a' was given with other path, split"),
    ],
)
def test_bad_rows_are_refused_with_the_row_named(tmp_path, line, message):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "captions.csv").write_text("video,caption,split\n" + line + "\n")
    with pytest.raises(AnnotationError, match=message.replace("(", r"\(")):
        prepare(PrepareConfig(dataset="custom", root=str(tmp_path)), tmp_path / "out")
    assert not (tmp_path / "out" / "videos.parquet").exists()
