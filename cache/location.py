"""Where a store lives: a local directory or an fsspec URL (``s3://bucket/cache``, ``gs://...``,
``file:///...``, ``memory://...``), behind the few file operations a store needs.

Local paths keep the local guarantees (write to a temporary name, then rename). On object
storage a single object write is already all-or-nothing, so an object is written in one
put; exclusive creation uses the filesystem's ``xb`` mode where it has one.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any


class Location:
    """A file or directory on a local disk or behind an fsspec URL."""

    fs: Any
    root: str
    url: str

    def __init__(self, target: str | os.PathLike[str] | Location):
        if isinstance(target, Location):
            self.fs, self.root, self.url = target.fs, target.root, target.url
            return
        import fsspec

        text = os.fspath(target)
        self.url = text
        self.fs, self.root = fsspec.core.url_to_fs(text)
        if self.is_local:
            self.root = os.path.abspath(self.root)

    @classmethod
    def _child(cls, parent: Location, root: str, url: str) -> Location:
        child = cls.__new__(cls)
        child.fs, child.root, child.url = parent.fs, root, url
        return child

    @property
    def is_local(self) -> bool:
        from fsspec.implementations.local import LocalFileSystem

        return isinstance(self.fs, LocalFileSystem)

    def __truediv__(self, name: str) -> Location:
        return Location._child(self, posixpath.join(self.root, name), posixpath.join(self.url.rstrip("/"), name) if "://" in self.url else os.path.join(self.url, name))

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.fs.protocol, self.root) == (other.fs.protocol, other.root)

    def __hash__(self) -> int:
        return hash((str(self.fs.protocol), self.root))

    def __fspath__(self) -> str:
        """A local path (so ``Path(location)`` works); object storage has none."""
        if not self.is_local:
            raise TypeError(f"{self.url} is not on a local disk")
        return self.root

    @property
    def name(self) -> str:
        return posixpath.basename(self.root.rstrip("/"))

    @property
    def local_path(self) -> Path | None:
        return Path(self.root) if self.is_local else None

    # ----- queries -------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.fs.exists(self.root)

    def is_dir(self) -> bool:
        return self.fs.isdir(self.root)

    def is_file(self) -> bool:
        return self.fs.isfile(self.root)

    def names(self) -> list[str]:
        """Names of the entries of a directory (none when it does not exist)."""
        if not self.is_dir():
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.root, detail=False))

    def files(self) -> list[tuple[str, int]]:
        """Every file below this directory: (path relative to it, size in bytes)."""
        if not self.is_dir():
            return []
        found = self.fs.find(self.root, detail=True)
        prefix = self.root.rstrip("/") + "/"
        return sorted((p[len(prefix) :] if p.startswith(prefix) else p, int(info.get("size") or 0)) for p, info in found.items())

    def size(self) -> int:
        return int(self.fs.size(self.root))

    # ----- reading and writing -----------------------------------------------------------
    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.root)

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def mkdir(self) -> None:
        self.fs.makedirs(self.root, exist_ok=True)

    def write_bytes(self, data: bytes) -> None:
        """All or nothing: a reader sees the old content (or none) or the new, never a part."""
        if self.is_local:
            os.makedirs(os.path.dirname(self.root), exist_ok=True)
            tmp = f"{os.path.dirname(self.root)}/.{os.path.basename(self.root)}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root)
        else:
            self.fs.pipe_file(self.root, data)  # one put: object stores never show half an object

    def create_exclusive(self, data: bytes) -> bool:
        """Create the file with ``data`` unless it exists; False when it already did."""
        if self.is_local:
            os.makedirs(os.path.dirname(self.root), exist_ok=True)
            try:
                fd = os.open(self.root, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        try:
            with self.fs.open(self.root, "xb") as f:
                f.write(data)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError):  # no exclusive mode here: check, then put
            if self.exists():
                return False
            self.write_bytes(data)
            return True

    def unlink(self) -> None:
        """Remove a file if it exists."""
        if self.is_file():
            self.fs.rm_file(self.root)

    def rmtree(self) -> None:
        """Remove a directory (or file) and everything below it, if it exists."""
        if self.exists():
            self.fs.rm(self.root, recursive=True)

    def write_parquet(self, table) -> None:
        """A Parquet file, all or nothing (see ``write_bytes``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.write_bytes(sink.getvalue().to_pybytes())

    def read_parquet(self):
        import pyarrow.parquet as pq

        return pq.read_table(self.root, filesystem=self.fs) if not self.is_local else pq.read_table(self.root)

    def parquet_rows(self) -> int:
        import pyarrow.parquet as pq

        with self.fs.open(self.root, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows
