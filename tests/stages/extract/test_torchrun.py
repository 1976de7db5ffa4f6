"""Stage one under torchrun: ranks own whole shards, rank 0 creates, fits and finalises."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI_CONFIG

from teachcache.cache.store import Store

pytestmark = pytest.mark.slow  # torchrun with two ranks

REPO = Path(__file__).resolve().parents[3]
TEACHERS = """
[extract.teachers.xpool]
kind = "xpool"
fit_epochs = 2
fit_batch_size = 4
[extract.teachers.captions]
kind = "captions"
"""


def _config(tmp_path, data, store):
    path = tmp_path / f"{store.name}.toml"
    text = CLI_CONFIG.format(data=data, store=store, out=tmp_path / "ablation")
    path.write_text(text.replace("[train]", TEACHERS + "[train]", 1))
    return path


def _extract(config, nproc=None, extra=()):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*launcher, "-m", "teachcache.pipeline.cli", "extract", "--quiet", "--config", str(config), *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _contents(path):
    with Store.open(path) as store:
        arrays = {a.name: store.read(a.name) for a in store.arrays}
        heads = {n: store.get_file(n) for n in store.info()["files"] if n.endswith(".safetensors")}
        return arrays, heads, store.complete


def test_two_ranks_write_the_same_store_as_one_process(tiny_data, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    one = _extract(_config(tmp_path, tiny_data, single))
    assert one.returncode == 0, one.stderr[-2000:]
    two = _extract(_config(tmp_path, tiny_data, multi), nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a_arrays, a_heads, _ = _contents(single)
    b_arrays, b_heads, complete = _contents(multi)
    assert (
        complete and a_arrays.keys() == b_arrays.keys() and a_heads.keys() == b_heads.keys() == {"heads/dual.safetensors", "heads/xpool.safetensors", "heads/captions.safetensors"}
    )
    for name in a_arrays:
        np.testing.assert_array_equal(a_arrays[name], b_arrays[name], err_msg=name)
    assert a_heads == b_heads
    markers = sorted(p.name for p in (multi / "_done").iterdir())
    assert "frames.00001.json" in markers and "text__clip.00003.json" in markers  # rank 1's shards are there


def test_a_multi_rank_job_refuses_hdf5_and_force(tiny_data, tmp_path):
    from conftest import tiny_extract_config

    from teachcache.stages.common.distributed import RankInfo
    from teachcache.stages.extract.run import Extractor

    rank1 = RankInfo(rank=1, world=2, job="job")
    with pytest.raises(ValueError, match="torchrun needs zarr"):
        Extractor(tiny_extract_config(tiny_data, tmp_path / "s", backend="hdf5"), progress=False, rank=rank1).run()
    with pytest.raises(ValueError, match="--force under torchrun"):
        Extractor(tiny_extract_config(tiny_data, tmp_path / "s"), progress=False, rank=rank1).run(force=True)
    assert not (tmp_path / "s").exists()


def test_a_rank_gives_up_when_rank_0_never_creates_the_store(tiny_data, tmp_path):
    from conftest import tiny_extract_config

    from teachcache.stages.common.distributed import RankInfo, RankTimeout
    from teachcache.stages.extract.run import Extractor

    cfg = tiny_extract_config(tiny_data, tmp_path / "s")
    cfg.wait_timeout_s = 0.5
    with pytest.raises(RankTimeout, match="rank 0 to create store"):
        Extractor(cfg, progress=False, rank=RankInfo(rank=1, world=2, job="job")).run()
