"""Official checkpoint formats, one file per format, and ``read_checkpoint``: an official file
in, its backbone and head weights (official names) and their hyper-parameters out.

- ``clip4clip``: OpenAI CLIP under ``clip.`` plus a head: CLIP4Clip meanP / seqTransf,
  TeachCLIP's student (AFA), X-CLIP, TS2-Net.
- ``xpool``: HuggingFace ``CLIPModel`` under ``clip.`` plus X-Pool's ``pool_frames.*``.
- ``ce``: Collaborative Experts' CE+ (TeachText's student), ``trained_model.pth`` (its pickled
  config read as inert data) or the state dict; ``checkpoints.ce.read_ce`` builds the network.

Torch-free: configs list the formats without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from teachcache.cache.registry import Registry

if TYPE_CHECKING:
    from teachcache.stages.common.checkpoints.base import OfficialCheckpoint

CHECKPOINT_FORMATS: Registry[Any] = Registry("checkpoint format")
CHECKPOINT_FORMATS.add("clip4clip", "teachcache.stages.common.checkpoints.clip4clip:Clip4ClipFormat", "OpenAI CLIP under clip. (CLIP4Clip, TeachCLIP, X-CLIP, TS2-Net)")
CHECKPOINT_FORMATS.add("xpool", "teachcache.stages.common.checkpoints.xpool:XPoolFormat", "HuggingFace CLIPModel under clip. plus X-Pool's pool_frames")
CHECKPOINT_FORMATS.add(
    "ce", "teachcache.stages.common.checkpoints.ce:CEFormat", "Collaborative Experts / TeachText CE+: pooling., text_pooling. and ce.* (trained_model.pth or its state dict)"
)


def read_checkpoint(path: str, format: str = "auto", model: str = "auto", drop_head: bool = False) -> OfficialCheckpoint:
    """Read an official checkpoint (``torch.load(weights_only=True)`` or safetensors), detect or
    check its format and model from the keys, and refuse keys that do not fit. ``drop_head``
    (with ``model="meanP"``) keeps the backbone of a file with a head, as the official meanP
    loader does; the head's names are then listed in ``ignored``."""
    from teachcache.stages.common.checkpoints.base import read

    return read(path, format, model, drop_head)
