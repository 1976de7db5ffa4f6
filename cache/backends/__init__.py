"""Array containers behind one interface, one file per backend: ``zarr`` (Zarr v3, sharded,
the default) and ``hdf5``.

Arrays are addressed by names like ``frames/clip`` (``cache.schema``); the first axis is
rows (videos or captions). The store's attributes live beside the container
(``cache.store``), not in it.
"""

from __future__ import annotations

from typing import Any

from teachcache.cache.location import Location
from teachcache.cache.registry import Registry

BACKENDS: Registry[Any] = Registry("store backend")
BACKENDS.add("zarr", "teachcache.cache.backends.zarr:ZarrBackend", "sharded Zarr v3 (several writers, one per shard; local or fsspec URLs)")
BACKENDS.add("hdf5", "teachcache.cache.backends.hdf5:HDF5Backend", "a single HDF5 file (one writing process, local disk)")

CONTAINER = {"zarr": "arrays.zarr", "hdf5": "arrays.h5"}  # the container's name inside a store directory


def detect_backend(store_path: str | Location) -> str | None:
    """Which backend a store directory (local or a URL) holds, or None."""
    location = Location(store_path)
    for backend, name in CONTAINER.items():
        if (location / name).exists():
            return backend
    return None


def open_backend(store_path: str | Location, backend: str, mode: str, codec: str = "zstd", clevel: int = 3, float_codec: str = "none") -> Any:
    """Open (``r``, ``a``) or create (``w``) the container of a store directory."""
    cls = BACKENDS.get(backend)
    location = Location(store_path)
    location.mkdir()
    return cls(location / CONTAINER[backend], mode, codec, clevel, float_codec)
