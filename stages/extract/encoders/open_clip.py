"""``open_clip``: CLIP towers from open_clip's factory (hub tag, local checkpoint file, or
seeded random weights). The image tower is stage one's frame encoder; the text tower a text
encoder kind (the end-of-text token after the projection, not normalised)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from teachcache.cache.errors import ConfigError, InputMissing, ModelUnavailable
from teachcache.stages.common.device import autocast
from teachcache.stages.extract.decode import GeometrySpec
from teachcache.stages.extract.encoders.base import ModelSpec, TextEncoder, hash_path, hub_cached, pad_tokens, quiet_loading, require_hub

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"


def register_model_configs() -> None:
    """Make the shipped tiny open_clip configs known to open_clip's factory."""
    import open_clip

    known = set(open_clip.list_models())
    for path in sorted(MODEL_CONFIG_DIR.glob("*.json")):
        if path.stem not in known:
            open_clip.add_model_config(path)


def weights_identity(spec: ModelSpec) -> str:
    """A string that changes when the weights change: a file's (or folder's) content hash,
    the hub tag, or the random seed. Cheap enough to compute without loading the model."""
    if not spec.pretrained:
        return f"random:seed={spec.seed}"
    path = Path(spec.pretrained)
    if path.exists():
        return f"sha256:{hash_path(path)}"
    return f"hub:{spec.pretrained}"


def open_clip_identity(spec: ModelSpec) -> dict[str, Any]:
    """What determines an open_clip tower's output besides its weights: the architecture
    (model config) and the preprocessing of its pretrained tag (defaults otherwise)."""
    import open_clip

    register_model_configs()
    pretrained_cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained) if spec.pretrained else {}
    return {
        "architecture": open_clip.get_model_config(spec.model),
        "preprocess": {k: pretrained_cfg.get(k) for k in ("mean", "std", "interpolation", "resize_mode")},
        "weights": weights_identity(spec),
    }


