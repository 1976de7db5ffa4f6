"""Helpers the benchmark scripts share: where they run, timing, verdicts and the JSON they write."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring as help, and ``--out`` for the JSON."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench", help="folder of the JSON results")
    return parser


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Seconds ``fn`` takes (GPU work included) and its result."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def environment(device: torch.device) -> dict:
    """What the figures were measured on."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load,
    }


def fmt_s(seconds: float) -> str:
    """A duration in the unit that suits it (ns, us, ms, s)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def verdict(value: float, goal: float, higher_is_better: bool = True) -> str:
    """``meets`` or ``misses by N x`` for a figure against its goal."""
    ok = value >= goal if higher_is_better else value <= goal
    if ok:
        return f"meets the goal {'>=' if higher_is_better else '<='} {goal:g}"
    missed = goal / value if higher_is_better else value / goal
    return f"misses the goal {'>=' if higher_is_better else '<='} {goal:g} by {missed:.2f}x"


def write_json(out: Path, name: str, result: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path
