"""``transformers``: any transformers encoder (masked mean of the last hidden state)."""

from __future__ import annotations

import numpy as np
import torch

from teachcache.stages.common.device import autocast
from teachcache.stages.extract.encoders.base import ModelSpec, TextEncoder, quiet_loading, resolve_text_model_path


class TransformersText(TextEncoder):
    """Any transformers encoder by name or path: masked mean of the last hidden state."""

    packages = ("transformers", "torch")
    gives_tokens = True
    cuts_words = True

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_model_path(spec.model)
        with quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.max_length = spec.max_words or None
        self.device, self.precision, self.batch_size = device, precision, batch_size
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
            with autocast(self.device, self.precision):
                hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """The last hidden state of every token (truncated to ``length``)."""
        feats, masks = [], []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], padding="max_length", truncation=True, max_length=length, return_tensors="pt").to(self.device)
            with autocast(self.device, self.precision):
                hidden = self.model(**batch).last_hidden_state.float()
            feats.append(hidden.cpu().numpy())
            masks.append(batch["attention_mask"].bool().cpu().numpy())
        if not feats:
            return np.zeros((0, length, self.dim), np.float32), np.zeros((0, length), bool)
        return np.concatenate(feats), np.concatenate(masks)
