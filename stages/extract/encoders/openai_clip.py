"""``openai_clip``: the OpenAI CLIP towers of a CLIP4Clip-family checkpoint (CLIP4Clip,
TeachCLIP, X-CLIP, TS2-Net), read by ``teachcache.stages.common.checkpoints``.

The towers compute as the official code (the notes' sections 3.1-3.3): QuickGELU, pre-norm
blocks, the visual tower's ``ln_post @ proj`` on every token (CLS first), the text tower run
on the ``max_words``-long ids with a causal mask and no padding mask, its end-of-text feature
at ``argmax(ids)``. ``precision="fp32"`` (the default) computes in float32 (the golden
``_fp32`` outputs); ``"fp16_official"`` reproduces the official float16 towers (float16
weights, LayerNorms in float32, pixels and token embeddings cast to float16)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from teachcache.cache.errors import ConfigError
from teachcache.stages.common.checkpoints import read_checkpoint
from teachcache.stages.common.checkpoints.base import OfficialCheckpoint, load_module
from teachcache.stages.common.device import autocast
from teachcache.stages.common.layers import LayerNorm, Transformer, causal_mask
from teachcache.stages.extract.decode import GeometrySpec
from teachcache.stages.extract.encoders.base import ModelSpec, OfficialFrameEncoder, OfficialTextEncoder, checkpoint_file, official_precision

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PRECISIONS = ("auto", "fp32", "fp16_official", "fp16", "bf16")  # auto = fp32; fp16/bf16 = autocast


class VisualTower(nn.Module):
    """OpenAI CLIP's image transformer, named as ``clip.visual.*``."""

    def __init__(self, width: int, layers: int, heads: int, patch: int, grid: int, embed_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, embed_dim))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the CLS first, plus positions, after ``ln_pre``: [N, 1+g*g, width]."""
        dtype = self.conv1.weight.dtype
        x = self.conv1(pixels.to(dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(dtype).expand(x.shape[0], 1, -1)
        return self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(dtype))

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Every token after ``ln_post @ proj``, float32 [N, 1+g*g, D] (CLS first) from normalised pixels [N, 3, H, W]."""
        return (self.ln_post(self.transformer(self.embed(pixels))) @ self.proj).float()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The CLS feature per frame, float32 [N, D]."""
        return self.tokens(pixels)[:, 0]


class TextTower(nn.Module):
    """OpenAI CLIP's text transformer, named as the ``clip.*`` text keys."""

    def __init__(self, width: int, layers: int, heads: int, vocab_size: int, context_length: int, embed_dim: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, embed_dim))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [Bt, L] (L <= context) -> the end-of-text feature [Bt, D] and every projected
        position [Bt, L, D] (float32; positions after the end-of-text included, unmasked)."""
        dtype, length = self.text_projection.dtype, ids.shape[1]
        if length > self.positional_embedding.shape[0]:
            raise ConfigError(f"{length} tokens exceed the text tower's context length {self.positional_embedding.shape[0]}")
        x = self.token_embedding(ids).to(dtype) + self.positional_embedding[:length].to(dtype)
        x = self.transformer(x, causal_mask(length).to(ids.device))
        hidden = self.ln_final(x).to(dtype) @ self.text_projection
        eot = hidden[torch.arange(len(ids), device=ids.device), ids.argmax(dim=-1)]
        return eot.float(), hidden.float()


def to_official_half(module: nn.Module) -> nn.Module:
    """Cast as OpenAI's ``convert_weights`` does: convolutions, linear layers, attention and the
    projections to float16; embeddings, positions and LayerNorms stay float32."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            layer.half()
        if isinstance(layer, nn.MultiheadAttention):
            for name in ("in_proj_weight", "in_proj_bias"):
                tensor = getattr(layer, name)
                if tensor is not None:
                    tensor.data = tensor.data.half()
        for name in ("proj", "text_projection"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, nn.Parameter):
                tensor.data = tensor.data.half()
    return module


