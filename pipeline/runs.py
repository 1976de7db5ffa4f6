"""A finished `teachcache train` run folder: its resolved config, its metrics and its store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from teachcache.cache.errors import InputMissing
from teachcache.cache.fingerprint import differences
from teachcache.cache.store import Store, StoreMismatch
from teachcache.pipeline.config import Config, load_config
from teachcache.pipeline.stores import student_store_path
from teachcache.stages.extract.config import config_components


def load_run(run_dir: str | Path, also: tuple[str, ...] = ()) -> tuple[Config, dict]:
    """The run's config and metrics; a clear error when it (or a file in ``also``) is missing."""
    run_dir = Path(run_dir)
    for name in ("config.toml", "metrics.json", *also):
        if not (run_dir / name).is_file():
            raise InputMissing(f"{run_dir} has no {name}: give the folder of a finished `teachcache train` run")
    return load_config(run_dir / "config.toml"), json.loads((run_dir / "metrics.json").read_text())


def open_run_store(config: Config, metrics: dict[str, Any]) -> Store:
    """The store the run trained from; refused, with every field that differs, if it was rebuilt since."""
    store = Store.open(student_store_path(config))
    if store.fingerprint == metrics["store_fingerprint"]:
        return store
    trained_on = metrics.get("store_components") or {"config": config_components(config.extract)}  # older runs kept the config only
    found = differences(trained_on, {key: store.attrs.get("components", {}).get(key) for key in trained_on})
    store.close()
    raise StoreMismatch(
        f"store {store.path} was rebuilt since run trained on it; differences (the run's store vs the store now):\n  "
        + "\n  ".join(found or ["(the inputs changed: manifests, weights or package versions)"])
        + "\nTrain the run again on this store, or rebuild the store the run trained on"
    )
