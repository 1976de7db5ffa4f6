"""Stores behind fsspec URLs: the same store on a local path, a file:// URL and an object-store-like
filesystem (fsspec's in-memory one, which has no local path and no rename)."""

import numpy as np
import pytest
from conftest import tiny_extract_config

from teachcache.cache.location import Location
from teachcache.cache.lock import StoreLocked, WriterLock
from teachcache.cache.store import Store
from teachcache.stages.extract.run import run_extraction
from teachcache.stages.student.config import TrainConfig
from teachcache.stages.student.recipe import train_student


def test_location_operations_on_an_object_store(tmp_path):
    root = Location("memory://teachcache-test/loc")
    assert not root.exists() and root.names() == [] and root.local_path is None
    (root / "a" / "b.bin").write_bytes(b"12345")
    assert (root / "a" / "b.bin").read_bytes() == b"12345" and root.names() == ["a"]
    assert root.files() == [("a/b.bin", 5)]
    assert (root / "x").create_exclusive(b"1") and not (root / "x").create_exclusive(b"2")
    assert (root / "x").read_bytes() == b"1"
    root.rmtree()
    assert not root.exists()
    local = Location(tmp_path / "d")
    (local / "f").write_bytes(b"x")
    assert local.local_path == tmp_path / "d" and (tmp_path / "d" / "f").read_bytes() == b"x"
    assert Location(f"file://{tmp_path}/d") == local


@pytest.mark.parametrize("url", ["file://{tmp}/store", "memory://teachcache-test/store"], ids=["file", "memory"])
def test_a_store_behind_a_url_holds_what_a_local_one_does_and_trains(tiny_data, tmp_path, url):
    run_extraction(tiny_extract_config(tiny_data, tmp_path / "local"), progress=False)
    target = url.format(tmp=tmp_path)
    summary = run_extraction(tiny_extract_config(tiny_data, target), progress=False)
    assert summary.failed == 0
    with Store.open(tmp_path / "local") as local, Store.open(target) as remote:
        assert remote.complete and remote.fingerprint == local.fingerprint
        for spec in local.arrays:
            np.testing.assert_array_equal(remote.read(spec.name), local.read(spec.name), err_msg=spec.name)
        assert remote.info()["files"].keys() == local.info()["files"].keys()
        fingerprint = local.fingerprint
        result = train_student(TrainConfig(run_dir=str(tmp_path / "run"), epochs=1, batch_size=4), remote, progress=False)
    assert result["store_fingerprint"] == fingerprint and (tmp_path / "run" / "best.safetensors").exists()
    again = run_extraction(tiny_extract_config(tiny_data, target), progress=False)
    assert again.shards_done == 0  # resumed: every shard was marked done on the URL
    if target.startswith("memory://"):
        Location(target).rmtree()


def test_the_writer_lock_works_on_an_object_store():
    store = "memory://teachcache-test/locked"
    with WriterLock(store), pytest.raises(StoreLocked, match="is being written by pid"):
        WriterLock(store).acquire()
    assert WriterLock(store).holder() is None


def test_hdf5_refuses_a_url_with_what_to_do(tiny_data):
    cfg = tiny_extract_config(tiny_data, "memory://teachcache-test/h5", backend="hdf5")
    with pytest.raises(ValueError, match="HDF5 store needs a local disk.*zarr"):
        run_extraction(cfg, progress=False)
