"""The store: the contract between stage one (writer) and every later stage (readers).

A store is a directory holding one array container (``arrays.zarr`` or ``arrays.h5``),
the manifests in array row order (``videos.parquet``, ``captions.parquet``), the
recorded failures (``failures.parquet``), ``_done/`` markers and ``store.json``, its
attributes (fingerprint, arrays, layout, ``complete``), written last and all or nothing:
a store killed while being created has none and is rebuilt. Work is cut into units
(``frames``, ``text/<encoder>``, ``relevance/<teacher>``...) times shards of rows; a
writer writes a whole shard in one call, then atomically renames a marker holding the
fingerprint. ``complete`` is set last, after every marker is present. Readers refuse an
incomplete store and a store whose fingerprint differs from theirs.

The directory may be local or an fsspec URL (``s3://bucket/cache/msrvtt``), for caches that
several machines share (Zarr backend; HDF5 needs a local file).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from teachcache.cache.backends import CONTAINER, detect_backend, open_backend
from teachcache.cache.errors import TeachcacheError
from teachcache.cache.fingerprint import differences, fingerprint
from teachcache.cache.location import Location
from teachcache.cache.lock import LOCK_FILE
from teachcache.cache.manifest import FAILURE_SCHEMA
from teachcache.cache.schema import ATTRS_FILE, CAPTIONS, CAPTIONS_FILE, DONE_DIR, FAILURES_FILE, FILES_DIR, VIDEOS, VIDEOS_FILE, dimension_names

SCHEMA_VERSION = 2  # 2: components split into config and inputs; encoders and teachers keyed by name


class StoreError(TeachcacheError, RuntimeError):
    """A store cannot serve the request; the message says what to do."""


class StoreMismatch(StoreError):
    """The store was built from another extraction config."""


class StoreIncomplete(StoreError):
    """The store's extraction has not finished."""


