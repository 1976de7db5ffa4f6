"""Where a student's heads start (``train.student.init``): CLIP4Clip's random init, an official
CLIP4Clip or TeachCLIP checkpoint's heads (seqTransf, AFA, logit scale: the released student,
to evaluate or fine-tune), or a CLIP's text tower as CLIP4Clip starts seqTransf (its position
embedding and first layers). The student's text and video projections stay the identity: the
cached features come from that checkpoint's own CLIP."""

from __future__ import annotations

import math

import torch

from teachcache.cache.errors import ConfigError
from teachcache.stages.common.checkpoints import read_checkpoint
from teachcache.stages.common.checkpoints.base import CheckpointError, OfficialCheckpoint, load_module, load_state
from teachcache.stages.common.checkpoints.ce import config_experts, read_ce
from teachcache.stages.student.base import RetrievalStudent
from teachcache.stages.student.ce import CEStudent
from teachcache.stages.student.config import StudentConfig
from teachcache.stages.student.model import Student

CROSS_PREFIXES = ("frame_position_embeddings.", "transformerClip.")
AFA_PREFIXES = ("frameLinear.", "frameLinear2.")


def student_config_of(checkpoint: OfficialCheckpoint, max_frames: int = 0) -> StudentConfig:
    """The student config that holds an official CLIP4Clip / TeachCLIP checkpoint's heads exactly
    (TeachCLIP's AFA is unmasked; the cached features need no projection)."""
    if checkpoint.model not in ("meanP", "seqTransf", "teachclip"):
        raise CheckpointError(f"{checkpoint.path} is a {checkpoint.model!r} checkpoint; a student comes from CLIP4Clip (meanP, seqTransf) or TeachCLIP")
    h = checkpoint.hparams
    seq = h.get("cross_layers", 0) > 0
    return StudentConfig(
        video_head="seqTransf" if seq else "meanP",
        layers=h.get("cross_layers", 0) if seq else 4,
        heads=h.get("cross_heads", 0) if seq else 0,
        max_frames=h.get("cross_rows", 77) if seq else max(77, max_frames),
        video_projection=False,
        afa=checkpoint.model == "teachclip",
        afa_masked=False,
        logit_scale=min(100.0, checkpoint.logit_scale),
        init=checkpoint.path,
    )


def initialise(student: RetrievalStudent, path: str) -> list[str]:
    """Load the heads ``path`` gives into ``student``; returns what was loaded, one line each.
    Refused in one line when the file fits neither kind or its shapes are not the student's.
    A ce student starts from a CE checkpoint (``trained_model.pth`` or its state dict) over the
    same experts."""
    if isinstance(student, CEStudent):
        return _from_ce_checkpoint(student, path)
    if not isinstance(student, Student):
        raise ConfigError(f"train.student.init: a {student.kind!r} student cannot start from a file")
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError:
        checkpoint = None
    if checkpoint is not None and checkpoint.format == "clip4clip" and checkpoint.model in ("seqTransf", "teachclip"):
        return _from_student_checkpoint(student, checkpoint)
    state = checkpoint.backbone if checkpoint is not None and checkpoint.format == "clip4clip" else _clip_state(path)
    return _from_text_tower(student, state, path)


def _from_ce_checkpoint(student: CEStudent, path: str) -> list[str]:
    """CE's official weights (its names are the student's) for the student's experts, in CE's sorted order."""
    ckpt = read_ce(path, experts=list(student.arch.order))
    if ckpt.config is not None and (named := config_experts(ckpt.config, path)) != list(student.arch.order):
        raise CheckpointError(
            f"train.student.init = {path} was trained on experts {named}; the student reads {list(student.arch.order)} (name them alike in train.student.experts)"
        )
    if ckpt.arch.to_dict() != student.arch.to_dict():
        raise CheckpointError(f"train.student.init = {path}: a CE+ of {ckpt.arch.to_dict()}, the student is {student.arch.to_dict()}; match train.student's experts and sizes")
    load_module(student, {**ckpt.checkpoint.head, "logit_scale": student.logit_scale.detach()}, f"{path}: the CE network")
    return [f"{len(ckpt.checkpoint.head)} CE tensors from {path} (experts {list(student.arch.order)})"]


def _from_student_checkpoint(student: Student, checkpoint: OfficialCheckpoint) -> list[str]:
    head = checkpoint.head
    state = {f"temporal.{k}": v.float() for k, v in head.items() if k.startswith(CROSS_PREFIXES)}
    if student.config.video_head != "seqTransf":
        raise ConfigError(f"train.student.init = {checkpoint.path}: its heads are seqTransf's; set train.student.video_head = 'seqTransf'")
    loaded = [f"seqTransf ({checkpoint.hparams['cross_layers']} layers)"]
    if checkpoint.model == "teachclip":
        if student.afa is None:
            raise ConfigError(f"train.student.init = {checkpoint.path}: it has TeachCLIP's AFA; set train.student.afa = true")
        state |= {f"afa.{k}": v.float() for k, v in head.items() if k.startswith(AFA_PREFIXES)}
        loaded.append("AFA")
    _load_part(student, state, checkpoint.path)
    with torch.no_grad():
        student.logit_scale.fill_(math.log(checkpoint.logit_scale))
        student.clamp_scale()
    return [*loaded, f"logit scale {checkpoint.logit_scale:.2f}"]


def _clip_state(path: str) -> dict[str, torch.Tensor]:
    """A plain CLIP state dict (OpenAI names, with or without ``clip.``)."""
    state = load_state(path)
    if "clip.positional_embedding" in state:
        state = {k[len("clip.") :]: v for k, v in state.items() if k.startswith("clip.")}
    if "positional_embedding" not in state:
        raise CheckpointError(f"train.student.init = {path}: neither a CLIP4Clip-family checkpoint nor a CLIP state dict (no positional_embedding)")
    return state


def _from_text_tower(student: Student, clip: dict[str, torch.Tensor], path: str) -> list[str]:
    """CLIP4Clip's start of seqTransf: the text tower's position embedding and its first layers."""
    if student.config.video_head != "seqTransf":
        raise ConfigError(f"train.student.init = {path}: a CLIP starts seqTransf only; set train.student.video_head = 'seqTransf'")
    layers = student.config.layers
    state = {"temporal.frame_position_embeddings.weight": clip["positional_embedding"].float()}
    for key, value in clip.items():
        if key.startswith("transformer.resblocks.") and int(key.split(".")[2]) < layers:
            state["temporal.transformerClip." + key[len("transformer.") :]] = value.float()
    _load_part(student, state, path)
    return [f"seqTransf from the CLIP text tower (position embedding, layers 0-{layers - 1})"]


def _load_part(student: Student, state: dict[str, torch.Tensor], path: str) -> None:
    own = student.state_dict()
    wanted = {k for k in own if k.startswith("temporal.")} | ({k for k in own if k.startswith("afa.")} if any(k.startswith("afa.") for k in state) else set())
    missing = sorted(wanted - set(state))
    shapes = [f"{k}: {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape]
    unexpected = sorted(set(state) - set(own))
    if missing or shapes or unexpected:
        raise ConfigError(
            f"train.student.init = {path} does not fit this student (missing {missing[:4]}, unexpected {unexpected[:4]}, shapes {shapes[:4]}); "
            "match train.student.layers, heads and max_frames to the file, and train.frames to its CLIP's width"
        )
    student.load_state_dict(state, strict=False)
