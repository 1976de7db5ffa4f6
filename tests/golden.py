"""The golden oracle of issue 13 (``../shared/data/golden``: outputs of the official CLIP4Clip,
TeachCLIP, X-CLIP, TS2-Net and X-Pool code on tiny checkpoints saved by that code) and the
recipe that reproduces each output with teachcache's loaders, backbones and head functions.
Shared by the tests of the official checkpoints; see the golden README for what each key is."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import GOLDEN

from teachcache.stages.common.checkpoints import read_checkpoint
from teachcache.stages.common.checkpoints.base import OfficialCheckpoint
from teachcache.stages.extract.encoders.hf_clip import build_hf_clip
from teachcache.stages.extract.encoders.openai_clip import build_text, build_visual
from teachcache.stages.extract.encoders.ts2net import build_ts2net_visual
from teachcache.stages.teachers import official as o

CASES = ("clip4clip", "teachclip", "xclip", "ts2net", "xpool")
FILES = {"xpool": "model_best.pth"}
NOISE_SEED = 1234  # the golden manifest's noise_seed (TS2-Net)
XPOOL_HEADS = 2  # the tiny HF CLIP's text and vision heads (ViT-B/32: 8 and 12)
Arrays = dict[str, np.ndarray]


def need_golden() -> None:
    if not (GOLDEN / "manifest.json").is_file():
        pytest.skip(f"the golden folder {GOLDEN} is absent (set TEACHCACHE_SHARED to the folder holding data/golden)")


def checkpoint_path(case: str) -> str:
    return str(GOLDEN / case / FILES.get(case, "pytorch_model.bin"))


@functools.cache
def checkpoint(case: str, **options: object) -> OfficialCheckpoint:
    return read_checkpoint(checkpoint_path(case), **options)  # type: ignore[arg-type]


def npz(case: str, name: str) -> Arrays:
    path = GOLDEN / case / f"{name}.npz"
    return dict(np.load(path)) if path.is_file() else {}


def golden(case: str) -> Arrays:
    """Every recorded output of a case (``outputs`` and ``outputs_tc``)."""
    return {**npz(case, "outputs"), **npz(case, "outputs_tc")}


def clip4clip_inputs(case: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids [4, 32], pixels [36, 3, 224, 224] (padded frames exactly 0) and the video mask [3, 12]."""
    inp = npz(case, "inputs")
    ids = torch.from_numpy(inp["input_ids"]).view(-1, inp["input_ids"].shape[-1])
    pixels = torch.from_numpy(inp["video"]).view(-1, 3, 224, 224)
    return ids, pixels, torch.from_numpy(inp["video_mask"]).view(-1, inp["video_mask"].shape[-1])


