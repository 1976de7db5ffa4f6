"""Device and mixed-precision choice, made at run time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from teachcache.cache.errors import ConfigError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f'device {name!r} asked for but CUDA is not available; use device = "auto" or "cpu"')
    return device


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a device: bf16 (or fp16) on CUDA for ``auto``, none on the CPU."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if precision == "fp16" else torch.bfloat16


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """An autocast context for the device (a no-op where the precision is fp32)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def cpu_threads(device: torch.device, threads: int = 1) -> Iterator[None]:
    """Run the block on ``threads`` CPU threads when ``device`` is the CPU, then restore the count.

    CPU kernels that split a sum over threads (LayerNorm's backward, MKL's matmul for long
    reductions) round differently at another thread count: fitting a teacher head on one thread
    gives the same bits whatever the machine's core count or ``OMP_NUM_THREADS``."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
