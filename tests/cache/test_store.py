import json
import os
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from teachcache.cache.fingerprint import differences, fingerprint
from teachcache.cache.lock import StoreLocked, WriterLock
from teachcache.cache.store import ArraySpec, Store, StoreError, StoreIncomplete, StoreMismatch

VIDEOS = pa.table({"video_id": [f"v{i}" for i in range(10)], "path": [f"v{i}.mp4" for i in range(10)], "split": ["train"] * 10, "start": [None] * 10, "end": [None] * 10})
CAPTIONS = pa.table({"caption_id": [f"c{i}" for i in range(7)], "video_id": [f"v{i}" for i in range(7)], "text": ["t"] * 7, "split": ["train"] * 7})
ARRAYS = [
    ArraySpec("frames/enc", "videos", (3, 5), "float16", "frames"),
    ArraySpec("frame_mask/enc", "videos", (3,), "bool", "frames"),
    ArraySpec("text/enc", "captions", (5,), "float16", "text/enc"),
]
COMPONENTS = {"config": {"model": "tiny", "sampling": {"num_frames": 3}}, "inputs": {"manifest": "abc"}}


def _prepare(path, backend="zarr", components=COMPONENTS, force=False, compute=None):
    return Store.prepare(path, backend=backend, components=components, videos=VIDEOS, captions=CAPTIONS, arrays=ARRAYS, shard_size=4, chunk_rows=2, force=force, compute=compute)


def _fill(store, rng):
    written = {}
    for unit, rows in store.units.items():
        for shard, lo, hi in store.shards(rows):
            for spec in (a for a in store.arrays if a.unit == unit):
                data = rng.standard_normal((hi - lo, *spec.tail)).astype(spec.dtype) if spec.dtype != "bool" else rng.random((hi - lo, *spec.tail)) > 0.5
                store.write(spec.name, lo, data)
                written.setdefault(spec.name, []).append(data)
            store.mark_done(unit, shard, [{"video_id": f"v{shard}", "stage": "decode", "reason": "test"}] if unit == "frames" and shard == 1 else [])
    store.finalize()
    return {k: np.concatenate(v) for k, v in written.items()}


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_round_trip_and_reopen(tmp_path, backend):
    store = _prepare(tmp_path / "s", backend)
    written = _fill(store, np.random.default_rng(0))
    store.close()
    with Store.open(tmp_path / "s", expected_fingerprint=fingerprint(COMPONENTS)) as s:
        assert s.complete
        for name, data in written.items():
            np.testing.assert_array_equal(s.read(name), data)
        np.testing.assert_array_equal(s.read("frames/enc", np.array([7, 2, 2])), written["frames/enc"][[7, 2, 2]])
        assert s.shards("videos") == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
        assert s.failures().to_pylist() == [{"video_id": "v1", "stage": "decode", "reason": "test"}]
        info = s.info()
        assert info["videos"] == 10 and info["captions"] == 7 and info["complete"]
        assert {a["name"] for a in info["arrays"]} == {a.name for a in ARRAYS}
        assert info["bytes_per_video"] > 0


def test_backends_store_identical_values(tmp_path):
    a, b = _prepare(tmp_path / "z", "zarr"), _prepare(tmp_path / "h", "hdf5")
    wa, wb = _fill(a, np.random.default_rng(1)), _fill(b, np.random.default_rng(1))
    for name in wa:
        np.testing.assert_array_equal(a.read(name), b.read(name))
        np.testing.assert_array_equal(wa[name], wb[name])


def test_incomplete_store_is_refused_until_finalised(tmp_path):
    store = _prepare(tmp_path / "s")
    store.write("text/enc", 0, np.ones((4, 5), np.float16))
    store.mark_done("text/enc", 0)
    store.close()
    with pytest.raises(StoreIncomplete, match="run `teachcache extract` again"):
        Store.open(tmp_path / "s")
    with pytest.raises(StoreIncomplete):
        Store.open(tmp_path / "s", require_complete=False, mode="a").finalize()


