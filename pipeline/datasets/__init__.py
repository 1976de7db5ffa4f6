"""Benchmark readers, one module per data set, each with ``read(root, cfg) -> Annotations``."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

DATASETS = ("msrvtt", "msvd", "didemo", "activitynet", "vatex", "custom")


def dataset_reader(name: str) -> Callable:
    """The ``read`` function of a data set's module."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(DATASETS)}")
    return import_module(f"pipeline.datasets.{name}").read
