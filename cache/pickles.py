"""Reading pickles that hold data, never code.

Benchmarks and feature releases ship pickles (MSVD's ``raw-captions.pkl``, Collaborative
Experts' feature and teacher files). A pickle can call any importable function when
loaded; these unpicklers admit an allowlist and refuse every other reference:

- ``plain``: dicts, lists, tuples, strings and numbers only (no global at all);
- ``numpy``: also numpy arrays, exactly the reconstructors numpy 1 and 2 write under
  protocols 2 to 5 (``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``) and
  protocol 2's ``_codecs.encode`` of array bytes as latin-1 text.

What was loaded is then checked: only containers, strings, numbers and arrays of booleans,
integers or floats whose dtype is its type's own (no objects, no records, no forged flags).

Files are opened with ``encoding="latin1"``, as Python 2 era pickles need.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any, ClassVar

from teachcache.cache.errors import TeachcacheError

NUMPY_GLOBALS = {  # (module, name) as written by numpy 1 and numpy 2 -> the module path after "numpy."
    ("numpy.core.multiarray", "_reconstruct"): "multiarray",
    ("numpy._core.multiarray", "_reconstruct"): "multiarray",
    ("numpy.core.numeric", "_frombuffer"): "numeric",
    ("numpy._core.numeric", "_frombuffer"): "numeric",
}
NUMPY_CLASSES = {("numpy", "ndarray"), ("numpy", "dtype")}
PLAIN_KINDS = "biuf"  # numpy arrays of booleans, integers and floats: no objects, no records


class PickleRefused(TeachcacheError, ValueError):
    """A pickle references something outside its allowlist, or is not a pickle at all."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Protocol 2's spelling of bytes (``_codecs.encode(text, "latin1")``), and nothing else."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}: only latin-1 array bytes are data")
    return text.encode("latin1")


def _numpy_function(submodule: str, name: str) -> Any:
    """``numpy._core.<submodule>.<name>`` (numpy 2) or ``numpy.core.<submodule>.<name>`` (numpy 1)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy has no {submodule}.{name}")


class PlainUnpickler(pickle.Unpickler):
    """Containers, strings and numbers: every global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: this file may only hold data")


def _checked_build(self: Any) -> None:
    """BUILD, refusing a numpy dtype state other than a plain type's own (a pickle can set a
    dtype's fields and flags, which numpy then trusts when it reads array memory)."""
    import numpy

    state, target = self.stack[-1], self.stack[-2]
    if isinstance(target, numpy.dtype):
        plain = isinstance(state, tuple) and len(state) == 8 and state[2:5] == (None, None, None)
        if not plain or state[7] != target.flags or target.kind not in PLAIN_KINDS or state[5] not in (-1, target.itemsize) or state[6] not in (-1, target.alignment):
            raise pickle.UnpicklingError(f"refused a numpy dtype state {state!r}: only plain numeric dtypes are data")
    pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]


class NumpyUnpickler(pickle._Unpickler):
    """Containers, strings, numbers and numpy arrays (numpy 1 or 2 names, any protocol). The
    pure-Python unpickler, so that every dtype state is checked before numpy applies it."""

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _checked_build

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in NUMPY_GLOBALS:
            return _numpy_function(NUMPY_GLOBALS[module, name], name)
        if (module, name) in NUMPY_CLASSES:
            import numpy

            return getattr(numpy, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: this file may only hold data")


UNPICKLERS: dict[str, type[pickle.Unpickler] | type[pickle._Unpickler]] = {"plain": PlainUnpickler, "numpy": NumpyUnpickler}
MAX_DEPTH = 64


def check_data(value: Any, depth: int = 0) -> None:
    """Refuse anything but containers, strings, numbers and plain numeric arrays: an array of
    objects or records, or one whose dtype carries other flags than its type's (a pickle can set
    them), would let later reads follow forged pointers."""
    import numpy

    if depth > MAX_DEPTH:
        raise pickle.UnpicklingError(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        for key, item in value.items():
            check_data(key, depth + 1)
            check_data(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_data(item, depth + 1)
    elif isinstance(value, numpy.ndarray):
        dtype = value.dtype
        if dtype.kind not in PLAIN_KINDS or dtype.fields is not None or dtype.flags != numpy.dtype(dtype.str).flags:
            raise pickle.UnpicklingError(f"refused a numpy array of dtype {dtype!r}: only plain numeric arrays are data")
    elif not isinstance(value, (str, bytes, int, float, complex, bool, type(None))):
        raise pickle.UnpicklingError(f"refused a {type(value).__name__}: this file may only hold data")


def load_pickle(path: str | Path, allow: str = "plain") -> Any:
    """The data in a pickle file, read with the ``allow`` unpickler (``plain`` or ``numpy``).
    Raises PickleRefused naming the file and the refused reference."""
    try:
        with Path(path).open("rb") as handle:
            value = UNPICKLERS[allow](handle, encoding="latin1").load()
        check_data(value)
    except OSError:
        raise
    except Exception as exc:  # any malformed or refused content (numpy raises RuntimeError, SystemError on forged dtypes)
        raise PickleRefused(f"{path}: not read ({exc}); teachcache reads pickles of data only ({allow})") from exc
    return value