def towers(case: str, precision: str, ids: torch.Tensor, pixels: torch.Tensor, videos: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """End-of-text [Bt, D], every text position [Bt, L, D], CLS frames [B, F, D]."""
    eot, hidden = build_text(checkpoint(case), precision)(ids)
    frames = build_visual(checkpoint(case), precision)(pixels)
    return eot, hidden, frames.view(videos, -1, frames.shape[-1])


@functools.cache
def run(case: str, precision: str = "fp32") -> Arrays:
    """teachcache's value of every golden output of a case (float32 numpy)."""
    with torch.inference_mode():
        out = {"clip4clip": _clip4clip, "teachclip": _teachclip, "xclip": _xclip, "ts2net": _ts2net, "xpool": _xpool}[case](precision)
    return {k: v.float().numpy() for k, v in out.items()}


def _clip4clip(precision: str) -> dict[str, torch.Tensor]:
    ids, pixels, mask = clip4clip_inputs("clip4clip")
    eot, _, frames = towers("clip4clip", precision, ids, pixels, len(mask))
    ckpt, cross = checkpoint("clip4clip"), checkpoint("clip4clip").cross_transformer()
    assert cross is not None
    mean_p = checkpoint("clip4clip", model="meanP", drop_head=True)
    return {
        "sequence_output": eot[:, None],
        "visual_output": frames,
        "seqtransf_hidden": cross.hidden(frames, mask),
        "sim_seqTransf": o.clip4clip_similarity(eot, frames, mask, ckpt.logit_scale, cross),
        "sim_meanP": o.clip4clip_similarity(eot, frames, mask, mean_p.logit_scale),
    }


def _teachclip(precision: str) -> dict[str, torch.Tensor]:
    ids, pixels, mask = clip4clip_inputs("teachclip")
    eot, _, frames = towers("teachclip", precision, ids, pixels, len(mask))
    ckpt, cross = checkpoint("teachclip"), checkpoint("teachclip").cross_transformer()
    assert cross is not None
    sim, afa = o.teachclip_similarity(eot, frames, mask, ckpt.logit_scale, cross, ckpt.head)
    return {
        "sequence_output": eot[:, None],
        "visual_output": frames,
        "sim_afa": sim,
        "frame_weight_softmax": afa.weights,
        "frame_logits": afa.frame_logits,
        "sim_meanpool": o.clip4clip_similarity(eot, frames, mask, ckpt.logit_scale, cross),
        "extract_video_feature": afa.video,
        "extract_text_feature": eot,
        "eval_cosine": o.l2n(eot) @ o.l2n(afa.video).T,
    }


def _xclip(precision: str) -> dict[str, torch.Tensor]:
    ids, pixels, mask = clip4clip_inputs("xclip")
    eot, words, frames = towers("xclip", precision, ids, pixels, len(mask))
    ckpt, cross = checkpoint("xclip"), checkpoint("xclip").cross_transformer()
    assert cross is not None
    paired = len(mask)  # TeachCLIP's wrapper: captions 0-2 with videos 0-2
    return {
        "sequence_output": eot[:, None],
        "seq_features": words,
        "visual_output": frames,
        "sim": o.xclip_similarity(eot, words, frames, mask, ckpt.head, cross, ckpt.logit_scale),
        "tc_paired_sim": o.xclip_similarity(eot[:paired], words[:paired], frames, mask, ckpt.head, cross, ckpt.logit_scale),
        "tc_sentence2frames_sim": o.xclip_relevance(eot[:paired], frames),
    }


def _ts2net(precision: str) -> dict[str, torch.Tensor]:
    ids, pixels, mask = clip4clip_inputs("ts2net")
    ckpt, cross = checkpoint("ts2net"), checkpoint("ts2net").cross_transformer()
    assert cross is not None
    eot, _ = build_text(ckpt, precision)(ids)
    out = {"sequence_output": eot[:, None]}
    fill = GOLDEN / "ts2net" / "teachclip_base_clip_fill.safetensors"
    for sigma, suffix in ((0.05, ""), (0.0, "_sigma0")):
        model = build_ts2net_visual(ckpt, precision=precision, sigma=sigma)
        tokens = model(pixels, torch.Generator().manual_seed(NOISE_SEED)).view(len(mask), -1, eot.shape[-1])
        sim = o.ts2net_similarity(eot, tokens, mask, ckpt.logit_scale, cross)
        out |= {f"visual_output{suffix}": tokens, f"patch_scores{suffix}": model.score(pixels)[1]}
        out |= {f"sim_{kind}{suffix}": sim for kind in ("final", "semantic", "global")}
        variant = build_ts2net_visual(ckpt, variant="teachclip", fill=fill, precision=precision, sigma=sigma)
        paired = len(mask)
        tc_tokens = variant(pixels, torch.Generator().manual_seed(NOISE_SEED)).view(paired, -1, eot.shape[-1])
        out[f"tc_paired_sim{suffix}"] = o.ts2net_similarity(eot[:paired], tc_tokens, mask, ckpt.logit_scale, cross)
        out[f"tc_sentence2frames_sim{suffix}"] = o.ts2net_relevance(eot[:paired], o.ts2net_frames(tc_tokens, mask, cross)[0])
    return out


def _xpool(precision: str) -> dict[str, torch.Tensor]:
    inp, ckpt = npz("xpool", "inputs"), checkpoint("xpool")
    clip = build_hf_clip(ckpt, XPOOL_HEADS, XPOOL_HEADS)
    text = clip.text_features(torch.from_numpy(inp["input_ids"]), torch.from_numpy(inp["attention_mask"]))
    video = torch.from_numpy(inp["video"])
    frames = clip.image_features(video.view(-1, 3, 224, 224)).view(len(video), -1, text.shape[-1])
    pooled, attention = o.xpool_pool(text, frames, ckpt.head)
    # TeachCLIP's wrapper: CLIP4Clip ids and mask of captions 0-2, X-Pool's frames
    tc_text = clip.text_features(torch.from_numpy(inp["c4c_input_ids"]).squeeze(1), torch.from_numpy(inp["c4c_input_mask"]).squeeze(1))
    tc_pooled, tc_attention = o.xpool_pool(tc_text, frames, ckpt.head)
    return {
        "text_embeds": text,
        "frame_embeds": frames,
        "pooled": pooled,
        "attention_weights": attention,
        "sims_t2v": o.xpool_similarity(text, pooled),
        "sims_inference": o.xpool_grouped_similarity(text, pooled, list(inp["video_ids"])),
        "logit_scale_exp": torch.tensor(ckpt.logit_scale),
        "tc_paired_sims": ckpt.logit_scale * o.xpool_similarity(tc_text, tc_pooled),
        "tc_frame_attention": o.xpool_relevance(tc_attention),
    }


def reference(case: str, key: str, fp32: bool) -> np.ndarray:
    """The golden array a computed key is compared with: ``key_fp32`` (float32 official run) or
    the plain key (float16 towers); X-Pool has only float32 outputs."""
    arrays = golden(case)
    name = f"{key}_fp32" if fp32 and f"{key}_fp32" in arrays else key
    return arrays[name]


def errors(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """max |diff| and max |diff| / max |golden| (NaNs must sit at the same places)."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert np.array_equal(np.isnan(ours), np.isnan(theirs))
    diff = np.nanmax(np.abs(ours.astype(np.float64) - theirs))
    return float(diff), float(diff / np.nanmax(np.abs(theirs)))


def is_similarity(key: str) -> bool:
    return key.startswith(("sim", "tc_paired", "eval_cosine"))