def finish(tower: nn.Module, precision: str) -> nn.Module:
    """Eval mode, frozen, and cast for the precision (``fp16_official``: the official float16 towers)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} for an official backbone; choose one of {PRECISIONS}")
    tower.eval().requires_grad_(False)
    return to_official_half(tower) if precision == "fp16_official" else tower


def as_checkpoint(checkpoint: OfficialCheckpoint | str | Path) -> OfficialCheckpoint:
    return checkpoint if isinstance(checkpoint, OfficialCheckpoint) else read_checkpoint(str(checkpoint))


def build_visual(checkpoint: OfficialCheckpoint | str | Path, precision: str = "fp32", state: dict[str, torch.Tensor] | None = None) -> VisualTower:
    """The visual tower of a CLIP4Clip-family checkpoint (``state``: other ``visual.*`` weights to use)."""
    ckpt = as_checkpoint(checkpoint)
    h = ckpt.hparams
    tower = VisualTower(h["vision_width"], h["vision_layers"], h["vision_heads"], h["patch"], h["grid"], h["embed_dim"])
    state = state if state is not None else ckpt.backbone
    load_module(tower, {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}, f"{ckpt.path}: the visual tower")
    finish(tower, precision)
    return tower


def build_text(checkpoint: OfficialCheckpoint | str | Path, precision: str = "fp32") -> TextTower:
    """The text tower of a CLIP4Clip-family checkpoint."""
    ckpt = as_checkpoint(checkpoint)
    h = ckpt.hparams
    tower = TextTower(h["text_width"], h["text_layers"], h["text_heads"], h["vocab_size"], h["context_length"], h["embed_dim"])
    state = {k: v for k, v in ckpt.backbone.items() if not k.startswith("visual.") and k != "logit_scale"}
    load_module(tower, state, f"{ckpt.path}: the text tower")
    finish(tower, precision)
    return tower


def normalise(frames: np.ndarray, device: torch.device, valid: np.ndarray | None = None, channels_last: bool = True) -> torch.Tensor:
    """uint8 frames [N, S, S, 3] -> CLIP-normalised float32 pixels [N, 3, S, S] on the device
    (``(x / 255 - mean) / std``); frames where ``valid`` is false become exact zeros, as the
    official loaders pad a short video."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    x = (x.permute(0, 3, 1, 2) if channels_last else x).float() / 255.0
    x = (x - torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    if valid is not None:
        x[~torch.from_numpy(np.asarray(valid, bool)).to(device)] = 0.0
    return x


def clip_geometry(image_size: int) -> GeometrySpec:
    """CLIP's eval geometry: bicubic resize of the short side, centre crop."""
    return GeometrySpec(image_size=image_size, interpolation="bicubic", resize_mode="shortest")


class OpenAIClipFrameEncoder(OfficialFrameEncoder):
    """The visual tower of an official checkpoint as a stage-one frame encoder: uint8 frames in,
    the CLS feature after the projection (not normalised) out."""

    @classmethod
    def from_config(cls, cfg: Any, device: torch.device, precision: str, num_frames: int) -> OpenAIClipFrameEncoder:
        path = checkpoint_file(cfg.pretrained, f"frame encoder {cfg.name!r} (clip4clip)")
        return cls(read_checkpoint(str(path)), device, official_precision(device, precision), cfg.batch_size)

    def __init__(self, checkpoint: OfficialCheckpoint | str | Path, device: torch.device | None = None, precision: str = "fp32", batch_size: int = 256):
        self.checkpoint = as_checkpoint(checkpoint)
        self.device, self.precision, self.batch_size = device or torch.device("cpu"), precision, batch_size
        self.tower = build_visual(self.checkpoint, precision).to(self.device)
        self.geometry = clip_geometry(self.checkpoint.hparams["image_size"])
        self.dim = int(self.checkpoint.hparams["embed_dim"])

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor, tokens: bool = False) -> torch.Tensor:
        """Normalised pixels [N, 3, S, S] -> CLS features [N, D] (or every token [N, 1+g*g, D]), float32."""
        with autocast(self.device, self.precision if self.precision in ("fp16", "bf16") else "fp32"):
            out = self.tower.tokens(pixels.to(self.device)) if tokens else self.tower(pixels.to(self.device))
        return out.float()

    def encode(self, frames: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """uint8 frames [N, S, S, 3] (resized and cropped) -> float32 [N, D]; ``valid`` false: a zero frame."""
        out = np.zeros((len(frames), self.dim), np.float32)
        for start in range(0, len(frames), self.batch_size):
            part = slice(start, start + self.batch_size)
            pixels = normalise(frames[part], self.device, None if valid is None else valid[part])
            out[part] = self.encode_pixels(pixels).cpu().numpy()
        return out


@lru_cache(maxsize=1)
def bpe_tokenizer() -> Any:
    """CLIP's BPE tokenizer (open_clip's SimpleTokenizer: the vocabulary the official code ships), built once."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def check_vocabulary(checkpoint: OfficialCheckpoint) -> Any:
    """The BPE tokenizer, refused for a checkpoint whose vocabulary is not CLIP's."""
    tokenizer = bpe_tokenizer()
    if tokenizer.eot_token_id >= checkpoint.hparams["vocab_size"]:
        raise ConfigError(f"{checkpoint.path}: its vocabulary has {checkpoint.hparams['vocab_size']} ids, CLIP's BPE tokenizer needs {tokenizer.eot_token_id + 1}")
    return tokenizer


def clip4clip_token_ids(texts: Sequence[str], max_words: int, tokenizer: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """CLIP4Clip's tokenisation: start, at most ``max_words - 2`` BPE tokens, end, zero padding.
    Ids and mask, int64 [T, max_words]. ``tokenizer``: CLIP's BPE tokenizer by default."""
    tokenizer = tokenizer or bpe_tokenizer()
    ids = np.zeros((len(texts), max_words), np.int64)
    for i, text in enumerate(texts):
        words = [tokenizer.sot_token_id, *tokenizer.encode(text)[: max_words - 2], tokenizer.eot_token_id]
        ids[i, : len(words)] = words
    return ids, (ids != 0).astype(np.int64)


class OpenAIClipText(OfficialTextEncoder):
    """The text tower of an official checkpoint as a text encoder: the end-of-text feature after
    the projection (not normalised), and every projected position as word features.
    ``spec.pretrained`` (or ``spec.model``) is the checkpoint file; ``spec.max_words`` the
    caption length, start and end included (0: the checkpoint's own, else 32 as CLIP4Clip)."""

    packages = ("torch", "open_clip_torch")
    gives_tokens = True
    cuts_words = True

    official_kind = "clip4clip"

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str = "fp32", batch_size: int = 128, checkpoint: OfficialCheckpoint | None = None):
        self.checkpoint = checkpoint or read_checkpoint(spec.pretrained or spec.model)
        precision = official_precision(device, precision)
        self.device, self.precision, self.batch_size = device, precision, batch_size
        self.tower = build_text(self.checkpoint, precision).to(device)
        h = self.checkpoint.hparams
        self.max_words = spec.max_words or h.get("max_words") or 32
        if self.max_words > h["context_length"]:
            raise ConfigError(f"max_words = {self.max_words} exceeds the checkpoint's context length {h['context_length']}")
        self.dim = int(h["embed_dim"])

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """CLIP4Clip's ids and mask [T, max_words] (refused if the checkpoint's vocabulary is not CLIP's)."""
        return clip4clip_token_ids(texts, self.max_words, check_vocabulary(self.checkpoint))

    @torch.inference_mode()
    def encode_ids(self, ids: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [T, L] -> end-of-text features [T, D] and every position [T, L, D] (float32, on the device)."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        with autocast(self.device, self.precision if self.precision in ("fp16", "bf16") else "fp32"):
            eot, hidden = self.tower(ids)
        return eot.float(), hidden.float()

    def encode(self, texts: list[str]) -> np.ndarray:
        out = [self.encode_ids(self.tokenize(texts[s : s + self.batch_size])[0])[0].cpu().numpy() for s in range(0, len(texts), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Every projected position [T, length, D] (X-CLIP's word features: all ``max_words``
        positions, cut or zero-padded to ``length``) and the mask of the real tokens [T, length]."""
        feats = np.zeros((len(texts), length, self.dim), np.float32)
        mask = np.zeros((len(texts), length), bool)
        n = min(length, self.max_words)
        for s in range(0, len(texts), self.batch_size):
            ids, real = self.tokenize(texts[s : s + self.batch_size])
            feats[s : s + len(ids), :n] = self.encode_ids(ids)[1].cpu().numpy()[:, :n]
            mask[s : s + len(ids), :n] = real[:, :n].astype(bool)
        return feats, mask
