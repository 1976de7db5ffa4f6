"""``zarr``: a Zarr v3 group, arrays sharded by rows (the default backend).

One writer per shard across processes; local disks or fsspec URLs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from teachcache.cache.location import Location


class ZarrBackend:
    """Zarr v3 group; arrays sharded by ``shard_rows`` rows with ``chunk_rows``-row inner chunks."""

    def __init__(self, path: Location, mode: Any, codec: str = "zstd", clevel: int = 3, float_codec: str = "none"):
        import zarr

        self.path, self.codec, self.clevel, self.float_codec = path, codec, clevel, float_codec
        if path.is_local:
            self.group = zarr.open_group(path.root, mode=mode)
        else:
            from zarr.storage import FsspecStore

            self.group = zarr.open_group(FsspecStore.from_url(path.url, read_only=mode == "r"), mode=mode)

    def create(self, name: str, shape: tuple[int, ...], dtype: str, chunk_rows: int, shard_rows: int, dims: tuple[str, ...] | None = None) -> None:
        rows = max(1, shape[0])
        chunk = min(chunk_rows, rows)
        shard = max(chunk, min(shard_rows, rows))
        shard -= shard % chunk  # a shard holds whole chunks
        self.group.create_array(
            name,
            shape=shape,
            dtype=dtype,
            chunks=(chunk, *shape[1:]),
            shards=(shard, *shape[1:]),
            compressors=self._compressor(dtype),
            fill_value=0,
            dimension_names=dims,
            overwrite=True,
        )

    def _compressor(self, dtype: str):
        """Blosc for masks, ids and images; float features get ``float_codec`` (none by default:
        they barely compress, and uncompressed shards stream about twice as fast)."""
        from zarr.codecs import BloscCodec

        codec = self.float_codec if np.dtype(dtype).kind == "f" else self.codec
        cname: Any = codec
        return None if codec == "none" else BloscCodec(cname=cname, clevel=self.clevel, shuffle="bitshuffle")

    def _array(self, name: str):
        try:
            return self.group[name]
        except KeyError:
            raise KeyError(f"array {name!r} is not in the store") from None

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        self._array(name)[start : start + len(data)] = data

    def read(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        arr = self._array(name)
        if rows is None:
            return arr[:]
        if isinstance(rows, slice):
            return arr[rows]
        return self._read_rows(arr, np.asarray(rows, dtype=np.int64))

    @staticmethod
    def _read_rows(arr, rows: np.ndarray) -> np.ndarray:
        """Rows by index: one slice read per run of consecutive chunks that hold wanted rows
        (zarr's own selection by index is much slower), then a gather in RAM."""
        out = np.empty((len(rows), *arr.shape[1:]), arr.dtype)
        if len(rows) == 0:
            return out
        chunk = arr.chunks[0]
        chunks = np.unique(rows // chunk)
        breaks = np.flatnonzero(np.diff(chunks) > 1) + 1
        for run in np.split(chunks, breaks):
            lo, hi = int(run[0]) * chunk, min((int(run[-1]) + 1) * chunk, arr.shape[0])
            inside = np.flatnonzero((rows >= lo) & (rows < hi))
            out[inside] = arr[lo:hi][rows[inside] - lo]
        return out

    def names(self) -> list[str]:
        return sorted(k for k, v in self.group.members(max_depth=None) if hasattr(v, "shape"))

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._array(name).shape)

    def dtype(self, name: str) -> str:
        return str(self._array(name).dtype)

    def stored_bytes(self, name: str) -> int:
        return sum(size for _, size in (self.path / name).files())

    def close(self) -> None:
        pass
