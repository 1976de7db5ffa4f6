"""Stage two under torchrun (gloo, CPU): DDP with embeddings all-gathered, so 2 ranks with
global batch B follow 1 process with batch B."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import CLI_CONFIG

from teachcache.pipeline.cli import main

pytestmark = pytest.mark.slow  # torchrun with two ranks

REPO = Path(__file__).resolve().parents[3]


def _train(config, run_dir, nproc=None):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else [sys.executable]
    cmd = [*launcher, "-m", "teachcache.pipeline.cli", "train", "--quiet", "--config", str(config), "--set", f"train.run_dir={run_dir}", "--set", "train.epochs=3"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text()), result.stdout


@pytest.mark.parametrize("kind", ["teachclip"])
def test_two_ranks_with_global_batch_b_follow_one_process_with_batch_b(tiny_data, tmp_path, kind):
    config = tmp_path / "config.toml"
    config.write_text(CLI_CONFIG.format(data=tiny_data, store=tmp_path / "store", out=tmp_path / "ablation"))
    assert CliRunner().invoke(main, ["extract", "--quiet", "--config", str(config)]).exit_code == 0
    one, _ = _train(config, tmp_path / "one")
    two, stdout = _train(config, tmp_path / "two", nproc=2)
    assert stdout.count("train: teachclip student") == 1  # rank 0 reports, once
    for a, b in zip(one["history"], two["history"]):
        assert a["loss"].keys() == b["loss"].keys() == {"infonce", "coarse", "fine", "total"}
        for part in a["loss"]:
            assert b["loss"][part] == pytest.approx(a["loss"][part], rel=1e-4, abs=1e-6), part
    assert two["best_epoch"] == one["best_epoch"]
    for split in ("val", "test"):
        assert two[split]["t2v"]["R1"] == one[split]["t2v"]["R1"]
    from safetensors.torch import load_file

    w1, w2 = load_file(tmp_path / "one" / "best.safetensors"), load_file(tmp_path / "two" / "best.safetensors")
    for name in w1:
        np.testing.assert_allclose(w2[name].numpy(), w1[name].numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_rank_shares_cover_the_batch_in_order():
    from teachcache.stages.common.distributed import rank_sizes

    assert rank_sizes(7, 2) == [4, 3] and rank_sizes(2, 4) == [1, 1, 0, 0] and sum(rank_sizes(64, 3)) == 64
    assert torch.equal(torch.arange(7)[sum(rank_sizes(7, 2)[:1]) :], torch.tensor([4, 5, 6]))
