"""Opening the store a config's stage two reads: checked against the config from
``store.json`` alone (its config fingerprint, and every differing field when they differ),
without the manifests, open_clip or any decoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from teachcache.cache.store import Store
from teachcache.stages.extract.config import ExtractConfig, FeaturesConfig, config_components, features_components

if TYPE_CHECKING:
    from teachcache.pipeline.config import Config


def open_training_store(cfg: ExtractConfig) -> Store:
    """The complete store ``cfg.store`` built from this extraction config, refusing any other."""
    return Store.open(cfg.store, expected_config=config_components(cfg))


def open_feature_store(cfg: FeaturesConfig) -> Store:
    """The complete store ``cfg.store`` imported with this features config, refusing any other."""
    return Store.open(cfg.store, expected_config={"features": features_components(cfg)})


def student_store_path(cfg: Config) -> str:
    """Where the store a config's stage two reads lives (``train.source``)."""
    return cfg.features.store if cfg.train.source == "features" else cfg.extract.store


def open_student_store(cfg: Config) -> Store:
    """The store ``train.source`` names: the extraction's or the imported features'."""
    return open_feature_store(cfg.features) if cfg.train.source == "features" else open_training_store(cfg.extract)
