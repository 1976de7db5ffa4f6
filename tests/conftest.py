"""Shared fixtures: a tiny generated data set and configs that run in seconds on a CPU."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("TEACHCACHE_SHARED") or Path(__file__).resolve().parents[2] / "shared")  # the checkout's ../shared
REAL_CLIPS = SHARED / "data" / "real-clips"
MSRVTT_SAMPLE = SHARED / "data" / "msrvtt-sample"
GOLDEN = SHARED / "data" / "golden"  # outputs of the official code (issue 13)
GOLDEN_CE = SHARED / "data" / "golden-ce"  # outputs of the official Collaborative Experts code (issue 14)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Eight generated videos (4 train, 2 val, 2 test), 2 captions each."""
    from teachcache.pipeline.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny_data")
    generate(root, SynthConfig(n_train=4, n_val=2, n_test=2, captions_per_video=2, seed=3, workers=1), progress=False)
    return root


@pytest.fixture
def data_copy(tiny_data, tmp_path) -> Path:
    """A private copy of the tiny data set that a test may damage."""
    dest = tmp_path / "data"
    shutil.copytree(tiny_data, dest)
    return dest


def tiny_extract_config(data: Path, store: Path, **layout):
    """Stage-one config over the tiny data: tiny random CLIP, its text tower, the dual teacher."""
    from teachcache.stages.extract.config import DecodeConfig, ExtractConfig, StoreLayoutConfig

    cfg = ExtractConfig(data=str(data), store=str(store))
    cfg.layout = StoreLayoutConfig(**{"shard_size": 4, "chunk_rows": 2, **layout})
    cfg.decode = DecodeConfig(workers=0, timeout_s=30.0)
    return cfg


CLI_CONFIG = """
[extract]
data = "{data}"
store = "{store}"
[extract.decode]
workers = 0
[extract.layout]
shard_size = 4
chunk_rows = 2
[extract.text_encoders.clip]
[extract.teachers.dual]
[train]
epochs = 1
batch_size = 4
[train.student]
heads = 4
[ablate]
out = "{out}"
seeds = [0, 1]
[ablate.variants.infonce]
train.objective.kind = "infonce"
[ablate.variants.teachclip]
train.objective.kind = "teachclip"
"""


@pytest.fixture
def cli_config(tiny_data, tmp_path):
    """A tiny config file (tiny data, dual teacher, one-epoch training, two ablation variants) with its store extracted."""
    path = tmp_path / "ablate.toml"
    path.write_text(CLI_CONFIG.format(data=tiny_data, store=tmp_path / "store", out=tmp_path / "ablation"))
    from click.testing import CliRunner

    from teachcache.pipeline.cli import main

    assert CliRunner().invoke(main, ["extract", "--quiet", "--config", str(path)]).exit_code == 0
    return path


@pytest.fixture
def trained_run(cli_config, tmp_path):
    """A finished two-epoch `teachcache train` run over the cli_config store."""
    from click.testing import CliRunner

    from teachcache.pipeline.cli import main

    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--quiet", "--config", str(cli_config), "--set", f"train.run_dir={run_dir}", "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    return run_dir
