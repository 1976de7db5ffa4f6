"""``ts2net``: TS2-Net's visual backbone as its code runs it (the notes' section 3.7).

- **Token shift** in visual layers 10 and 11 (``PatchShift``): on the attention's input only,
  whole tokens move between the frames of a video: tokens 1, 8, 15, ... from frame t-1,
  tokens 4, 11, 18, ... from frame t+1 (the first and last frame keep their own); CLS never.
  The attention weights of those layers are the file's ``attn.net.*``.
- **Token selection**: a score per token (``ScorePredictor``: LayerNorm, exact GELU, the CLS
  appended to each token, tanh) and ``PerturbedTopK`` over the 49 patches: k = 3 of
  ``samples`` = 500 perturbed top-k draws with noise ``sigma`` = 0.05 (drawn in eval too), the
  chosen indices sorted ascending, averaged one-hot indicators. The noise comes from a CPU
  ``torch.Generator`` the caller passes: one [N_frames, samples, 49] draw per call, in frame
  order (with ``torch.manual_seed(s)`` before the official ``get_visual_output``, the same
  draw as ``torch.Generator().manual_seed(s)``). ``sigma = 0`` is the hard top-k.
- Per frame [CLS, 3 selected tokens]: [N, 4, D].

``variant="teachclip"`` is TeachCLIP's ``TS2Net`` wrapper (section 3.8): no token shift, and
layers 10-11's attention from a base CLIP (``fill``: e.g. ``teachclip_base_clip_fill.safetensors``
or OpenAI ViT-B/32's ``visual.transformer.resblocks.{10,11}.attn.*``) instead of the file's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from teachcache.cache.errors import ConfigError
from teachcache.stages.common.checkpoints import read_checkpoint
from teachcache.stages.common.checkpoints.base import CheckpointError, OfficialCheckpoint, load_module
from teachcache.stages.extract.encoders.base import OfficialFrameEncoder, checkpoint_file, hash_path, official_precision
from teachcache.stages.extract.encoders.openai_clip import VisualTower, as_checkpoint, build_visual, clip_geometry, normalise

VARIANTS = ("ts2net", "teachclip")
SELECTOR_PREFIX = "visual_token_selector.score_predictor."


class PatchShift(nn.Module):
    """TS2-Net's token shift over sequence-first tokens [L, N = videos * frames, W] (``frames`` per video)."""

    def __init__(self, frames: int, n_div: int = 7):
        super().__init__()
        self.frames, self.n_div = frames, n_div

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        length, n, width = h.shape
        if n % self.frames:
            raise ConfigError(f"the token shift needs whole videos of {self.frames} frames; got {n} frames")
        x = h.permute(1, 0, 2).reshape(-1, self.frames, length, width)
        out = x.clone()
        step = length // self.n_div
        back, ahead = torch.arange(1, length, step), torch.arange(4, length, step)
        out[:, 1:, back] = x[:, :-1, back]
        out[:, :-1, ahead] = x[:, 1:, ahead]
        return out.reshape(n, length, width).permute(1, 0, 2)


