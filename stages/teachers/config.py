"""A teacher's settings (one ``[extract.teachers.<name>]`` table), torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from teachcache.stages.common.options import name_field, opt
from teachcache.stages.teachers import TEACHERS


@dataclass
class TeacherConfig:
    name: str = name_field("dual")
    kind: str = opt("dual", "how the teacher scores (stages/teachers/<kind>.py)", TEACHERS)
    frames: str = opt("clip", "name of the frame encoder whose features the teacher reads (captions, blackbox: unused)")
    text: str = opt("clip", "name of the text encoder whose sentence (and, xclip, word) vectors the teacher reads")
    scale: float = opt(100.0, "logit scale (fixed for dual and captions; the initial, learnable one for fitted heads)")
    temporal_layers: int = opt(0, "seqTransf layers (CLIP4Clip's cross module) over the frames before the head pools them; an official checkpoint's own count (X-CLIP, TS2-Net: 4)")
    padding: str = opt(
        "official",
        "xclip, xpool: padded words and frames take part in the pooling where the official code lets them (official; only where their features are stored: the official encoder kinds store them, others store zeros, left out) or never (masked)",
    )
    checkpoint: str = opt(
        "", 'head weights to load instead of fitting: our safetensors, or an official X-CLIP, TS2-Net or X-Pool checkpoint ("" = fit in stage one if the head learns)'
    )
    fit_epochs: int = opt(10, "fitting: epochs of symmetric InfoNCE on the cached training split (best epoch on val)")
    fit_lr: float = opt(1e-3, "fitting: AdamW learning rate")
    fit_batch_size: int = opt(64, "fitting: videos (and captions) per step")
    seed: int = opt(0, "fitting: seed of the initialisation and batch order")
    dropout: float = opt(0.1, "xpool: dropout on the residual linear layer while fitting")
    pool: str = opt("mean", "captions: pool the similarities to a video's other captions by mean or max")
    max_captions: int = opt(32, "captions: at most this many captions per video in its caption bank")
    scores: str = opt("", "blackbox: .npz file with scores [T, V], caption_ids [T], video_ids [V]")
    experts: list[str] = opt([], "ce: frame encoders whose frames are its video experts (each averaged over its real frames)")
    shared_dim: int = opt(0, "ce: the width every expert is embedded to (0 = the text encoder's)")
    top_k: int = opt(0, "blackbox: keep the top K videos per caption plus its own (0 = dense float16 [T, V])")
