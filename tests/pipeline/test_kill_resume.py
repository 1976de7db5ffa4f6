"""kill -9 at random points of both stages, then resume: the result equals an uninterrupted run,
and no shard is ever served (marked done) unless all of it was written."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI_CONFIG

from teachcache.cache.store import Store, StoreIncomplete

pytestmark = pytest.mark.slow  # kill -9 of real subprocesses at several points

REPO = Path(__file__).resolve().parents[2]
TEACHER = '[extract.teachers.xpool]\nkind = "xpool"\nfit_epochs = 3\nfit_batch_size = 4\n'


def _config(tmp_path, data, store, run_dir=None):
    text = CLI_CONFIG.format(data=data, store=store, out=tmp_path / "ablation").replace("[train]", TEACHER + "[train]", 1)
    text = text.replace("epochs = 1", f'epochs = 4\nrun_dir = "{run_dir or tmp_path / "run"}"')
    path = tmp_path / f"{store.name}-{Path(str(run_dir)).name}.toml"
    path.write_text(text)
    return path


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "teachcache.pipeline.cli", *args]


def _run(cmd) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _kill_after(cmd, seconds: float, until=None) -> None:
    """Start ``cmd`` and SIGKILL it after ``seconds`` (or as soon as ``until()`` holds)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline and not (until and until()):
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _resume(config) -> None:
    """Finish a killed extraction in this process (its lock is stale: taken over), on one
    thread like the killed subprocess: CPU float sums are bitwise equal only for the same
    thread count, and the test compares bits."""
    import torch

    from teachcache.pipeline.config import load_config
    from teachcache.stages.extract.run import run_extraction

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_extraction(load_config(config).extract, progress=False)
    finally:
        torch.set_num_threads(threads)


def _arrays(path):
    with Store.open(path) as store:
        return {a.name: store.read(a.name) for a in store.arrays}


def assert_same(actual, desired, what) -> None:
    """Equal arrays; float ones up to one float16 step. CPU matrix products may round the
    last fp32 bit differently from one process to another (the library's code path depends
    on buffer alignment), which now and then flips a float16 value by one step. A partial
    or garbage shard differs by far more."""
    if np.issubdtype(desired.dtype, np.floating):
        np.testing.assert_allclose(actual.astype(np.float32), desired.astype(np.float32), rtol=2e-3, atol=1e-5, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(actual, desired, err_msg=what)


def _served_shards_are_whole(path, reference) -> int:
    """Every shard whose marker exists holds exactly the reference rows; returns how many there were."""
    if not (path / "_done").exists():
        return 0
    with Store.open(path, require_complete=False) as store:
        if not store.complete:
            with pytest.raises(StoreIncomplete):
                Store.open(path)  # a reader never gets an unfinished store
        served = 0
        for spec in store.arrays:
            for shard, lo, hi in store.shards(spec.rows):
                if store.is_done(spec.unit, shard):
                    assert_same(store.read(spec.name, slice(lo, hi)), reference[spec.name][lo:hi], f"{spec.name} shard {shard}")
                    served += 1
        return served


@pytest.fixture(scope="module")
def reference_store(tiny_data, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("reference")
    _resume(_config(tmp, tiny_data, tmp / "store"))  # an uninterrupted run
    return tmp / "store"


@pytest.fixture(scope="module")
def reference(reference_store):
    return _arrays(reference_store)


@pytest.mark.parametrize("seconds", [4.0, 6.5, 9.0])
def test_stage_one_killed_at_several_points_resumes_to_the_same_store(tiny_data, tmp_path, reference, seconds):
    config = _config(tmp_path, tiny_data, tmp_path / "store")
    _kill_after(_cli("extract", "--quiet", "--config", str(config)), seconds)
    _served_shards_are_whole(tmp_path / "store", reference)
    _resume(config)
    resumed = _arrays(tmp_path / "store")
    for name in reference:
        assert_same(resumed[name], reference[name], name)


KILL_MID_WRITE = textwrap.dedent("""
    import os, signal, sys
    import teachcache.cache.store
    real_write, calls = teachcache.cache.store.Store.write, []
    def write(self, name, start, data):
        if name == "frames/clip":
            calls.append(start)
            if len(calls) == 2:  # the second video shard: half of it lands, then the process dies
                real_write(self, name, start, data[: len(data) // 2] + 1)
                os.kill(os.getpid(), signal.SIGKILL)
        return real_write(self, name, start, data)
    teachcache.cache.store.Store.write = write
    from teachcache.pipeline.cli import main
    sys.exit(main(["extract", "--quiet", "--config", sys.argv[1]]))
""")


def test_stage_one_killed_during_a_shard_write_never_serves_that_shard(tiny_data, tmp_path, reference):
    config = _config(tmp_path, tiny_data, tmp_path / "store")
    killed = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(config)], cwd=REPO, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "store" / "_done" / "frames.00001.json").exists()
    assert _served_shards_are_whole(tmp_path / "store", reference) > 0  # the first video shard and the text shards were served
    _resume(config)
    resumed = _arrays(tmp_path / "store")
    for name in reference:
        assert_same(resumed[name], reference[name], name)


def _metrics(run_dir):
    data = json.loads((run_dir / "metrics.json").read_text())
    return data["best_epoch"], data["val"], data["test"], [h["loss"] for h in data["history"]]


def test_stage_two_killed_then_resumed_gives_the_uninterrupted_metrics(tiny_data, tmp_path, reference_store):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train = lambda run_dir: _cli("train", "--quiet", "--config", str(_config(tmp_path, tiny_data, reference_store, run_dir)), "--set", "train.objective.kind=infonce")  # noqa: E731
    _run(train(whole))
    _kill_after(train(killed), 120, until=lambda: (killed / "checkpoints" / "epoch_002.json").exists())
    assert not (killed / "metrics.json").exists()
    _run([*train(killed), "--resume"])
    assert _metrics(killed) == _metrics(whole)
