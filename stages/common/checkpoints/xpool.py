"""``xpool``: X-Pool's ``model_best.pth`` (``{"epoch", "state_dict", "optimizer"}``): a
HuggingFace ``CLIPModel`` under ``clip.`` (``text_model.*``, ``vision_model.*`` with its
``pre_layrnorm`` spelling, ``text_projection``, ``visual_projection``, ``logit_scale``) and
the pooling head ``pool_frames.*`` (the notes' sections 1.3 and 2.2). ``position_ids``
buffers (saved by older transformers) are allowed when they are 0..n-1. The attention head
counts are not in the file (``None`` here): the towers take them as arguments."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from teachcache.stages.common.checkpoints.base import CheckpointError, CheckpointFormat, layer_count, layer_keys

LAYER = tuple(f"self_attn.{p}_proj.{leaf}" for p in ("q", "k", "v", "out") for leaf in ("weight", "bias")) + tuple(
    f"{m}.{leaf}" for m in ("layer_norm1", "mlp.fc1", "mlp.fc2", "layer_norm2") for leaf in ("weight", "bias")
)
TEXT_LAYERS, VISION_LAYERS = "clip.text_model.encoder.layers.", "clip.vision_model.encoder.layers."
FIXED = (
    "clip.text_model.embeddings.token_embedding.weight",
    "clip.text_model.embeddings.position_embedding.weight",
    "clip.text_model.final_layer_norm.weight",
    "clip.text_model.final_layer_norm.bias",
    "clip.vision_model.embeddings.class_embedding",
    "clip.vision_model.embeddings.patch_embedding.weight",
    "clip.vision_model.embeddings.position_embedding.weight",
    "clip.vision_model.pre_layrnorm.weight",
    "clip.vision_model.pre_layrnorm.bias",
    "clip.vision_model.post_layernorm.weight",
    "clip.vision_model.post_layernorm.bias",
    "clip.text_projection.weight",
    "clip.visual_projection.weight",
    "clip.logit_scale",
)
POOL = tuple(
    f"pool_frames.{m}.{leaf}"
    for m in ("cross_attn.q_proj", "cross_attn.k_proj", "cross_attn.v_proj", "cross_attn.out_proj", "linear_proj", "layer_norm1", "layer_norm2", "layer_norm3")
    for leaf in ("weight", "bias")
)
POSITION_IDS = ("clip.text_model.embeddings.position_ids", "clip.vision_model.embeddings.position_ids")


class XPoolFormat(CheckpointFormat):
    name = "xpool"
    models: ClassVar[tuple[str, ...]] = ("xpool",)

    def claims(self, keys: set[str]) -> bool:
        return any(k.startswith(("clip.text_model.", "clip.vision_model.")) for k in keys)

    def detect_model(self, keys: set[str]) -> str:
        return "xpool"

    def expected(self, keys: set[str], model: str) -> set[str]:
        names = set(FIXED) | set(POOL)
        names |= layer_keys(TEXT_LAYERS, layer_count(keys, TEXT_LAYERS), LAYER)
        return names | layer_keys(VISION_LAYERS, layer_count(keys, VISION_LAYERS), LAYER)

    def allowed(self, key: str, model: str) -> bool:
        return key in POSITION_IDS

    def check_allowed(self, state: Mapping[str, torch.Tensor], key: str) -> None:
        ids = state[key]
        if not torch.equal(ids.reshape(-1).long(), torch.arange(ids.numel())):
            raise CheckpointError(f"{key} is not 0..{ids.numel() - 1}; teachcache assumes plain positions")

    def hparams(self, backbone: Mapping[str, torch.Tensor], head: Mapping[str, torch.Tensor], model: str) -> dict[str, Any]:
        tokens, patches = backbone["text_model.embeddings.token_embedding.weight"], backbone["vision_model.embeddings.patch_embedding.weight"]
        grid = round(math.sqrt(backbone["vision_model.embeddings.position_embedding.weight"].shape[0] - 1))
        return {
            "vision_width": int(patches.shape[0]),
            "vision_layers": layer_count(backbone, "vision_model.encoder.layers."),
            "vision_heads": None,
            "patch": int(patches.shape[-1]),
            "grid": grid,
            "image_size": int(patches.shape[-1]) * grid,
            "embed_dim": int(backbone["text_projection.weight"].shape[0]),
            "text_width": int(tokens.shape[1]),
            "text_layers": layer_count(backbone, "text_model.encoder.layers."),
            "text_heads": None,
            "context_length": int(backbone["text_model.embeddings.position_embedding.weight"].shape[0]),
            "vocab_size": int(tokens.shape[0]),
            "max_words": None,
            "max_frames": None,
            "pool_dim": int(head["pool_frames.cross_attn.q_proj.weight"].shape[0]),
            "logit_scale": float(backbone["logit_scale"].float().exp()),
        }
