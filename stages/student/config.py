"""Stage two's settings, free of torch so that the CLI (and every decode worker, which
imports the main program) starts fast: the student's heads, the objective, denoising,
training."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from teachcache.stages.common.options import opt
from teachcache.stages.student import STUDENTS, VIDEO_HEADS
from teachcache.stages.student.objectives import OBJECTIVES


@dataclass
class StudentConfig:
    kind: str = opt("clip4clip", "the student", STUDENTS)
    video_head: str = opt("seqTransf", "how the frames become one video vector", VIDEO_HEADS)
    layers: int = opt(4, "seqTransf: residual transformer layers over the frames (CLIP4Clip's cross module: QuickGELU, LayerNorm eps 1e-12)")
    heads: int = opt(0, "seqTransf: attention heads (must divide the frame width); 0 = CLIP4Clip's width // 64")
    max_frames: int = opt(77, "seqTransf: size of the frame position embedding table (CLIP4Clip: CLIP's context length, 77)")
    init: str = opt(
        "",
        "start the heads from a file: a CLIP4Clip or TeachCLIP checkpoint (seqTransf, AFA, scale) or any CLIP state dict (seqTransf from its text tower's first layers, as CLIP4Clip); ce: CE's trained_model.pth or state dict over the same experts; \"\" = random init",
    )
    video_projection: bool = opt(True, "a linear video projection (identity-initialised): meanP has no other trainable video parameter")
    afa: bool = opt(True, "TeachCLIP's attentional frame aggregation instead of the plain mean")
    afa_masked: bool = opt(True, "mask padded frames in both AFA softmaxes (TeachCLIP does not: false reproduces it)")
    logit_scale: float = opt(100.0, "initial logit scale (learnable, clamped to <= 100)")
    experts: list[str] = opt([], "ce: the video experts it reads, each expert/<name> (imported) or frames/<name> (a frame encoder); [] = every imported expert")
    vlad_clusters: dict[str, int] = opt({}, "ce: NetVLAD clusters of the variable-length experts by name (frame encoders listed here are pooled by NetVLAD, the others averaged)")
    default_clusters: int = opt(8, "ce: NetVLAD clusters of a variable-length imported expert not in vlad_clusters")
    text_clusters: int = opt(28, "ce: NetVLAD clusters over the caption's word features (TeachText: 28)")
    text_ghosts: int = opt(1, "ce: ghost clusters of that NetVLAD (TeachText: 1)")
    shared_dim: int = opt(768, "ce: the shared embedding width of every expert (TeachText: 768)")


@dataclass
class ObjectiveConfig:
    kind: str = opt("teachclip", "what the student learns from (stages/student/objectives/<kind>.py)", OBJECTIVES)
    teachers: list[str] = opt(["dual"], "names of [extract.teachers] whose cached outputs teach the student")
    coarse: str = opt("pear", "coarse teaching (docs/method.md 4b): pear | ce | l1 (COARSE_TEACHING in stages/common/losses.py)")
    fine: str = opt("ce", "fine teaching of AFA (docs/method.md 4c), needs student.afa: ce | pear | l1 (FINE_TEACHING in stages/common/losses.py)")
    fine_temperature: float = opt(1.0, "temperature of the teacher's relevance softmax (TeachCLIP: 1)")
    w_infonce: float = opt(-1.0, "weight of InfoNCE; -1 = docs/method.md 4d's (0.2 with pear coarse, 1 with ce)")
    w_coarse: float = opt(-1.0, "weight of coarse teaching; -1 = docs/method.md 4d's (1 with pear, 10 with ce)")
    w_fine: float = opt(-1.0, "weight of fine teaching; -1 = docs/method.md 4d's (2 with pear coarse, 1 with ce)")
    rank_loss: str = opt("max_margin", "teachtext: max_margin (margin 0.0938) or infonce")
    margin: float = opt(0.0938, "teachtext: max-margin ranking margin")
    w_distill: float = opt(1.0, "teachtext: weight of the SmoothL1 distillation term (0 = the ranking loss alone)")
    mckd_tau: float = opt(1.0, "mckd: temperature of the relation softmaxes")
    mckd_margin: float = opt(0.2, "mckd: margin of the hardest-negative discrimination loss")
    mckd_relations: bool = opt(False, "mckd: also distil text-text and video-video relations, each text (video) described by its row (column) of batch logits")


@dataclass
class DenoiseConfig:
    top_k: int = opt(0, "drop training captions whose own video the teacher ensemble ranks beyond K (0 = keep all; TeachText: 100, 80)")


@dataclass
class TrainConfig:
    run_dir: str = opt("runs/demo/student", "where checkpoints, the resolved config and metrics go")
    source: str = opt("extract", "the store the student reads: extract ([extract] store, teachcache extract) or features ([features] store, teachcache import-features)")
    text: str = opt("clip", "text encoder whose cached sentence vectors the student reads (ce: its word features, tokens/<text>)")
    frames: str = opt("clip", "frame encoder whose cached frame features the student reads")
    student: StudentConfig = opt(StudentConfig(), "the student's heads")
    objective: ObjectiveConfig = opt(ObjectiveConfig(), "what the student learns from")
    denoise: DenoiseConfig = opt(DenoiseConfig(), "TeachText's removal of noisy training captions (docs/method.md section 6)")
    epochs: int = opt(15, "training epochs (each video once per epoch, one random caption)")
    batch_size: int = opt(64, "videos (and captions) per step: B of docs/method.md section 4")
    lr: float = opt(1e-4, "base learning rate (AdamW, 10 % warm-up then cosine)")
    afa_lr_multiplier: float = opt(10.0, "AFA learns at this multiple of the base rate")
    weight_decay: float = opt(0.2, "AdamW weight decay (none on biases, norms and the logit scale)")
    warmup: float = opt(0.1, "fraction of the steps spent warming up")
    grad_clip: float = opt(1.0, "gradient-norm clip")
    seed: int = opt(0, "seed of the initialisation and the batch order")
    device: str = opt("auto", "auto (CUDA when present), cpu, cuda ...")
    loader: str = opt("ram", "ram (the split's arrays in RAM) or stream (whole store shards, shuffled in a buffer)")
    buffer_shards: int = opt(4, "stream: store shards read into the shuffle buffer at a time")
    eval_batch: int = opt(1024, "videos or captions encoded per evaluation step")
    keep_epoch_weights: bool = opt(False, "also keep every epoch's weights in checkpoints/ (best.safetensors and last.pt are always written)")
    val_split: str = opt(
        "val", "split that selects the best epoch: val, or test for benchmarks without one (MSR-VTT 1k-A, ActivityNet: the papers' protocol, which makes test numbers optimistic)"
    )


NO_EFFECT_ON_RESULTS = ("keep_epoch_weights",)  # TrainConfig fields that change what is kept, not what is learnt


def results_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A (possibly older) run's ``asdict(TrainConfig)`` as it bears on results: fields it
    lacks take today's defaults, fields that change nothing learnt are left out. ``--resume``
    and cached baselines compare configs by this."""

    def filled(value: Any, default: Any) -> Any:
        if isinstance(default, dict) and isinstance(value, dict):
            return {k: filled(value.get(k, d), d) for k, d in default.items()}
        return value

    config = filled(saved, asdict(TrainConfig()))
    return {k: v for k, v in config.items() if k not in NO_EFFECT_ON_RESULTS}
