"""Shared fixtures: a tiny generated data set and configs that run in seconds on a CPU."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_CLIPS = SHARED / "data" / "real-clips"
MSRVTT_SAMPLE = SHARED / "data" / "msrvtt-sample"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Eight generated videos (4 train, 2 val, 2 test), 2 captions each."""
    from pipeline.synth import SynthConfig, generate

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
    from stages.extract.config import ExtractConfig, StoreLayoutConfig, DecodeConfig

    cfg = ExtractConfig(data=str(data), store=str(store))
    cfg.layout = StoreLayoutConfig(**{"shard_size": 4, "chunk_rows": 2, **layout})
    cfg.decode = DecodeConfig(workers=0, timeout_s=30.0)
    return cfg
