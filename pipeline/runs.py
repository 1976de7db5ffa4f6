"""A finished `teachcache train` run folder: its resolved config, its metrics and its store."""

from __future__ import annotations

import json
from pathlib import Path

from teachcache.cache.errors import InputMissing
from teachcache.cache.store import Store
from teachcache.pipeline.config import Config, load_config


def load_run(run_dir: str | Path, also: tuple[str, ...] = ()) -> tuple[Config, dict]:
    """The run's config and metrics; a clear error when it (or a file in ``also``) is missing."""
    run_dir = Path(run_dir)
    for name in ("config.toml", "metrics.json", *also):
        if not (run_dir / name).is_file():
            raise InputMissing(f"{run_dir} has no {name}: give the folder of a finished `teachcache train` run")
    return load_config(run_dir / "config.toml"), json.loads((run_dir / "metrics.json").read_text())


def open_run_store(config: Config, metrics: dict) -> Store:
    """The store the run trained from, refused if it was rebuilt since."""
    return Store.open(config.extract.store, expected_fingerprint=metrics["store_fingerprint"])
