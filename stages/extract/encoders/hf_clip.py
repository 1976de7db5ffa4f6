"""``hf_clip``: X-Pool's CLIP, a HuggingFace ``CLIPModel`` stored under ``clip.`` (the notes'
section 3.9), written by hand (no transformers at run time), named as HuggingFace names it.

Differs from OpenAI's towers: separate q/k/v projections with the query scaled by
``head_dim ** -0.5``; ``nn.LayerNorm`` (eps 1e-5) everywhere; ``post_layernorm`` on the CLS
only; the projections are bias-free linear layers. The text tower adds the padding mask to
the causal one (it cannot change the pooled output) and pools at ``argmax(ids)`` (the
end-of-text, as transformers' legacy rule for ``eos_token_id == 2``). The head counts are not
in the file: ViT-B/32's are 8 (text) and 12 (vision)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from teachcache.cache.errors import ConfigError
from teachcache.stages.common.checkpoints import read_checkpoint
from teachcache.stages.common.checkpoints.base import OfficialCheckpoint, load_module
from teachcache.stages.common.device import autocast
from teachcache.stages.common.layers import QuickGELU
from teachcache.stages.extract.encoders.base import ModelSpec, OfficialFrameEncoder, OfficialTextEncoder, checkpoint_file, official_precision
from teachcache.stages.extract.encoders.openai_clip import bpe_tokenizer, check_vocabulary, clip_geometry, normalise

TEXT_HEADS, VISION_HEADS = 8, 12  # openai/clip-vit-base-patch32


class SelfAttention(nn.Module):
    """HuggingFace CLIP's attention (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ConfigError(f"{heads} attention heads do not divide the width {width}")
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        return x.view(n, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, width = x.shape
        q = self.split(self.q_proj(x)) * (width // self.heads) ** -0.5
        scores = q @ self.split(self.k_proj(x)).transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        out = scores.softmax(dim=-1) @ self.split(self.v_proj(x))
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1, self.activation, self.fc2 = nn.Linear(width, hidden), QuickGELU(), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class EncoderLayer(nn.Module):
    """A pre-norm layer: ``x + self_attn(layer_norm1(x))``, ``x + mlp(layer_norm2(x))``."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.self_attn, self.layer_norm1 = SelfAttention(width, heads), nn.LayerNorm(width)
        self.mlp, self.layer_norm2 = MLP(width, hidden), nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(width, heads, hidden) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class TextEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, width: int, positions: int):
        super().__init__()
        self.token_embedding, self.position_embedding = nn.Embedding(vocab_size, width), nn.Embedding(positions, width)


class VisionEmbeddings(nn.Module):
    def __init__(self, width: int, patch: int, positions: int):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.patch_embedding = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.position_embedding = nn.Embedding(positions, width)


class TextModel(nn.Module):
    """``text_model.*``: ids [Bt, L] and attention mask -> the pooled end-of-text state [Bt, width]."""

    def __init__(self, vocab_size: int, width: int, positions: int, layers: int, heads: int, hidden: int):
        super().__init__()
        self.embeddings = TextEmbeddings(vocab_size, width, positions)
        self.encoder = Encoder(width, layers, heads, hidden)
        self.final_layer_norm = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        length = ids.shape[1]
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[:length]
        lowest = torch.finfo(x.dtype).min
        mask = torch.full((length, length), lowest, device=ids.device).triu(1)[None, None]
        if attention_mask is not None:
            mask = mask + (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * lowest
        x = self.final_layer_norm(self.encoder(x, mask))
        return x[torch.arange(len(ids), device=ids.device), ids.argmax(dim=-1)]


class VisionModel(nn.Module):
    """``vision_model.*``: normalised pixels [N, 3, S, S] -> the CLS after ``post_layernorm`` [N, width]."""

    def __init__(self, width: int, patch: int, grid: int, layers: int, heads: int, hidden: int):
        super().__init__()
        self.embeddings = VisionEmbeddings(width, patch, grid * grid + 1)
        self.pre_layrnorm = nn.LayerNorm(width)  # sic, as HuggingFace spells it
        self.encoder = Encoder(width, layers, heads, hidden)
        self.post_layernorm = nn.LayerNorm(width)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        x = e.patch_embedding(pixels.to(e.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([e.class_embedding.expand(len(x), 1, -1), x], dim=1) + e.position_embedding.weight
        return self.post_layernorm(self.encoder(self.pre_layrnorm(x))[:, 0])


class HFClip(nn.Module):
    """A HuggingFace ``CLIPModel``'s weights and its two feature functions (float32). A tower
    whose head count is ``None`` is left out (an encoder holds only its own)."""

    def __init__(self, hparams: dict[str, Any], text_heads: int | None = TEXT_HEADS, vision_heads: int | None = VISION_HEADS, text_mlp: int = 0, vision_mlp: int = 0):
        super().__init__()
        h = hparams
        if text_heads is not None:
            self.text_model = TextModel(h["vocab_size"], h["text_width"], h["context_length"], h["text_layers"], text_heads, text_mlp or 4 * h["text_width"])
            self.text_projection = nn.Linear(h["text_width"], h["embed_dim"], bias=False)
        if vision_heads is not None:
            self.vision_model = VisionModel(h["vision_width"], h["patch"], h["grid"], h["vision_layers"], vision_heads, vision_mlp or 4 * h["vision_width"])
            self.visual_projection = nn.Linear(h["vision_width"], h["embed_dim"], bias=False)
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def text_features(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``get_text_features``: [Bt, L] -> [Bt, D]."""
        return self.text_projection(self.text_model(ids, attention_mask))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``get_image_features``: [N, 3, S, S] -> [N, D]."""
        return self.visual_projection(self.vision_model(pixels))


TOWER_NAMES = {"text": ("text_model.", "text_projection."), "vision": ("vision_model.", "visual_projection.")}


def build_hf_clip(checkpoint: OfficialCheckpoint | str | Path, text_heads: int | None = TEXT_HEADS, vision_heads: int | None = VISION_HEADS) -> HFClip:
    """X-Pool's CLIP from its checkpoint (float32, eval); the head counts are the config's
    (``None``: leave that tower out)."""
    ckpt = checkpoint if isinstance(checkpoint, OfficialCheckpoint) else read_checkpoint(str(checkpoint))
    if ckpt.format != "xpool":
        raise ConfigError(f"{ckpt.path} is a {ckpt.format!r} checkpoint, not a HuggingFace CLIP (X-Pool)")
    b = ckpt.backbone
    text_mlp, vision_mlp = (int(b[f"{m}.encoder.layers.0.mlp.fc1.weight"].shape[0]) for m in ("text_model", "vision_model"))
    model = HFClip(ckpt.hparams, text_heads, vision_heads, text_mlp, vision_mlp)
    kept = ("logit_scale", *(TOWER_NAMES["text"] if text_heads is not None else ()), *(TOWER_NAMES["vision"] if vision_heads is not None else ()))
    load_module(model, {k: v for k, v in b.items() if k.startswith(kept)}, f"{ckpt.path}: the HuggingFace CLIP")
    return model.float().eval().requires_grad_(False)


def _spec_checkpoint(spec: ModelSpec, checkpoint: OfficialCheckpoint | None) -> OfficialCheckpoint:
    return checkpoint or read_checkpoint(spec.pretrained or spec.model)


class HFClipFrameEncoder(OfficialFrameEncoder):
    """X-Pool's image tower as a stage-one frame encoder: uint8 frames -> ``get_image_features`` [N, D]
    (float32, as X-Pool runs it)."""

    options = ("heads",)

    @classmethod
    def from_config(cls, cfg: Any, device: torch.device, precision: str, num_frames: int) -> HFClipFrameEncoder:
        path = checkpoint_file(cfg.pretrained, f"frame encoder {cfg.name!r} (xpool)")
        return cls(read_checkpoint(str(path)), device, cfg.batch_size, cfg.heads or VISION_HEADS, official_precision(device, precision))

    def __init__(
        self, checkpoint: OfficialCheckpoint | str | Path, device: torch.device | None = None, batch_size: int = 256, vision_heads: int = VISION_HEADS, precision: str = "fp32"
    ):
        self.device, self.batch_size, self.precision = device or torch.device("cpu"), batch_size, precision
        self.model = build_hf_clip(checkpoint, text_heads=None, vision_heads=vision_heads).to(self.device)
        ckpt = checkpoint if isinstance(checkpoint, OfficialCheckpoint) else read_checkpoint(str(checkpoint))
        self.geometry = clip_geometry(ckpt.hparams["image_size"])
        self.dim = int(ckpt.hparams["embed_dim"])

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision if self.precision in ("fp16", "bf16") else "fp32"):
            return self.model.image_features(pixels.to(self.device)).float()

    def encode(self, frames: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros((len(frames), self.dim), np.float32)
        for start in range(0, len(frames), self.batch_size):
            part = slice(start, start + self.batch_size)
            out[part] = self.encode_pixels(normalise(frames[part], self.device, None if valid is None else valid[part])).cpu().numpy()
        return out


def xpool_token_ids(texts: Sequence[str], context_length: int = 77, tokenizer: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """X-Pool's layout: start, BPE tokens, end (cut at ``context_length``), padded to the longest
    caption with the end-of-text id, attention mask 0 there. open_clip's SimpleTokenizer gives the ids."""
    tokenizer = tokenizer or bpe_tokenizer()
    rows = [[tokenizer.sot_token_id, *tokenizer.encode(t)[: context_length - 2], tokenizer.eot_token_id] for t in texts]
    length = max((len(r) for r in rows), default=0)
    ids = np.full((len(rows), length), tokenizer.eot_token_id, np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return ids, mask


class HFClipText(OfficialTextEncoder):
    """X-Pool's text tower as a text encoder: ``get_text_features`` [T, D]. ``spec.pretrained``
    (or ``spec.model``) is the checkpoint file."""

    packages = ("torch", "open_clip_torch")
    cuts_words = True  # max_words: TeachCLIP feeds X-Pool CLIP4Clip's 32-token captions

    official_kind = "xpool"

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str = "fp32", batch_size: int = 128, checkpoint: OfficialCheckpoint | None = None, text_heads: int = 0):
        text_heads = text_heads or spec.heads or TEXT_HEADS
        self.checkpoint = _spec_checkpoint(spec, checkpoint)
        self.device, self.batch_size = device, batch_size
        self.model = build_hf_clip(self.checkpoint, text_heads=text_heads, vision_heads=None).to(device)
        self.dim = int(self.checkpoint.hparams["embed_dim"])
        self.max_words = min(spec.max_words or self.checkpoint.hparams["context_length"], self.checkpoint.hparams["context_length"])

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return xpool_token_ids(texts, self.max_words, check_vocabulary(self.checkpoint))

    @torch.inference_mode()
    def encode_ids(self, ids: np.ndarray | torch.Tensor, attention_mask: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        mask = None if attention_mask is None else torch.as_tensor(attention_mask, device=self.device)
        return self.model.text_features(ids, mask).float()

    def encode(self, texts: list[str]) -> np.ndarray:
        out = [self.encode_ids(*self.tokenize(texts[s : s + self.batch_size])).cpu().numpy() for s in range(0, len(texts), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