def open_clip_available(spec: ModelSpec) -> None:
    """Refuse, without loading anything, an architecture open_clip does not know, a checkpoint
    file that is not there, an unknown tag, or a tag whose weights are neither cached nor
    downloadable now (offline: at once, without the hub client's retries)."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    register_model_configs()
    if spec.model not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {spec.model!r}; see open_clip.list_models() or add a config json")
    if not spec.pretrained or Path(spec.pretrained).exists():
        return
    if "/" in spec.pretrained or spec.pretrained.endswith(CHECKPOINT_SUFFIXES):
        raise InputMissing(f"open_clip {spec.model!r}: checkpoint file {spec.pretrained} not found")
    cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(spec.model)
        raise ConfigError(f"open_clip {spec.model!r} has no pretrained tag {spec.pretrained!r} (it has {tags}); or give a local checkpoint file")
    hf_hub = str(cfg.get("hf_hub", ""))  # "org/repo/" or "org/repo/file.bin", as open_clip reads it
    repo, filename = os.path.split(hf_hub)
    cached = bool(repo) and hub_cached(repo, (filename,) if filename else (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME))
    url = str(cfg.get("url", ""))
    cached = cached or (bool(url) and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file())
    require_hub(
        f"open_clip {spec.model!r} with pretrained={spec.pretrained!r}",
        cached,
        'give a local checkpoint file (pretrained = "/path/to/weights.pt"), or pretrained = "" for seeded random weights',
    )


@lru_cache(maxsize=8)
def load_open_clip(model: str, pretrained: str, seed: int, device: str) -> tuple[Any, dict[str, Any]]:
    """Create (once per process) an open_clip model in eval mode and its preprocess config."""
    import open_clip

    register_model_configs()
    if model not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {model!r}; see open_clip.list_models() or add a config json")
    torch.manual_seed(seed)
    try:
        with quiet_loading():
            clip = open_clip.create_model(model, pretrained=pretrained or None, device=device)
    except RuntimeError as exc:
        raise ModelUnavailable(
            f"could not load open_clip {model!r} with pretrained={pretrained!r}: {exc}. "
            'Give a local checkpoint path, or pretrained = "" for random weights (no hub is reachable offline).'
        ) from exc
    return clip.eval(), clip.visual.preprocess_cfg


class FrameEncoder:
    """An open_clip image tower: uint8 frames in, projected (unnormalised) features out."""

    blank_padding = False  # padded frame slots are stored as zeros
    frame_differences = False  # sees each video's frames (True: their signed differences, a motion expert)
    tokens_per_frame = 0  # no frame tokens beside the frame vector

    @classmethod
    def from_config(cls, cfg: Any, device: torch.device, precision: str, num_frames: int) -> FrameEncoder:
        return cls(ModelSpec(cfg.model, cfg.pretrained, cfg.seed), device, precision, cfg.batch_size)

    @classmethod
    def available(cls, cfg: Any) -> None:
        open_clip_available(ModelSpec(cfg.model, cfg.pretrained, cfg.seed))

    @classmethod
    def identity(cls, cfg: Any) -> dict[str, Any]:
        return open_clip_identity(ModelSpec(cfg.model, cfg.pretrained, cfg.seed))

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str = "auto", batch_size: int = 256):
        self.spec, self.device, self.precision, self.batch_size = spec, device, precision, batch_size
        self.model, cfg = load_open_clip(spec.model, spec.pretrained, spec.seed, str(device))
        size = cfg["size"]
        self.geometry = GeometrySpec(
            image_size=int(size if isinstance(size, int) else size[0]),
            interpolation=cfg.get("interpolation", "bicubic"),
            resize_mode=cfg.get("resize_mode", "shortest"),
        )
        self.mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
        self.dim = int(self.model.visual.output_dim)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Encode uint8 frames [N, S, S, 3] (already resized and cropped) to float32 [N, D]."""
        out = np.zeros((len(frames), self.dim), dtype=np.float32)
        for start in range(0, len(frames), self.batch_size):
            chunk = torch.from_numpy(frames[start : start + self.batch_size]).to(self.device)
            pixels = (chunk.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
            with autocast(self.device, self.precision):
                feats = self.model.encode_image(pixels)
            out[start : start + len(chunk)] = feats.float().cpu().numpy()
        return out


class OpenClipText(TextEncoder):
    """The CLIP text tower: end-of-text token after the projection, not normalised."""

    packages = ("open_clip_torch", "torch")
    gives_tokens = True
    cuts_words = True

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        import open_clip

        self.model, _ = load_open_clip(spec.model, spec.pretrained, spec.seed, str(device))
        self._tokenizer = open_clip.get_tokenizer(spec.model)
        self.context_length = int(self.model.context_length)
        if spec.max_words > self.context_length:
            raise ConfigError(f"max_words = {spec.max_words} exceeds {spec.model}'s context length {self.context_length}")
        self.max_words = spec.max_words
        self.device, self.precision, self.batch_size = device, precision, batch_size
        self.dim = int(self.model.text_projection.shape[1] if self.model.text_projection is not None else self.model.transformer.width)

    @classmethod
    def weights_identity(cls, spec: ModelSpec) -> dict[str, Any]:
        return open_clip_identity(spec)

    @classmethod
    def check_available(cls, spec: ModelSpec) -> None:
        open_clip_available(spec)

    def tokenizer(self, texts: list[str]) -> torch.Tensor:
        """Token ids at the model's context length; with ``max_words`` the caption is cut to that
        many tokens (end-of-text kept last, as CLIP4Clip's max_words) and zero-padded, which
        leaves the causal text tower's end-of-text output as at that length."""
        if not self.max_words:
            return self._tokenizer(texts)
        tokens = self._tokenizer(texts, context_length=self.max_words)
        return torch.nn.functional.pad(tokens, (0, self.context_length - self.max_words))

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start : start + self.batch_size]).to(self.device)
            with autocast(self.device, self.precision):
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Every token up to end-of-text after ``ln_final`` and the text projection (X-CLIP's word features)."""
        captured: list[torch.Tensor] = []
        hook = self.model.ln_final.register_forward_hook(lambda _m, _i, out: captured.append(out))
        per_text: list[np.ndarray] = []
        try:
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(texts[start : start + self.batch_size]).to(self.device)
                captured.clear()
                with autocast(self.device, self.precision):
                    self.model.encode_text(tokens)
                    hidden = captured[-1]
                    projection = self.model.text_projection
                    hidden = projection(hidden) if isinstance(projection, torch.nn.Module) else hidden @ projection
                ends = tokens.argmax(dim=-1)  # the end-of-text token has the largest id
                words = hidden.float().cpu().numpy()
                per_text.extend(words[i, : int(ends[i]) + 1] for i in range(len(words)))
        finally:
            hook.remove()
        return pad_tokens(per_text, length, self.dim)
