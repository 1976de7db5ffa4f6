"""`teachcache prepare` end to end: the real MSR-VTT sample through prepare, extract and info,
frame folders through stage one, and the shared rules (missing videos, val hold-out)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CLI_CONFIG, MSRVTT_SAMPLE
from PIL import Image

from teachcache.cache.store import Store
from teachcache.pipeline.cli import main
from teachcache.pipeline.prepare import PrepareConfig, prepare


def _config(tmp_path, data):
    path = tmp_path / "config.toml"
    path.write_text(CLI_CONFIG.format(data=data, store=tmp_path / "store", out=tmp_path / "ablation"))
    return path


def test_real_msrvtt_sample_reports_998_missing_and_stage_one_runs_on_the_2_present(tmp_path):
    runner, out = CliRunner(), tmp_path / "msrvtt"
    config = _config(tmp_path, out)
    refused = runner.invoke(main, ["prepare", "--dataset", "msrvtt", "--root", str(MSRVTT_SAMPLE), "--out", str(out), "--config", str(config)])
    assert refused.exit_code == 2 and "MSRVTT_train.9k.csv not found" in refused.output and "--splits" in refused.output
    result = runner.invoke(main, ["prepare", "--dataset", "msrvtt", "--root", str(MSRVTT_SAMPLE), "--out", str(out), "--splits", "test", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "2 of 1000 videos found (test 2 videos / 2 captions); 998 missing" in result.output
    missing = (out / "missing.txt").read_text().split()
    assert len(missing) == 998 and "video9770" not in missing and "video7020" in missing
    assert json.loads((out / "prepare.json").read_text())["missing"] == 998
    extracted = runner.invoke(main, ["extract", "--quiet", "--config", str(config)])
    assert extracted.exit_code == 0, extracted.output
    assert "extract: 2 videos (0 failed), 2 captions" in extracted.output
    info = json.loads(runner.invoke(main, ["info", "--json", str(tmp_path / "store")]).output)
    assert info["complete"] and info["videos"] == 2 and info["captions"] == 2 and not info["failures"]
    with Store.open(tmp_path / "store") as store:
        assert store.read("frame_mask/clip").sum(axis=1).tolist() == [11, 12]  # 11 s and 14 s: a frame per second, at most 12
        assert store.videos().column("video_id").to_pylist() == ["video9770", "video9771"]
    trained = runner.invoke(main, ["train", "--quiet", "--config", str(config), "--set", f"train.run_dir={tmp_path / 'run'}"])
    assert trained.exit_code == 2 and "has no train split (it has ['test'])" in trained.output


def test_frame_folders_go_through_stage_one(tmp_path):
    root = tmp_path / "mine"
    for name, count in (("a", 30), ("b", 3)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / name / f"{i:05d}.jpg")
    rows = ["video,caption,split,fps", "a,a noisy clip,test,2", "b,a short clip,test,", "a,the same noisy clip,test,2"]
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    prepare(PrepareConfig(dataset="custom", root=str(root)), tmp_path / "data")
    config = _config(tmp_path, tmp_path / "data")
    result = CliRunner().invoke(main, ["extract", "--quiet", "--config", str(config)])
    assert result.exit_code == 0 and "2 videos (0 failed), 3 captions" in result.output, result.output
    with Store.open(tmp_path / "store") as store:
        # a: 30 frames at 2 fps = 15 s, one frame per second, 15 reduced to 12; b: 3 frames at the default 1 fps
        assert store.read("frame_mask/clip").sum(axis=1).tolist() == [12, 3]
        assert np.abs(store.read("frames/clip")[1, :3].astype(np.float32)).sum() > 0


def test_nothing_found_is_an_error_that_names_the_video_folder(tmp_path):
    (tmp_path / "captions.csv").write_text("video,caption,split\nx.mp4,a,test\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="none of the 1 annotated videos was found under .*empty.*--videos"):
        prepare(PrepareConfig(dataset="custom", root=str(tmp_path), videos=str(tmp_path / "empty")), tmp_path / "out")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "youtube8m", "--root", "."], "unknown data set 'youtube8m'"),
        (["--dataset", "msvd"], "--root DIR"),
        (["--dataset", "msvd", "--root", "/nonexistent/dir"], "annotation folder /nonexistent/dir does not exist"),
        (["--dataset", "msvd", "--root", ".", "--splits", "dev"], "prepare.splits = ['dev']"),
    ],
)
def test_bad_flags_are_clear_errors(tmp_path, flags, message):
    result = CliRunner().invoke(main, ["prepare", *flags, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_shipped_msrvtt_config_runs_on_the_sample_with_tiny_weights(tmp_path, monkeypatch):
    """The msrvtt config as shipped (12 frames, 32 words, word features for X-CLIP), with the
    hub's ViT-B weights swapped for the tiny random ones that exist offline."""
    runner, data, store = CliRunner(), tmp_path / "data", tmp_path / "store"
    result = runner.invoke(main, ["prepare", "--dataset", "msrvtt", "--root", str(MSRVTT_SAMPLE), "--splits", "test", "--out", str(data)])
    assert result.exit_code == 0 and "998 missing" in result.output, result.output
    tiny = [
        f"extract.{group}.{name}.{key}={value}"
        for group in ("frame_encoders", "text_encoders")
        for name in ("clip", "clip16")
        for key, value in (("model", "teachcache-tiny-p16"), ("pretrained", '""'))
    ]
    sets = [f"extract.data={data}", f"extract.store={store}", "extract.decode.workers=0", "extract.teachers={}", *tiny]
    result = runner.invoke(main, ["extract", "--quiet", "--config", "msrvtt", *[x for s in sets for x in ("--set", s)]])
    assert result.exit_code == 0 and "2 videos (0 failed), 2 captions" in result.output, result.output
    with Store.open(store) as opened:
        assert opened.read("frames/clip").shape[1] == 12 and opened.read("tokens/clip16").shape[1] == 32
