"""DiDeMo: LocalizingMoments JSON, one paragraph per video over 0-31 s."""

import json

from teachcache.pipeline.prepare import PrepareConfig, prepare


def moment(video, description, i):
    return {"annotation_id": i, "description": description, "video": video, "times": [[0, 0], [1, 1]], "num_segments": 6, "dl_link": "u"}


def write_didemo(root):
    root.mkdir(parents=True)
    train = [moment("a_1_x.mov", "a girl waves", 1), moment("b_2_y.", "a car passes", 2), moment("a_1_x.mov", " then she   sits ", 3)]
    (root / "train_data.json").write_text(json.dumps(train))
    (root / "val_data.json").write_text(json.dumps([moment("c_3_z.mp4", "birds fly", 4)]))
    (root / "test_data.json").write_text(json.dumps([moment("d_4_w.avi", "a dog barks", 5)]))
    videos = root / "videos"
    videos.mkdir()
    for name in ("a_1_x.mov.mp4", "b_2_y.mp4", "c_3_z.mp4", "d_4_w.mp4"):  # downloader's <video>.mp4, or re-encoded stems
        (videos / name).write_bytes(b"x")
    return root


def test_paragraphs_join_descriptions_in_file_order_over_the_0_31_s_window(tmp_path):
    root = write_didemo(tmp_path / "didemo")
    manifest, report = prepare(PrepareConfig(dataset="didemo", root=str(root), videos=str(root / "videos")), tmp_path / "out")
    assert manifest.video_ids == ["a_1_x.mov", "b_2_y.", "c_3_z.mp4", "d_4_w.avi"] and not report.missing
    texts = dict(zip(manifest.captions.column("video_id").to_pylist(), manifest.captions.column("text").to_pylist()))
    assert texts["a_1_x.mov"] == "a girl waves then she sits"
    assert manifest.captions.num_rows == 4 and report.paragraphs
    assert set(manifest.windows()) == {(0.0, 31.0)}


def test_sentences_can_be_kept_apart(tmp_path):
    root = write_didemo(tmp_path / "didemo")
    manifest, _ = prepare(PrepareConfig(dataset="didemo", root=str(root), paragraphs="sentences"), tmp_path / "out")
    assert manifest.captions.num_rows == 5
