"""``clip4clip``: OpenAI CLIP under ``clip.`` (float16 where ``convert_weights`` put it) and
the heads of the CLIP4Clip family (the notes' sections 1.3 and 2):

- ``meanP``: nothing but ``clip.*``;
- ``seqTransf``: ``frame_position_embeddings.weight`` and ``transformerClip.resblocks.*``;
- ``teachclip``: seqTransf plus AFA's ``frameLinear.*`` and ``frameLinear2.*``;
- ``xclip``: seqTransf plus X-CLIP's eight mixing weights;
- ``ts2net``: seqTransf plus ``visual_token_selector.*``; visual layers 10 and 11 store their
  attention as ``attn.net.*`` (the official loader copies it to ``attn.*``: so do we).
  ``text_token_selector.*`` and ``visual_prompt_encoder.*`` are saved but unused: allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from teachcache.stages.common.checkpoints.base import CheckpointFormat, layer_count, layer_keys

BLOCK = (
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_1.weight",
    "ln_1.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
)
VISUAL = ("conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_pre.bias", "ln_post.weight", "ln_post.bias", "proj")
TEXT = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection", "logit_scale")
VISUAL_BLOCKS, TEXT_BLOCKS, CROSS_BLOCKS = "clip.visual.transformer.resblocks.", "clip.transformer.resblocks.", "transformerClip.resblocks."
AFA = ("frameLinear.weight", "frameLinear.bias", "frameLinear2.weight", "frameLinear2.bias")
XCLIP = (
    "global_mat_weight",
    "local_mat_weight",
    "word_logit_weight",
    "word_mat_weight",
    "word_mat_weight2",
    "frame_logit_weight",
    "frame_mat_weight",
    "frame_mat_weight2",
)
SELECTOR = tuple(f"visual_token_selector.score_predictor.{n}" for n in ("in_conv.0.weight", "in_conv.0.bias", "in_conv.1.weight", "out_conv.0.weight", "out_conv.2.weight"))
TS2NET_UNUSED = ("text_token_selector.", "visual_prompt_encoder.")
SHIFT_LAYERS = (10, 11)  # TS2-Net's token shift, hard-coded in its code
ATTENTION = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")


class Clip4ClipFormat(CheckpointFormat):
    name = "clip4clip"
    models: ClassVar[tuple[str, ...]] = ("meanP", "seqTransf", "teachclip", "xclip", "ts2net")

    def claims(self, keys: set[str]) -> bool:
        return any(k.startswith("clip.visual.") for k in keys) and any(k.startswith(TEXT_BLOCKS) for k in keys)

    def detect_model(self, keys: set[str]) -> str:
        if any(k.startswith("visual_token_selector.") or ".attn.net." in k for k in keys):
            return "ts2net"
        if keys & set(XCLIP):
            return "xclip"
        if any(k.startswith(("frameLinear.", "frameLinear2.")) for k in keys):
            return "teachclip"
        if any(k.startswith(("frame_position_embeddings.", "transformerClip.")) for k in keys):
            return "seqTransf"
        return "meanP"

    def expected(self, keys: set[str], model: str) -> set[str]:
        names = {f"clip.visual.{n}" for n in VISUAL} | {f"clip.{n}" for n in TEXT}
        names |= layer_keys(VISUAL_BLOCKS, layer_count(keys, VISUAL_BLOCKS), BLOCK)
        names |= layer_keys(TEXT_BLOCKS, layer_count(keys, TEXT_BLOCKS), BLOCK)
        if model == "meanP":
            return names
        names |= {"frame_position_embeddings.weight"} | layer_keys(CROSS_BLOCKS, layer_count(keys, CROSS_BLOCKS), BLOCK)
        names |= {"teachclip": set(AFA), "xclip": set(XCLIP), "ts2net": set(SELECTOR)}.get(model, set())
        if model == "ts2net":
            for i in SHIFT_LAYERS:
                for n in ATTENTION:
                    names.discard(f"{VISUAL_BLOCKS}{i}.attn.{n}")
                    names.add(f"{VISUAL_BLOCKS}{i}.attn.net.{n}")
        return names

    def allowed(self, key: str, model: str) -> bool:
        return model == "ts2net" and key.startswith(TS2NET_UNUSED)

    def backbone_name(self, key: str, model: str) -> str:
        return key[len(self.prefix) :].replace(".attn.net.", ".attn.")

    def hparams(self, backbone: Mapping[str, torch.Tensor], head: Mapping[str, torch.Tensor], model: str) -> dict[str, Any]:
        h = clip_hparams(backbone)
        h.update(cross_hparams(head, h["text_width"]))
        if model == "xclip":
            h["max_words"] = int(head["word_logit_weight"].shape[0])
            h["max_frames"] = int(head["frame_logit_weight"].shape[0])
        if model == "ts2net":
            h["shift_layers"] = [i for i in SHIFT_LAYERS if i < h["vision_layers"]]
        return h


def clip_hparams(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """OpenAI CLIP's sizes from its shapes (CLIP4Clip's own rule; layers counted by index)."""
    conv = sd["visual.conv1.weight"]
    grid = round(math.sqrt(sd["visual.positional_embedding"].shape[0] - 1))
    vision_width, text_width, vocab = int(conv.shape[0]), int(sd["ln_final.weight"].shape[0]), int(sd["token_embedding.weight"].shape[0])
    return {
        "vision_width": vision_width,
        "vision_layers": layer_count(sd, "visual.transformer.resblocks."),
        "vision_heads": vision_width // 64,
        "patch": int(conv.shape[-1]),
        "grid": grid,
        "image_size": int(conv.shape[-1]) * grid,
        "embed_dim": int(sd["text_projection"].shape[1]),
        "text_width": text_width,
        "text_layers": layer_count(sd, "transformer.resblocks."),
        "text_heads": text_width // 64,
        "context_length": int(sd["positional_embedding"].shape[0]),
        "vocab_size": vocab,
        "sot_id": vocab - 2,
        "eot_id": vocab - 1,
        "max_words": None,
        "max_frames": None,
        "logit_scale": float(sd["logit_scale"].float().exp()),
    }


def cross_hparams(head: Mapping[str, torch.Tensor], text_width: int) -> dict[str, Any]:
    """The seqTransf cross module's sizes (width and heads as CLIP4Clip sets them: the text tower's)."""
    if "frame_position_embeddings.weight" not in head:
        return {"cross_layers": 0}
    rows, width = head["frame_position_embeddings.weight"].shape
    return {"cross_layers": layer_count(head, CROSS_BLOCKS), "cross_width": int(width), "cross_heads": text_width // 64, "cross_rows": int(rows)}
