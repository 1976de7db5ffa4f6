"""Opening the store a config's stage two reads: checked against the config from
``store.json`` alone (its config fingerprint, and every differing field when they differ),
without the manifests, open_clip or any decoder."""

from __future__ import annotations

from teachcache.cache.store import Store
from teachcache.stages.extract.config import ExtractConfig, config_components


def open_training_store(cfg: ExtractConfig) -> Store:
    """The complete store ``cfg.store`` built from this extraction config, refusing any other."""
    return Store.open(cfg.store, expected_config=config_components(cfg))
