"""``hdf5``: one HDF5 file (one writing process, local disk only)."""

from __future__ import annotations

import numpy as np

from teachcache.cache.errors import ConfigError
from teachcache.cache.location import Location


class HDF5Backend:
    """One HDF5 file, row-chunked datasets (lzf)."""

    def __init__(self, path: Location, mode: str, codec: str = "zstd", clevel: int = 3, float_codec: str = "none"):
        import h5py

        if not path.is_local:
            raise ConfigError(f"an HDF5 store needs a local disk, {path.url} is not one; use the zarr backend for fsspec URLs")
        self.path = path
        self.file = h5py.File(path.root, {"w": "w", "a": "a", "r": "r", "r+": "r+"}[mode])

    def create(self, name: str, shape: tuple[int, ...], dtype: str, chunk_rows: int, shard_rows: int, dims: tuple[str, ...] | None = None) -> None:
        if name in self.file:
            del self.file[name]
        chunk = (min(chunk_rows, max(1, shape[0])), *shape[1:])
        dataset = self.file.create_dataset(name, shape=shape, dtype=dtype, chunks=chunk, compression="lzf", fillvalue=0)
        if dims is not None:
            dataset.attrs["dimension_names"] = list(dims)  # the axes' names, as the zarr backend records them

    def _array(self, name: str):
        if name not in self.file:
            raise KeyError(f"array {name!r} is not in the store")
        return self.file[name]

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        self._array(name)[start : start + len(data)] = data
        self.file.flush()

    def read(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        arr = self._array(name)
        if rows is None:
            return arr[()]
        if isinstance(rows, slice):
            return arr[rows]
        rows = np.asarray(rows)
        order = np.argsort(rows, kind="stable")
        unique, inverse = np.unique(rows[order], return_inverse=True)
        picked = arr[unique.tolist()] if len(unique) else np.zeros((0, *arr.shape[1:]), arr.dtype)
        out = np.empty((len(rows), *arr.shape[1:]), dtype=arr.dtype)
        out[order] = picked[inverse]
        return out

    def names(self) -> list[str]:
        import h5py

        found: list[str] = []
        self.file.visititems(lambda n, obj: found.append(n) if isinstance(obj, h5py.Dataset) else None)
        return sorted(found)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._array(name).shape)

    def dtype(self, name: str) -> str:
        return str(self._array(name).dtype)

    def stored_bytes(self, name: str) -> int:
        return int(self._array(name).id.get_storage_size())

    def close(self) -> None:
        if self.file:
            self.file.close()
