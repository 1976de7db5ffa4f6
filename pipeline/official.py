"""One entry point for an official checkpoint file: ``load_official(path)`` returns its encoders
and its head as teachcache runs them (the same classes stage one and stage two use), to score
pixel tensors and token ids directly::

    from teachcache.pipeline.official import load_official

    model = load_official("msrvtt_xclip_model.bin")           # X-CLIP, TS2-Net, X-Pool, CLIP4Clip, TeachCLIP
    text = model.text_arrays(input_ids)                         # int64 [Bt, L], CLIP4Clip's layout
    video = model.video_arrays(pixels, video_mask)              # float32 [B, F, 3, S, S] CLIP-normalised, mask [B, F]
    logits = model.similarity(text, video)                      # [Bt, B], the official logits (scale included)

The arrays are the store's (``text/t``, ``tokens/t``, ``frames/f``, ``frame_tokens/f``...): what
stage one would write for them, and what the head reads in stage two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from teachcache.cache import schema
from teachcache.stages.common.checkpoints import read_checkpoint
from teachcache.stages.common.checkpoints.base import OfficialCheckpoint
from teachcache.stages.extract.encoders.base import ModelSpec
from teachcache.stages.extract.encoders.hf_clip import TEXT_HEADS, VISION_HEADS, HFClipFrameEncoder, HFClipText
from teachcache.stages.extract.encoders.openai_clip import OpenAIClipFrameEncoder, OpenAIClipText
from teachcache.stages.extract.encoders.ts2net import TS2NetFrameEncoder
from teachcache.stages.student.init import initialise, student_config_of
from teachcache.stages.student.model import Student
from teachcache.stages.teachers.base import TeacherHead
from teachcache.stages.teachers.config import TeacherConfig
from teachcache.stages.teachers.heads import build_teacher, load_checkpoint

TEXT, FRAMES = "t", "f"  # the array names the returned dicts use
TEACHER_MODELS = {"xclip": "xclip", "ts2net": "ts2net", "xpool": "xpool"}  # checkpoint model -> teacher kind


@dataclass
class OfficialModel:
    """An official checkpoint's frame encoder, text encoder and head (a teacher head, or for
    CLIP4Clip and TeachCLIP the student), float32 on ``device`` by default; the arrays it
    returns live on ``device``."""

    checkpoint: OfficialCheckpoint
    frames: Any
    text: Any
    head: TeacherHead | Student
    device: torch.device

    @torch.inference_mode()
    def text_arrays(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Token ids [Bt, L] -> ``text/t`` [Bt, D] and, for the OpenAI towers, every position
        ``tokens/t`` [Bt, L, D] with ``token_mask/t`` (X-Pool: its ``attention_mask``)."""
        if isinstance(self.text, HFClipText):
            return {schema.text(TEXT): self.text.encode_ids(ids, attention_mask)}
        eot, hidden = self.text.encode_ids(ids)
        return {schema.text(TEXT): eot, schema.tokens(TEXT): hidden, schema.token_mask(TEXT): torch.as_tensor(ids, device=self.device) > 0}

    @torch.inference_mode()
    def video_arrays(self, pixels: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """CLIP-normalised pixels [B, F, 3, S, S] (padded frames as the official loaders give
        them: zeros) and the mask [B, F] -> ``frames/f`` [B, F, D], ``frame_mask/f``, and for
        TS2-Net ``frame_tokens/f`` [B, F, 1+k, D] (its selection noise from ``generator``)."""
        b, f = mask.shape
        flat = pixels.reshape(b * f, *pixels.shape[2:]).to(self.device)
        out = {schema.frame_mask(FRAMES): mask.bool().to(self.device)}
        if isinstance(self.frames, TS2NetFrameEncoder):
            tokens = self.frames.model(flat, generator).float().view(b, f, -1, self.frames.dim)
            out |= {schema.frame_tokens(FRAMES): tokens, schema.frames(FRAMES): tokens[:, :, 0]}
        else:
            out[schema.frames(FRAMES)] = self.frames.encode_pixels(flat).view(b, f, -1)
        return out

    def _on_device(self, arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v).to(self.device) for k, v in arrays.items()}

    @torch.inference_mode()
    def similarity(self, text: dict[str, torch.Tensor], video: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's logits [Bt, B] (the official similarity, logit scale included), on the model's device."""
        text, video = self._on_device(text), self._on_device(video)
        if isinstance(self.head, Student):
            return self.head(text[schema.text(TEXT)], video[schema.frames(FRAMES)], video[schema.frame_mask(FRAMES)])[0]
        return self.head.logits(text, video)

    @torch.inference_mode()
    def relevance(self, text: dict[str, torch.Tensor], video: dict[str, torch.Tensor]) -> torch.Tensor:
        """A teacher's raw relevance of caption i over the frames of video i [n, F] (TeachCLIP's
        softmax at temperature 1 of it is the teaching distribution)."""
        if isinstance(self.head, Student):
            raise TypeError(f"{self.checkpoint.path} is a student ({self.checkpoint.model}); its frame weights are head.frame_logits")
        return self.head.relevance(self._on_device(text), self._on_device(video))


def load_official(path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32", frames: int = 0, heads: int = 0, **ts2net: Any) -> OfficialModel:
    """An official checkpoint's encoders and head. ``frames``: frames per video (TS2-Net's token
    shift needs it; the head's tables are sized by it; 0: X-CLIP's own, else 12); ``heads``: X-Pool's attention heads,
    which its file cannot tell (0: ViT-B/32's 8 text, 12 vision); ``ts2net``: ``variant``,
    ``fill``, ``sigma``, ``k`` of TS2-Net's backbone (stages/extract/encoders/ts2net.py)."""
    device = torch.device(device)
    ckpt = read_checkpoint(str(path))
    frames = frames or ckpt.hparams.get("max_frames") or 12
    spec = ModelSpec(str(path), str(path))
    if ckpt.format == "xpool":
        frame_encoder: Any = HFClipFrameEncoder(ckpt, device, vision_heads=heads or VISION_HEADS)
        text_encoder: Any = HFClipText(spec, device, checkpoint=ckpt, text_heads=heads or TEXT_HEADS)
    else:
        frame_encoder = TS2NetFrameEncoder(ckpt, device, precision, frames=frames, **ts2net) if ckpt.model == "ts2net" else OpenAIClipFrameEncoder(ckpt, device, precision)
        text_encoder = OpenAIClipText(spec, device, precision, checkpoint=ckpt)
    head = _head(ckpt, frame_encoder, text_encoder, frames)
    return OfficialModel(ckpt, frame_encoder, text_encoder, head.to(device).eval(), device)


def _head(ckpt: OfficialCheckpoint, frame_encoder: Any, text_encoder: Any, frames: int) -> TeacherHead | Student:
    dim = frame_encoder.dim
    if ckpt.model not in TEACHER_MODELS:
        with torch.random.fork_rng(devices=[]):
            student = Student(student_config_of(ckpt, frames), text_encoder.dim, dim)
        initialise(student, ckpt.path)
        return student
    dims: dict[str, tuple[int, ...]] = {schema.text(TEXT): (text_encoder.dim,), schema.frames(FRAMES): (frames, dim), schema.frame_mask(FRAMES): (frames,)}
    if ckpt.model == "xclip":
        words = ckpt.hparams["max_words"]
        dims |= {schema.tokens(TEXT): (words, text_encoder.dim), schema.token_mask(TEXT): (words,)}
    if ckpt.model == "ts2net":
        dims[schema.frame_tokens(FRAMES)] = (frames, 1 + frame_encoder.model.k, dim)
    config = TeacherConfig(name=ckpt.model, kind=TEACHER_MODELS[ckpt.model], frames=FRAMES, text=TEXT, temporal_layers=ckpt.hparams.get("cross_layers", 0), checkpoint=ckpt.path)
    head = build_teacher(config, dims)
    load_checkpoint(head, ckpt.path)
    return head


def check_store_backbone(store: Any, frames: str, text: str, path: str | Path) -> None:
    """Refuse a store whose ``frames/<frames>`` or ``text/<text>`` another model produced: an
    official student scores only its own CLIP's features."""
    from teachcache.cache.errors import ConfigError
    from teachcache.stages.extract.encoders.base import hash_path

    inputs = store.attrs.get("components", {}).get("inputs", {})
    wanted = f"sha256:{hash_path(Path(path))}"
    frame_weights = inputs.get("frame_encoders", {}).get(frames, {}).get("weights")
    text_weights = inputs.get("text_encoders", {}).get(text)
    for array, weights, kind in ((schema.frames(frames), frame_weights, "frame"), (schema.text(text), text_weights, "text")):
        if weights != wanted:
            raise ConfigError(
                f"{array} in store {store.path} came from {weights or 'another model'}, not {path}: extract it with "
                f"[extract.{kind}_encoders.{array.split('/')[1]}] kind = 'clip4clip', pretrained = '{path}'"
            )


def evaluate_official(store: Any, path: str | Path, frames: str, text: str, split: str = "test", device: str | torch.device = "cpu") -> dict[str, Any]:
    """Retrieval metrics of an official CLIP4Clip or TeachCLIP student on a store split whose
    ``frames/<frames>`` and ``text/<text>`` that checkpoint's own CLIP produced."""
    from teachcache.stages.common.data import load_split
    from teachcache.stages.student.evaluate import evaluate

    check_store_backbone(store, frames, text, path)
    ckpt = read_checkpoint(str(path))
    arrays = (schema.text(text), schema.frames(frames), schema.frame_mask(frames))
    dims = {a.name: a.tail for a in store.arrays}
    with torch.random.fork_rng(devices=[]):
        student = Student(student_config_of(ckpt, dims[arrays[1]][0]), dims[arrays[0]][-1], dims[arrays[1]][-1], text, frames)
    loaded = initialise(student, str(path))
    data = load_split(store, split, list(arrays))
    device = torch.device(device)
    metrics = evaluate(student.to(device), data, device)
    return {"checkpoint": str(path), "model": ckpt.model, "loaded": loaded, "split": split, "videos": data.num_videos, "captions": data.num_captions, **metrics}
