"""Where this process stands in a torchrun job, and waiting on work another rank owns.

torchrun (``python -m torch.distributed.run``) starts one process per rank and tells each
its place through the environment (RANK, WORLD_SIZE, LOCAL_RANK, TORCHELASTIC_RUN_ID).
Stage one needs no collective: each rank owns whole shards (``shard % world == rank``) and
waits, by polling the store's markers, for the few steps rank 0 does alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from teachcache.cache.errors import ConfigError, TeachcacheError


@dataclass(frozen=True)
class RankInfo:
    """This process's rank among ``world`` (1 when not under torchrun) and its job's id."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    job: str = ""

    @classmethod
    def from_env(cls) -> RankInfo:
        """Read torchrun's environment; a plain run is rank 0 of 1."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent; start the job with torchrun")
        job = os.environ.get("TORCHELASTIC_RUN_ID", "") or os.environ.get("MASTER_ADDR", "") + ":" + os.environ.get("MASTER_PORT", "")
        return cls(rank, world, int(os.environ.get("LOCAL_RANK", "0")), job if world > 1 else "")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, shard: int) -> bool:
        """Whether this rank writes the given shard."""
        return shard % self.world == self.rank

    def device_name(self, configured: str) -> str:
        """``auto`` on a multi-GPU job: this rank's own GPU (cuda:LOCAL_RANK)."""
        import torch

        if configured == "auto" and self.world > 1 and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return configured


class RankTimeout(TeachcacheError, TimeoutError):
    """Another rank's work did not appear in time."""


def wait_for(ready: Callable[[], bool], what: str, timeout_s: float, check: Callable[[], None] | None = None, poll_s: float = 0.2) -> None:
    """Poll ``ready`` until true; ``check`` may raise to stop early (e.g. the owner died)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise RankTimeout(f"waited {timeout_s:g} s for {what}; is rank 0 still running? (extract.wait_timeout_s sets the limit)")
        time.sleep(poll_s)


def start_process_group(rank: RankInfo, device) -> bool:
    """Join torchrun's process group (NCCL on CUDA, gloo on the CPU). Returns True when this
    call created it (the caller then destroys it); a one-process run joins nothing."""
    import torch.distributed as dist

    if rank.world == 1 or dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def rank_sizes(rows: int, world: int) -> list[int]:
    """How many of a global batch's rows each rank takes (contiguous, in rank order)."""
    return [rows // world + (r < rows % world) for r in range(world)]


def gather_rows(x, sizes: list[int]):
    """Every rank's rows of ``x`` (rank r holds ``sizes[r]``), concatenated in rank order,
    with gradient: the backward sums each rank's gradient for this rank's rows."""
    import torch
    from torch.distributed.nn.functional import all_gather

    pad = max(sizes) - x.shape[0]
    if pad:
        x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
    return torch.cat([part[:n] for part, n in zip(all_gather(x), sizes)])