def test_mismatched_fingerprint_is_refused_and_names_the_difference(tmp_path):
    _fill(_prepare(tmp_path / "s"), np.random.default_rng(0))
    other = {"model": "big", "sampling": {"num_frames": 5}}
    with pytest.raises(StoreMismatch, match='model: "tiny" vs "big"\n  sampling.num_frames: 3 vs 5') as refused:
        Store.open(tmp_path / "s", expected_config=other)
    assert "store vs config" in str(refused.value)
    with pytest.raises(StoreMismatch, match='(?s)config.model: "tiny" vs "big".*--force'):
        _prepare(tmp_path / "s", components={**COMPONENTS, "config": other})
    with pytest.raises(StoreMismatch, match='inputs.manifest: "abc" vs "def"'):
        _prepare(tmp_path / "s", components={**COMPONENTS, "inputs": {"manifest": "def"}})
    with Store.open(tmp_path / "s", expected_config=COMPONENTS["config"]) as same:  # the config alone decides
        assert same.attrs["config_fingerprint"] == fingerprint(COMPONENTS["config"])
    # the refused store is untouched and still serves
    assert Store.open(tmp_path / "s").complete


def test_same_fingerprint_resumes_and_force_rebuilds(tmp_path):
    store = _prepare(tmp_path / "s")
    store.write("text/enc", 0, np.ones((4, 5), np.float16))
    store.mark_done("text/enc", 0)
    store.close()
    resumed = _prepare(tmp_path / "s")
    assert resumed.is_done("text/enc", 0) and not resumed.is_done("text/enc", 1)
    np.testing.assert_array_equal(resumed.read("text/enc", slice(0, 4)), np.ones((4, 5)))
    resumed.close()
    rebuilt = _prepare(tmp_path / "s", force=True)
    assert not rebuilt.is_done("text/enc", 0)
    assert rebuilt.read("text/enc").sum() == 0


def test_marker_of_another_fingerprint_does_not_count(tmp_path):
    store = _prepare(tmp_path / "s")
    store.mark_done("text/enc", 0)
    marker = next((tmp_path / "s" / "_done").glob("text__enc.00000.json"))
    marker.write_text(marker.read_text().replace(store.fingerprint, "0" * 16))
    assert not store.is_done("text/enc", 0)


def test_store_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(StoreError, match="not a teachcache store"):
        _prepare(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "precious"
    with pytest.raises(StoreError, match="no teachcache store"):
        Store.open(tmp_path)


def test_missing_array_is_named(tmp_path):
    store = _prepare(tmp_path / "s")
    with pytest.raises(KeyError, match="relevance/x"):
        store.read("relevance/x")


def test_writer_lock_refuses_a_live_holder_and_recovers_a_dead_one(tmp_path):
    with WriterLock(tmp_path), pytest.raises(StoreLocked, match="pid"):
        WriterLock(tmp_path).acquire()
    lock = WriterLock(tmp_path)
    Path(lock.path).write_text(json.dumps({"host": socket.gethostname(), "pid": 999999999, "since": "x"}))
    lock.acquire()
    assert lock.holder()["pid"] == os.getpid()
    lock.release()
    assert lock.holder() is None


def test_differences_list_every_differing_leaf_and_only_those():
    stored = {"a": {"b": 1, "same": [1, 2]}, "c": [1, 2], "gone": True, **{f"k{i}": i for i in range(30)}}
    wanted = {"a": {"b": 2, "same": [1, 2]}, "c": [1, 3], "new": "x", **{f"k{i}": -i for i in range(30)}}
    found = differences(stored, wanted)
    assert found[:4] == ["a.b: 1 vs 2", "c[1]: 2 vs 3", "gone: true vs absent", "k1: 1 vs -1"]
    assert 'new: absent vs "x"' in found and len(found) == 4 + 29  # all of them, none cut; k0 is equal


def test_a_store_is_resumed_only_on_the_same_compute(tmp_path):
    _prepare(tmp_path / "s", compute={"device": "cpu", "autocast": "None"}).close()
    with pytest.raises(StoreMismatch, match="same kind of device and precision"):
        _prepare(tmp_path / "s", compute={"device": "cuda", "autocast": "torch.bfloat16"})
    _prepare(tmp_path / "s", compute={"device": "cpu", "autocast": "None"}).close()
