"""A writer lock on a store: one writing process at a time, stale locks recovered."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from teachcache.cache.errors import TeachcacheError
from teachcache.cache.location import Location

LOCK_FILE = ".writer.lock"


class StoreLocked(TeachcacheError, RuntimeError):
    """Another live process holds the store's writer lock."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLock:
    """Exclusive lock file naming its holder (host, pid, job); a lock left by a dead process
    on this host is taken over, one held by a live process or another host is refused. The
    other ranks of the holder's torchrun job (same ``job`` id) write under its lock."""

    def __init__(self, store_path: str | Path | Location, job: str = ""):
        self.path = Location(store_path) / LOCK_FILE
        self.store = Location(store_path)
        self.job = job
        self.held = False

    def holder(self) -> dict | None:
        """The current holder's record, or None when unlocked."""
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def acquire(self) -> None:
        self.store.mkdir()
        record = {"host": socket.gethostname(), "pid": os.getpid(), "job": self.job, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            if not self.path.create_exclusive(json.dumps(record).encode()):
                held = self.holder()
                if held is None or (held.get("host") == record["host"] and not pid_alive(int(held.get("pid", -1)))):
                    self.path.unlink()  # stale: its process is gone
                    continue
                raise StoreLocked(
                    f"store {self.store} is being written by pid {held.get('pid')} on host "
                    f"{held.get('host')} since {held.get('since')}; wait for it to finish, or delete "
                    f"{self.path} if that process no longer exists"
                ) from None
            self.held = True
            return
        raise StoreLocked(f"could not take the writer lock {self.path}")

    def held_by_my_job(self) -> bool:
        """True when the lock is held for this process's torchrun job (by its rank 0)."""
        held = self.holder()
        return bool(self.job) and held is not None and held.get("job") == self.job

    def check_holder_alive(self) -> None:
        """Raise StoreLocked when the holder was on this host and its process is gone."""
        held = self.holder()
        if held and held.get("host") == socket.gethostname() and not pid_alive(int(held.get("pid", -1))):
            raise StoreLocked(f"the writer of store {self.store} (pid {held.get('pid')}) died; run the extraction again to resume")

    def release(self) -> None:
        if self.held:
            self.path.unlink()
            self.held = False

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