class MissingArray(StoreError, KeyError):
    """A reader asked for an array the store does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ArraySpec:
    """One stored array: its name, what its rows are, its per-row shape, dtype and the
    unit of work that writes it."""

    name: str
    rows: str
    tail: tuple[int, ...]
    dtype: str
    unit: str


class Store:
    """An opened store. Build with ``Store.prepare`` (writers) or ``Store.open`` (readers)."""

    def __init__(self, path: Location, backend_name: str, backend, attrs: dict[str, Any]):
        self.path, self.backend_name, self._backend, self.attrs = path, backend_name, backend, attrs

    # ----- creation and opening -------------------------------------------------------
    @classmethod
    def prepare(
        cls,
        path: str | Path | Location,
        *,
        backend: str,
        components: dict[str, Any],
        videos: pa.Table,
        captions: pa.Table,
        arrays: list[ArraySpec],
        shard_size: int = 1024,
        chunk_rows: int = 64,
        codec: str = "zstd",
        clevel: int = 3,
        float_codec: str = "none",
        force: bool = False,
        config: dict[str, Any] | None = None,
        compute: dict[str, Any] | None = None,
    ) -> Store:
        """Create a store, or reopen one built from the same components so finished shards
        are skipped. ``components`` is ``{"config": ..., "inputs": ...}``: what the
        extraction config says, and what it read (manifest and weight hashes, versions); the
        store's fingerprint hashes both, its config fingerprint the first. A store built from
        other components is refused unless ``force``, which rebuilds it from scratch."""
        path = Location(path)
        wanted = fingerprint(components)
        existing = detect_backend(path)
        if existing is not None and not (path / ATTRS_FILE).exists():
            cls.remove(path)  # killed while being created: nothing in it can be trusted
            existing = None
        if existing is None and any(name != LOCK_FILE for name in path.names()):
            raise StoreError(f"{path} exists, is not empty and is not a teachcache store; choose another store path")
        if existing is not None and not force:
            store = cls.open(path, require_complete=False, mode="a")
            if store.fingerprint == wanted:
                store._check_resumable(backend, shard_size, compute)
                return store
            store.close()
            raise StoreMismatch(
                f"store {path} was built with another extraction config or other inputs; differences (store vs this run):\n  "
                + "\n  ".join(differences(store.attrs.get("components", {}), components) or ["(none listed)"])
                + "\nUse another store path, or --force to rebuild this one."
            )
        if existing is not None:
            cls.remove(path)
        if shard_size % chunk_rows:
            raise StoreError(f"shard_size {shard_size} must be a multiple of chunk_rows {chunk_rows}")
        handle = open_backend(path, backend, "w", codec, clevel, float_codec)
        counts = {VIDEOS: len(videos), CAPTIONS: len(captions)}
        for spec in arrays:
            handle.create(spec.name, (counts[spec.rows], *spec.tail), spec.dtype, chunk_rows, shard_size, dimension_names(spec.name, spec.rows, len(spec.tail)))
        (path / VIDEOS_FILE).write_parquet(videos)
        (path / CAPTIONS_FILE).write_parquet(captions)
        (path / DONE_DIR).mkdir()
        attrs = {
            "schema_version": SCHEMA_VERSION,
            "fingerprint": wanted,
            "config_fingerprint": fingerprint(components.get("config", {})),
            "components": components,
            "config": config or {},
            "compute": compute,
            "arrays": [asdict(a) for a in arrays],
            "shard_size": shard_size,
            "chunk_rows": chunk_rows,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "complete": False,
        }
        (path / ATTRS_FILE).write_bytes(json.dumps(attrs).encode())
        return cls(path, backend, handle, attrs)

    def _check_resumable(self, backend: str, shard_size: int, compute: dict[str, Any] | None) -> None:
        """Refuse to resume on another layout, or on another kind of device or precision."""
        layout = (self.backend_name, self.attrs.get("shard_size"))
        if layout != (backend, shard_size):
            self.close()
            raise StoreMismatch(
                f"store {self.path} is laid out as {layout[0]} with shards of {layout[1]} rows, the config asks "
                f"for {backend} with {shard_size}; use another store path or --force to rebuild"
            )
        if compute is not None and self.attrs.get("compute") not in (None, compute):
            self.close()
            raise StoreMismatch(
                f"store {self.path} was started computing with {self.attrs.get('compute')}, this run computes "
                f"with {compute}; finish it on the same kind of device and precision, or --force to rebuild"
            )

    @staticmethod
    def exists(path: str | Path | Location) -> bool:
        """True when ``path`` holds a store that was created in full (resumable or complete)."""
        path = Location(path)
        return detect_backend(path) is not None and (path / ATTRS_FILE).exists()

    @classmethod
    def open(
        cls,
        path: str | Path | Location,
        *,
        expected_config: dict[str, Any] | None = None,
        expected_fingerprint: str | None = None,
        require_complete: bool = True,
        mode: str = "r",
    ) -> Store:
        """Open a store; refuse it when incomplete, or built with another config
        (``expected_config``: the config components of ``store.json``, compared from the file
        alone, without the manifests or any model) or rebuilt since (``expected_fingerprint``)."""
        path = Location(path)
        backend = detect_backend(path)
        if backend is None:
            raise StoreError(f"no teachcache store at {path} (no {' or '.join(CONTAINER.values())}); run `teachcache extract` (make extract-teachers) first")
        if not (path / ATTRS_FILE).exists():
            raise StoreIncomplete(f"store {path} was interrupted while being created; run `teachcache extract` again to rebuild it")
        attrs = json.loads((path / ATTRS_FILE).read_text())
        if attrs.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"store {path} has schema version {attrs.get('schema_version')}, this teachcache reads {SCHEMA_VERSION}; rebuild it with `teachcache extract --force`")
        store = cls(path, backend, open_backend(path, backend, mode), attrs)
        if require_complete and not attrs.get("complete"):
            missing = store.missing_work()
            raise StoreIncomplete(
                f"store {path} is incomplete ({len(missing)} unit shards not written, e.g. {missing[:3]}); run `teachcache extract` again with the same config to finish it"
            )
        if expected_config is not None and fingerprint(expected_config) != attrs.get("config_fingerprint"):
            raise StoreMismatch(
                f"store {path} was built with another extraction config; differences (store vs config):\n  "
                + "\n  ".join(differences(attrs.get("components", {}).get("config", {}), expected_config) or ["(none listed)"])
                + "\nRebuild the store with this config (`teachcache extract`) or use the config that built it."
            )
        if expected_fingerprint is not None and expected_fingerprint != store.fingerprint:
            raise StoreMismatch(
                f"store {path} was rebuilt since (fingerprint {store.fingerprint}, the run read {expected_fingerprint}); "
                "train again on it, or restore the store the run was trained on"
            )
        return store

    @staticmethod
    def remove(path: str | Path | Location) -> None:
        """Delete what a store owns inside its directory (nothing else)."""
        path = Location(path)
        for name in (ATTRS_FILE, *CONTAINER.values(), DONE_DIR, FILES_DIR, VIDEOS_FILE, CAPTIONS_FILE, FAILURES_FILE):
            (path / name).rmtree()

    def scratch(self, name: str) -> Path:
        """A local folder for things kept with this store (the report card's baseline run):
        inside it when it is local, else under the system's temporary folder by fingerprint."""
        local = self.path.local_path
        return local / name if local is not None else Path(tempfile.gettempdir()) / "teachcache" / self.fingerprint / name

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- description ----------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return str(self.attrs.get("fingerprint"))

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete"))

    @property
    def arrays(self) -> list[ArraySpec]:
        return [ArraySpec(a["name"], a["rows"], tuple(a["tail"]), a["dtype"], a["unit"]) for a in self.attrs["arrays"]]

    @property
    def units(self) -> dict[str, str]:
        """Unit of work -> the row kind it is sharded over."""
        return {a.unit: a.rows for a in self.arrays}

    def num_rows(self, rows: str) -> int:
        spec = next((a for a in self.arrays if a.rows == rows), None)
        if spec is None:
            return (self.path / (VIDEOS_FILE if rows == VIDEOS else CAPTIONS_FILE)).parquet_rows()
        return self._backend.shape(spec.name)[0]

    def videos(self) -> pa.Table:
        """The videos manifest in array row order."""
        return (self.path / VIDEOS_FILE).read_parquet()

    def captions(self) -> pa.Table:
        """The captions manifest in array row order (with ``video_index``)."""
        return (self.path / CAPTIONS_FILE).read_parquet()

    def failures(self) -> pa.Table:
        """Recorded failures (video_id, stage, reason); from the markers until finalised."""
        if (self.path / FAILURES_FILE).exists():
            return (self.path / FAILURES_FILE).read_parquet()
        return pa.Table.from_pylist(self._marker_failures(), schema=FAILURE_SCHEMA)

    # ----- shards and markers -----------------------------------------------------------
    def shards(self, rows: str) -> list[tuple[int, int, int]]:
        """(shard index, first row, end row) of every shard over the given rows."""
        n, size = self.num_rows(rows), int(self.attrs["shard_size"])
        return [(i, start, min(start + size, n)) for i, start in enumerate(range(0, n, size))]

    def _marker_path(self, unit: str, shard: int) -> Location:
        return self.path / DONE_DIR / f"{unit.replace('/', '__')}.{shard:05d}.json"

    def is_done(self, unit: str, shard: int) -> bool:
        """True when the shard's marker exists and carries this store's fingerprint."""
        try:
            marker = json.loads(self._marker_path(unit, shard).read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return False
        return marker.get("fingerprint") == self.fingerprint

    def mark_done(self, unit: str, shard: int, failures: list[dict] | None = None) -> None:
        """Record a finished shard (after all its arrays were written), atomically."""
        marker = {"fingerprint": self.fingerprint, "unit": unit, "shard": shard, "failures": failures or []}
        self._marker_path(unit, shard).write_bytes(json.dumps(marker).encode())

    def missing_work(self) -> list[str]:
        """``unit:shard`` names whose markers are absent."""
        return [f"{unit}:{shard}" for unit, rows in self.units.items() for shard, _, _ in self.shards(rows) if not self.is_done(unit, shard)]

    def _marker_failures(self) -> list[dict]:
        rows: list[dict] = []
        done = self.path / DONE_DIR
        for name in done.names():
            if name.endswith(".json"):
                rows.extend(json.loads((done / name).read_text()).get("failures", []))
        return rows

    def finalize(self) -> None:
        """Check every shard is done, write failures.parquet, then mark the store complete."""
        missing = self.missing_work()
        if missing:
            raise StoreIncomplete(f"cannot finalise store {self.path}: {len(missing)} unit shards missing, e.g. {missing[:3]}")
        (self.path / FAILURES_FILE).write_parquet(pa.Table.from_pylist(self._marker_failures(), schema=FAILURE_SCHEMA))
        self.set_attrs({"complete": True, "finalized": time.strftime("%Y-%m-%d %H:%M:%S")})

    def set_attrs(self, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into the attributes and write them whole."""
        self.attrs = {**self.attrs, **changes}
        (self.path / ATTRS_FILE).write_bytes(json.dumps(self.attrs).encode())

    # ----- files ---------------------------------------------------------------------------
    def _file_path(self, name: str) -> Location:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise ValueError(f"store file name {name!r} must be a relative path inside the store")
        return self.path / FILES_DIR / name

    def put_file(self, name: str, data: bytes) -> None:
        """Keep a named blob with the store, written atomically (a kill leaves the old one or none)."""
        self._file_path(name).write_bytes(data)

    def has_file(self, name: str) -> bool:
        return self._file_path(name).is_file()

    def get_file(self, name: str) -> bytes:
        """A blob kept with ``put_file``; a clear error when absent."""
        target = self._file_path(name)
        if not target.is_file():
            raise StoreError(f"store {self.path} has no file {name!r}; rebuild it with `teachcache extract`")
        return target.read_bytes()

    # ----- arrays -------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return any(a.name == name for a in self.arrays)

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        """Write rows ``start..start+len(data)``; callers write whole shards only."""
        self._backend.write(name, start, data)

    def read(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Read an array (all rows, a slice, or given row indices)."""
        if not self.has(name):
            raise MissingArray(f"array {name!r} is not in store {self.path}; it has {[a.name for a in self.arrays]}")
        return self._backend.read(name, rows)

    def info(self) -> dict[str, Any]:
        """Arrays, shapes, dtypes, stored bytes, bytes per video, fingerprint, completeness, failures."""
        n_videos = max(1, self.num_rows(VIDEOS))
        arrays = []
        for spec in self.arrays:
            arrays.append(
                {
                    "name": spec.name,
                    "shape": list(self._backend.shape(spec.name)),
                    "dtype": self._backend.dtype(spec.name),
                    "stored_bytes": self._backend.stored_bytes(spec.name),
                }
            )
        total = sum(a["stored_bytes"] for a in arrays)
        video_bytes = sum(a["stored_bytes"] for a, s in zip(arrays, self.arrays) if s.rows == VIDEOS)
        failures = self.failures()
        return {
            "path": str(self.path),
            "backend": self.backend_name,
            "schema_version": self.attrs.get("schema_version"),
            "fingerprint": self.fingerprint,
            "complete": self.complete,
            "videos": self.num_rows(VIDEOS),
            "captions": self.num_rows(CAPTIONS),
            "arrays": arrays,
            "stored_bytes": total,
            "bytes_per_video": total / n_videos,
            "video_array_bytes_per_video": video_bytes / n_videos,
            "files": dict((self.path / FILES_DIR).files()),
            "folder_bytes": sum(size for _, size in self.path.files()),
            "failures": failures.to_pylist(),
            "missing_work": [] if self.complete else self.missing_work(),
        }
