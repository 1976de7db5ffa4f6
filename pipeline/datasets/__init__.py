"""Benchmark readers, one module per data set, each with ``read(root, cfg) -> Annotations``.

Adding a data set is its module plus its line below.
"""

from __future__ import annotations

from typing import Any

from teachcache.cache.registry import Registry

DATASETS: Registry[Any] = Registry("data set")
DATASETS.add("msrvtt", "teachcache.pipeline.datasets.msrvtt:read", "MSR-VTT (9k / 7k / full training, 1k-A test)")
DATASETS.add("msvd", "teachcache.pipeline.datasets.msvd:read", "MSVD (1,200 / 100 / 670)")
DATASETS.add("didemo", "teachcache.pipeline.datasets.didemo:read", "DiDeMo (paragraphs, 0-31 s)")
DATASETS.add("activitynet", "teachcache.pipeline.datasets.activitynet:read", "ActivityNet Captions (paragraphs, val_1 as test)")
DATASETS.add("vatex", "teachcache.pipeline.datasets.vatex:read", "VATEX (English captions, HGR split lists)")
DATASETS.add("custom", "teachcache.pipeline.datasets.custom:read", "your own CSV or JSONL of video, caption, split")
