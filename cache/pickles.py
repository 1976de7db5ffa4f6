"""Reading pickles that hold data, never code.

Benchmarks and feature releases ship pickles (MSVD's ``raw-captions.pkl``, Collaborative
Experts' feature and teacher files). A pickle can call any importable function when
loaded; these unpicklers admit an allowlist and refuse every other reference:

- ``plain``: dicts, lists, tuples, strings and numbers only (no global at all);
- ``numpy``: also numpy arrays, exactly the reconstructors numpy 1 and 2 write under
  protocols 2 to 5 (``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``) and
  protocol 2's ``_codecs.encode`` of array bytes as latin-1 text.

Files are opened with ``encoding="latin1"``, as Python 2 era pickles need.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

from teachcache.cache.errors import TeachcacheError

NUMPY_GLOBALS = {  # (module, name) as written by numpy 1 and numpy 2 -> the module path after "numpy."
    ("numpy.core.multiarray", "_reconstruct"): "multiarray",
    ("numpy._core.multiarray", "_reconstruct"): "multiarray",
    ("numpy.core.numeric", "_frombuffer"): "numeric",
    ("numpy._core.numeric", "_frombuffer"): "numeric",
}
NUMPY_CLASSES = {("numpy", "ndarray"), ("numpy", "dtype")}


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


class NumpyUnpickler(PlainUnpickler):
    """Containers, strings, numbers and numpy arrays (numpy 1 or 2 names, any protocol)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in NUMPY_GLOBALS:
            return _numpy_function(NUMPY_GLOBALS[module, name], name)
        if (module, name) in NUMPY_CLASSES:
            import numpy

            return getattr(numpy, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        return super().find_class(module, name)


UNPICKLERS = {"plain": PlainUnpickler, "numpy": NumpyUnpickler}


def load_pickle(path: str | Path, allow: str = "plain") -> Any:
    """The data in a pickle file, read with the ``allow`` unpickler (``plain`` or ``numpy``).
    Raises PickleRefused naming the file and the refused reference."""
    try:
        with Path(path).open("rb") as handle:
            return UNPICKLERS[allow](handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise PickleRefused(f"{path}: not read ({exc}); teachcache reads pickles of data only ({allow})") from exc
