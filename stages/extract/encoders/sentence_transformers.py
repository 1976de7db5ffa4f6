"""``sentence_transformers``: a sentence-transformers model by hub name, local folder or offline alias."""

from __future__ import annotations

import numpy as np
import torch

from teachcache.stages.common.device import autocast
from teachcache.stages.extract.encoders.base import ModelSpec, TextEncoder, pad_tokens, quiet_loading, resolve_text_model_path


class SentenceTransformersText(TextEncoder):
    """A sentence-transformers model by hub name or local folder (pooled output)."""

    packages = ("sentence-transformers", "transformers", "torch")
    gives_tokens = True
    cuts_words = True

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        from sentence_transformers import SentenceTransformer

        with quiet_loading():
            self.model = SentenceTransformer(resolve_text_model_path(spec.model), device=str(device))
        self.model.eval()
        if spec.max_words:
            self.model.max_seq_length = spec.max_words
        self.device, self.precision, self.batch_size = device, precision, batch_size
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        with autocast(self.device, self.precision):
            emb = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), self.dim)

    @torch.inference_mode()
    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """The transformer's per-token outputs (before pooling), special tokens included."""
        with autocast(self.device, self.precision):
            out = self.model.encode(texts, batch_size=self.batch_size, output_value="token_embeddings", show_progress_bar=False)
        return pad_tokens([t.float().cpu().numpy() for t in out], length, self.dim)