class ScorePredictor(nn.Module):
    """TS2-Net's ``PredictorLG``: a score in (-1, 1) per token [N, L, D] -> [N, L]."""

    def __init__(self, dim: int):
        super().__init__()
        self.in_conv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim // 2, bias=False), nn.GELU())
        self.out_conv = nn.Sequential(nn.Linear(dim, dim // 2, bias=False), nn.GELU(), nn.Linear(dim // 2, 1, bias=False), nn.Tanh())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(tokens)
        return self.out_conv(torch.cat([h, h[:, :1].expand_as(h)], dim=-1)).squeeze(-1)


def perturbed_topk(scores: torch.Tensor, k: int, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Indicators [N, k, P]: the share of the perturbed draws (``scores + sigma * noise``, noise
    [N, S, P]) whose j-th smallest chosen index is each patch."""
    perturbed = scores.unsqueeze(1) + noise.to(scores) * sigma
    chosen = torch.topk(perturbed, k=k, dim=-1, sorted=False).indices.sort(dim=-1).values
    return F.one_hot(chosen, num_classes=scores.shape[-1]).float().mean(dim=1)


def select_tokens(tokens: torch.Tensor, scores: torch.Tensor, noise: torch.Tensor, k: int = 3, sigma: float = 0.05) -> torch.Tensor:
    """[CLS, k selected patch mixtures] per frame: tokens [N, 1+P, D], scores [N, 1+P] -> [N, 1+k, D]."""
    indicators = perturbed_topk(scores[:, 1:], k, noise, sigma)
    return torch.cat([tokens[:, :1], torch.einsum("nkp,npd->nkd", indicators, tokens[:, 1:])], dim=1)


class TS2NetVisual(nn.Module):
    """TS2-Net's visual backbone: CLIP's visual tower (token shift in ``shift_layers``), the
    score predictor and the perturbed top-k selection."""

    def __init__(self, tower: VisualTower, predictor: ScorePredictor, frames: int, shift_layers: tuple[int, ...], k: int = 3, samples: int = 500, sigma: float = 0.05):
        super().__init__()
        self.tower, self.predictor = tower, predictor
        self.frames, self.k, self.samples, self.sigma = frames, k, samples, sigma
        for i in shift_layers:
            self.tower.transformer.resblocks[i].shift = PatchShift(frames)

    def noise(self, frames: int, patches: int, generator: torch.Generator | None) -> torch.Tensor:
        """One draw [frames, samples, patches] on the CPU generator (float32, as ``torch.normal``)."""
        return torch.normal(0.0, 1.0, size=(frames, self.samples, patches), generator=generator)

    def score(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every projected token [N, 1+P, D] and its score [N, 1+P] (float32)."""
        tokens = self.tower.tokens(pixels)
        return tokens, self.predictor(tokens)

    def forward(self, pixels: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels of whole videos [N, 3, S, S] -> [N, 1+k, D]; the noise is drawn from ``generator``
        unless given ([N, samples, P])."""
        tokens, scores = self.score(pixels)
        if noise is None:
            noise = self.noise(len(tokens), tokens.shape[1] - 1, generator)
        return select_tokens(tokens, scores, noise.to(tokens.device), self.k, self.sigma)


def teachclip_state(checkpoint: OfficialCheckpoint, fill: Mapping[str, torch.Tensor] | str | Path) -> dict[str, torch.Tensor]:
    """The visual weights TeachCLIP's wrapper runs: layers 10-11's attention from ``fill``
    (official names, with or without ``clip.``), the rest from the checkpoint."""
    if not isinstance(fill, Mapping):
        from safetensors.torch import load_file

        fill = load_file(str(fill))
    fill = {k.removeprefix("clip."): v for k, v in fill.items()}
    needed = {
        f"visual.transformer.resblocks.{i}.attn.{n}" for i in checkpoint.hparams["shift_layers"] for n in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
    }
    missing = sorted(needed - set(fill))
    if missing:
        raise CheckpointError(f"the base-CLIP fill for TeachCLIP's TS2-Net lacks {missing}", missing)
    return {**checkpoint.backbone, **{k: fill[k] for k in needed}}


def build_ts2net_visual(
    checkpoint: OfficialCheckpoint | str | Path,
    frames: int = 12,
    variant: str = "ts2net",
    fill: Mapping[str, torch.Tensor] | str | Path | None = None,
    precision: str = "fp32",
    sigma: float = 0.05,
    samples: int = 500,
    k: int = 3,
) -> TS2NetVisual:
    """TS2-Net's visual backbone from a TS2-Net checkpoint (``frames`` = the official max_frames)."""
    ckpt = as_checkpoint(checkpoint)
    if ckpt.model != "ts2net":
        raise CheckpointError(f"{ckpt.path} is a {ckpt.model!r} checkpoint, not TS2-Net's")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown TS2-Net variant {variant!r}; choose one of {VARIANTS}")
    if variant == "teachclip" and fill is None:
        raise ConfigError("TeachCLIP's TS2-Net variant needs fill: the base CLIP's layer 10-11 attention weights")
    state = teachclip_state(ckpt, fill) if variant == "teachclip" and fill is not None else ckpt.backbone
    tower = build_visual(ckpt, precision, state)
    predictor = ScorePredictor(ckpt.hparams["embed_dim"])
    load_module(predictor, {k[len(SELECTOR_PREFIX) :]: v for k, v in ckpt.head.items() if k.startswith(SELECTOR_PREFIX)}, f"{ckpt.path}: the token selector")
    shift = tuple(ckpt.hparams["shift_layers"]) if variant == "ts2net" else ()
    return TS2NetVisual(tower, predictor.eval().requires_grad_(False), frames, shift, k, samples, sigma).eval()


class TS2NetFrameEncoder(OfficialFrameEncoder):
    """TS2-Net's visual backbone as a stage-one frame encoder. Frames come as whole videos of
    ``frames`` each (padding included: ``valid`` false gives a zero frame, as the official loader).
    ``encode``: the CLS per frame [N, D]; ``encode_tokens``: [CLS, 3 selected] per frame [N, 4, D]."""

    options = ("variant", "tokens", "sigma", "noise_seed")

    @classmethod
    def from_config(cls, cfg: Any, device: torch.device, precision: str, num_frames: int) -> TS2NetFrameEncoder:
        path = checkpoint_file(cfg.pretrained, f"frame encoder {cfg.name!r} (ts2net)")
        fill = str(checkpoint_file(cfg.fill, f"frame encoder {cfg.name!r} (ts2net, teachclip variant): fill")) if cfg.variant == "teachclip" else None
        enc = cls(
            read_checkpoint(str(path)), device, official_precision(device, precision), cfg.batch_size, num_frames, variant=cfg.variant, fill=fill, sigma=cfg.sigma, k=cfg.tokens
        )
        enc.noise_seed = cfg.noise_seed
        return enc

    @classmethod
    def available(cls, cfg: Any) -> None:
        super().available(cfg)
        if cfg.variant not in VARIANTS:
            raise ConfigError(f"frame encoder {cfg.name!r}: unknown TS2-Net variant {cfg.variant!r}; choose one of {VARIANTS}")
        if cfg.variant == "teachclip":
            checkpoint_file(cfg.fill, f"frame encoder {cfg.name!r} (ts2net, teachclip variant): fill")

    @classmethod
    def identity(cls, cfg: Any) -> dict[str, Any]:
        out = super().identity(cfg)
        if cfg.variant == "teachclip":
            out["fill"] = f"sha256:{hash_path(Path(cfg.fill))}" if Path(cfg.fill).is_file() else f"missing:{cfg.fill}"
        return out

    def __init__(
        self, checkpoint: OfficialCheckpoint | str | Path, device: torch.device | None = None, precision: str = "fp32", batch_size: int = 240, frames: int = 12, **options
    ):
        self.checkpoint = as_checkpoint(checkpoint)
        self.device, self.precision, self.frames = device or torch.device("cpu"), precision, frames
        self.batch_size = max(frames, batch_size - batch_size % frames)  # whole videos per batch
        self.model = build_ts2net_visual(self.checkpoint, frames, precision=precision, **options).to(self.device)
        self.tokens_per_frame = 1 + self.model.k
        self.noise_seed = 0  # shard s of a store draws its selection noise from noise_seed + s
        self.geometry = clip_geometry(self.checkpoint.hparams["image_size"])
        self.dim = int(self.checkpoint.hparams["embed_dim"])

    def _pixels(self, frames: np.ndarray, valid: np.ndarray | None, part: slice) -> torch.Tensor:
        return normalise(frames[part], self.device, None if valid is None else valid[part])

    @torch.inference_mode()
    def encode(self, frames: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """uint8 frames [N, S, S, 3] -> the CLS feature of each frame, float32 [N, D]."""
        out = np.zeros((len(frames), self.dim), np.float32)
        for start in range(0, len(frames), self.batch_size):
            part = slice(start, start + self.batch_size)
            out[part] = self.model.tower(self._pixels(frames, valid, part)).cpu().numpy()
        return out

    @torch.inference_mode()
    def encode_tokens(self, frames: np.ndarray, generator: torch.Generator | None, valid: np.ndarray | None = None) -> np.ndarray:
        """uint8 frames [N, S, S, 3] -> [N, 1+k, D] float32, the noise drawn once for all N frames."""
        grid = self.checkpoint.hparams["grid"]
        noise = self.model.noise(len(frames), grid * grid, generator)
        out = np.zeros((len(frames), 1 + self.model.k, self.dim), np.float32)
        for start in range(0, len(frames), self.batch_size):
            part = slice(start, start + self.batch_size)
            out[part] = self.model(self._pixels(frames, valid, part), noise=noise[part]).cpu().numpy()
        return out
