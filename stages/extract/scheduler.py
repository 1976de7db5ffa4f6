"""Stage one's shard scheduler: which shards of each unit this process writes, what is left,
and waiting on work other torchrun ranks own.

Each rank owns the shards ``shard % world == rank``; rank 0 alone creates the store (under
the writer lock, which the job's other ranks share). No collective is used: ranks wait on
the store's markers, and stop early when rank 0's process is gone.
"""

from __future__ import annotations

from collections.abc import Callable

from teachcache.cache.lock import StoreLocked, WriterLock
from teachcache.cache.store import Store
from teachcache.stages.common.distributed import RankInfo, wait_for

Shard = tuple[int, int, int]  # (shard index, first row, end row)


class ShardScheduler:
    """Shard ownership and waiting for one store and one rank."""

    def __init__(self, store_path: str, rank: RankInfo, wait_timeout_s: float):
        self.store_path, self.rank, self.wait_timeout_s = store_path, rank, wait_timeout_s

    def lock(self) -> WriterLock:
        """The store's writer lock, shared by this rank's torchrun job."""
        return WriterLock(self.store_path, job=self.rank.job)

    def todo(self, store: Store, unit: str, all_ranks: bool = False) -> tuple[list[Shard], int]:
        """This rank's unfinished shards of a unit (every rank's with ``all_ranks``), and how many of its shards were done."""
        shards = [s for s in store.shards(store.units[unit]) if all_ranks or self.rank.owns(s[0])]
        todo = [s for s in shards if not store.is_done(unit, s[0])]
        return todo, len(shards) - len(todo)

    def wait(self, ready: Callable[[], bool], what: str) -> None:
        """Wait for work other ranks own (a no-op in a one-process run, where it is done)."""
        if self.rank.world > 1:
            wait_for(ready, what, self.wait_timeout_s, check=self.lock().check_holder_alive)

    def wait_unit(self, store: Store, unit: str) -> None:
        """Wait until every shard of a unit is done, whichever rank owns it."""
        self.wait(lambda: not self.todo(store, unit, all_ranks=True)[0], f"unit {unit} of the other ranks")

    def join(self, fingerprint: str) -> Store:
        """A rank other than 0: wait for rank 0 to hold the lock and create the store, then open it."""
        lock = self.lock()

        def created() -> bool:
            if not lock.held_by_my_job() or not Store.exists(self.store_path):
                return False
            try:
                with Store.open(self.store_path, require_complete=False) as probe:
                    return bool(probe.attrs.get("arrays") is not None and probe.attrs.get("fingerprint"))
            except Exception:  # half-created: keep waiting
                return False

        wait_for(created, f"rank 0 to create store {self.store_path}", self.wait_timeout_s)
        store = Store.open(self.store_path, require_complete=False, mode="a")
        if store.fingerprint != fingerprint:
            store.close()
            raise StoreLocked(f"store {self.store_path} has fingerprint {store.fingerprint}, this rank's config gives {fingerprint}; every rank must run the same config")
        return store
