"""Files of precomputed features, read as ``{video id: value}`` (numpy arrays, or a float NaN
where a video lacks the feature, as Collaborative Experts writes). One reader per format:

- ``pickle``: CE's ``.pkl``/``.pickle`` files, through ``cache.pickles``' numpy unpickler
  (data only: dicts, lists, numbers, strings and numpy arrays);
- ``npz``: one array per video id (``np.savez``), read without pickle;
- ``hdf5``: one dataset per video id at the file's top level;
- ``npy``: one array ``[V, ...]`` (read without pickle) whose rows are the video ids listed, one
  per line, in ``<file stem>.ids.txt`` beside it; an all-NaN row marks a missing video.

Torch-free (the config lists the formats).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from teachcache.cache.errors import InputMissing, TeachcacheError
from teachcache.cache.pickles import load_pickle
from teachcache.cache.registry import Registry


class FeatureFileError(TeachcacheError, ValueError):
    """A feature file is not in the format it claims, or holds something else than features."""


def read_pickle(path: Path) -> dict[str, Any]:
    return load_pickle(path, "numpy")


def read_npz(path: Path) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def read_hdf5(path: Path) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as handle:
        return {key: handle[key][()] for key in handle if isinstance(handle[key], h5py.Dataset)}


def read_npy(path: Path) -> dict[str, Any]:
    import numpy as np

    ids_path = path.with_suffix(".ids.txt")
    if not ids_path.is_file():
        raise InputMissing(f"{path}: a .npy of features needs its video ids, one per line, in {ids_path.name} beside it")
    ids = [line.strip() for line in ids_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = np.load(path, allow_pickle=False)
    if rows.ndim < 2 or len(rows) != len(ids):
        raise FeatureFileError(f"{path}: {rows.shape} rows for the {len(ids)} ids of {ids_path.name}; expected one row per id")
    return dict(zip(ids, rows))


FEATURE_FILES: Registry[Any] = Registry("feature file format")
FEATURE_FILES.add("auto", None, "from the file's suffix")
FEATURE_FILES.add("pickle", read_pickle, "a pickle of video id -> array (CE's), data only")
FEATURE_FILES.add("npz", read_npz, "np.savez of one array per video id")
FEATURE_FILES.add("hdf5", read_hdf5, "one dataset per video id")
FEATURE_FILES.add("npy", read_npy, "one array [V, ...], its row ids in <stem>.ids.txt")
SUFFIXES = {".npy": "npy", ".pkl": "pickle", ".pickle": "pickle", ".pckl": "pickle", ".pk": "pickle", ".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5"}


def format_of(path: Path, format: str = "auto") -> str:
    """The format a file is read as: ``format``, or the one its suffix names."""
    if format != "auto":
        return format
    if path.suffix.lower() not in SUFFIXES:
        raise FeatureFileError(f"{path}: cannot tell its format from the suffix {path.suffix!r}; name one of {sorted(set(SUFFIXES.values()))} in its `format`")
    return SUFFIXES[path.suffix.lower()]


def companion_files(path: Path, format: str = "auto") -> list[Path]:
    """Files beside ``path`` that its reading also uses (a .npy's ids), for the fingerprint."""
    return [path.with_suffix(".ids.txt")] if format_of(path, format) == "npy" else []


def read_feature_file(path: Path, format: str = "auto") -> dict[str, Any]:
    """``{video id: value}`` of a feature file (or a teacher or text file in pickle form)."""
    if not path.is_file():
        raise InputMissing(f"{path}: feature file not found; check features.root and the file name in the config")
    kind = format_of(path, format)
    try:
        content = FEATURE_FILES.get(kind)(path)
    except TeachcacheError:
        raise
    except (OSError, ValueError) as exc:
        raise FeatureFileError(f"{path}: not a readable {kind} file ({exc})") from exc
    if not isinstance(content, dict) or not all(isinstance(k, str) for k in content):
        raise FeatureFileError(f"{path}: expected a mapping of video id -> features, got {type(content).__name__}")
    return content
