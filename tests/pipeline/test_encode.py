"""`teachcache encode`: new videos (and captions) embedded by a trained student, in files loadable
without teachcache, equal to what the student produces in training (issue 15, item 4)."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import torch
from click.testing import CliRunner

from teachcache.cache.store import Store
from teachcache.pipeline.cli import main
from teachcache.pipeline.config import load_config
from teachcache.stages.student.embed import embed_captions, embed_videos, load_student, student_widths


def _training_vectors(run_dir):
    config = load_config(run_dir / "config.toml")
    with Store.open(config.extract.store) as store:
        student = load_student(config.train, student_widths(config.train, store), run_dir / "best.safetensors", torch.device("cpu"))
        videos = dict(zip(store.videos().column("video_id").to_pylist(), embed_videos(student, store, config.train.frames, torch.device("cpu")).numpy()))
        texts = dict(zip(store.captions().column("text").to_pylist(), embed_captions(student, store, config.train.text, torch.device("cpu")).numpy()))
    return videos, texts


def test_encode_writes_vectors_equal_to_trainings_and_search_takes_them(trained_run, tiny_data, tmp_path):
    captions = tmp_path / "captions.csv"
    rows = pq.read_table(tiny_data / "captions.parquet").to_pylist()[:5]
    with captions.open("w", newline="") as f:
        writer = csv.writer(f)  # captions hold commas: quoted
        writer.writerows([("video", "caption"), *((f"{r['video_id']}.mp4", r["text"]) for r in rows)])
    out = tmp_path / "index"
    result = CliRunner().invoke(main, ["encode", "--quiet", "--run", str(trained_run), "--videos", str(tiny_data / "videos"), "--captions", str(captions), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("encode: 8 videos (0 failed) -> videos.npy [8, 256], 5 captions -> captions.npy")
    vectors, ids = np.load(out / "videos.npy"), pq.read_table(out / "videos.parquet").column("video_id").to_pylist()
    trained_videos, trained_texts = _training_vectors(trained_run)
    assert vectors.dtype == np.float32 and sorted(ids) == sorted(trained_videos)
    for vid, vector in zip(ids, vectors):
        np.testing.assert_array_equal(vector, trained_videos[vid])  # the same frames, the same student: the same vector
    text_vectors, texts = np.load(out / "captions.npy"), pq.read_table(out / "captions.parquet").column("text").to_pylist()
    for text, vector in zip(texts, text_vectors):
        np.testing.assert_allclose(vector, trained_texts[text], atol=2e-3)  # other batch-mates: the last bits of the text encoder may move
    record = json.loads((out / "index.json").read_text())
    assert record["videos"] == 8 and record["captions"] == 5 and record["dim"] == 256
    found = CliRunner().invoke(main, ["search", "--run", str(trained_run), "--index", str(out), rows[0]["text"], "-k", "3"])
    assert found.exit_code == 0 and f"top 3 of 8 videos in {out}" in found.output, found.output


def test_encode_refuses_a_missing_folder_and_an_unknown_caption_video(trained_run, tmp_path, tiny_data):
    missing = CliRunner().invoke(main, ["encode", "--run", str(trained_run), "--videos", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    bad = tmp_path / "bad.csv"
    bad.write_text("video,caption\nunknown.mp4,a thing\n")
    refused = CliRunner().invoke(main, ["encode", "--run", str(trained_run), "--videos", str(tiny_data / "videos"), "--captions", str(bad), "--out", str(tmp_path / "o2")])
    assert refused.exit_code == 2 and "video 'unknown.mp4' is none of the videos found" in refused.output


def test_a_caption_file_with_an_unquoted_comma_is_refused_naming_the_line(trained_run, tiny_data, tmp_path):
    bad = tmp_path / "commas.csv"
    bad.write_text("video,caption\nsynth00000.mp4,a circle, then a square\n")
    result = CliRunner().invoke(main, ["encode", "--run", str(trained_run), "--videos", str(tiny_data / "videos"), "--captions", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "commas.csv line 2: more fields than the header's 2; quote a field" in result.output
