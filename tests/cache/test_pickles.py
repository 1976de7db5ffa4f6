"""Data-only unpicklers: what a pickle may hold, and what it may not make numpy do."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from teachcache.cache.pickles import PickleRefused, load_pickle


def _dump(tmp_path, value, name="x.pickle", protocol=2):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_numeric_arrays_read_back_equal(tmp_path, protocol):
    value = {"video0": np.arange(6, dtype=np.float32).reshape(2, 3), "video1": float("nan"), "ids": ["a", "b"], "n": np.int64(3).item()}
    read = load_pickle(_dump(tmp_path, value, protocol=protocol), "numpy")
    np.testing.assert_array_equal(read["video0"], value["video0"])
    assert read["ids"] == ["a", "b"] and np.isnan(read["video1"])


def test_the_plain_unpickler_refuses_arrays(tmp_path):
    with pytest.raises(PickleRefused, match="numpy"):
        load_pickle(_dump(tmp_path, {"a": np.zeros(2)}), "plain")


def test_a_global_outside_the_allowlist_is_refused_unrun(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.remove, (str(tmp_path / "victim"),))

    (tmp_path / "victim").write_text("x")
    with pytest.raises(PickleRefused, match="remove"):
        load_pickle(_dump(tmp_path, {"video0": Payload()}), "numpy")
    assert (tmp_path / "victim").exists()


def test_object_and_record_arrays_are_refused(tmp_path):
    for value in (np.array([{"a": 1}], dtype=object), np.zeros(2, dtype=[("a", "f4")])):
        with pytest.raises(PickleRefused, match="dtype"):
            load_pickle(_dump(tmp_path, {"video0": value}), "numpy")


class _ForgedDtype:
    """A float64 dtype whose pickled state sets flags numpy then trusts (27: 'holds references')."""

    def __init__(self, flags: int):
        self.flags = flags

    def __reduce__(self):
        return (np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, self.flags))


class _ForgedArray:
    def __init__(self, flags: int):
        self.flags = flags

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), _ForgedDtype(self.flags), False, np.float64([3.7e-300]).tobytes()))


@pytest.mark.parametrize("flags", [25, 27, 63])
def test_a_dtype_state_with_forged_flags_is_refused_before_numpy_applies_it(tmp_path, flags):
    with pytest.raises(PickleRefused, match="dtype state"):
        load_pickle(_dump(tmp_path, {"video0": _ForgedArray(flags)}), "numpy")
