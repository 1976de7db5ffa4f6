"""The official heads' computations, as plain float32 functions over features (the notes'
sections 3.4-3.10, read off the official code; the notes are /tmp/notes/issue13.md in the
issue 13 work). Similarities are [texts, videos]; ``logit_scale`` is the exponent (what the
official code multiplies by), not the stored log. ``l2n`` divides by the norm with no epsilon,
as all five codes do. Nothing here knows of stores or batches: stage one and two wrap them.

- CLIP4Clip meanP / seqTransf: ``clip4clip_similarity`` (section 3.4);
- TeachCLIP's student, AFA: ``afa``, ``teachclip_similarity`` (3.5);
- X-CLIP's four logits: ``xclip_similarity`` (3.6);
- TS2-Net over its selected tokens: ``ts2net_frames``, ``ts2net_similarity`` (3.7);
- X-Pool: ``xpool_pool``, ``xpool_similarity``, ``xpool_grouped_similarity`` (3.9);
- the relevance TeachCLIP takes from each teacher: ``xclip_relevance``, ``ts2net_relevance``,
  ``xpool_relevance`` (3.10).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from teachcache.stages.common.layers import CrossTransformer

XCLIP_TEMPERATURE = 0.01
AFA_TEMPERATURE = 0.1


def l2n(x: torch.Tensor) -> torch.Tensor:
    """``x / ||x||`` over the last axis (no epsilon, as the official code)."""
    return x / x.norm(dim=-1, keepdim=True)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over the valid frames [B, F, D] -> [B, D]; a video with none divides by 1."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def video_vector(phi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CLIP4Clip's video vector: the masked mean of the normalised frames, normalised [B, D]."""
    return l2n(masked_mean(l2n(phi), mask))


# ----- CLIP4Clip (section 3.4) ----------------------------------------------------------------
def clip4clip_frames(frames: torch.Tensor, mask: torch.Tensor, cross: CrossTransformer | None = None) -> torch.Tensor:
    """The frames the pooling reads: raw (meanP), or seqTransf's output plus input."""
    return frames if cross is None else cross(frames, mask)


def clip4clip_similarity(text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, logit_scale: float | torch.Tensor, cross: CrossTransformer | None = None) -> torch.Tensor:
    """``scale * cos(text, video vector)``: text [Bt, D] (end-of-text), frames [B, F, D], mask [B, F] -> [Bt, B]."""
    return logit_scale * l2n(text) @ video_vector(clip4clip_frames(frames, mask, cross), mask).T


# ----- TeachCLIP's AFA (section 3.5) ----------------------------------------------------------
@dataclass
class AFAOutput:
    """AFA over every frame (no mask, as TeachCLIP): ``frame_logits`` a [B, F]; ``video`` the
    sum of ``softmax_f(a / 0.1)`` times the normalised frames, not renormalised [B, D]
    (``extract_video_feature``); ``weights`` ``softmax_f(a)`` at temperature 1 [B, F] (what
    the fine loss compares with a teacher's relevance)."""

    frame_logits: torch.Tensor
    video: torch.Tensor
    weights: torch.Tensor


def afa(phi: torch.Tensor, head: Mapping[str, torch.Tensor], temperature: float = AFA_TEMPERATURE) -> AFAOutput:
    """``a = frameLinear2(relu(frameLinear(phi)))`` on the unnormalised seqTransf frames phi [B, F, D]."""
    hidden = F.relu(F.linear(phi, head["frameLinear.weight"], head["frameLinear.bias"]))
    logits = F.linear(hidden, head["frameLinear2.weight"], head["frameLinear2.bias"]).squeeze(-1)
    video = (torch.softmax(logits / temperature, dim=1).unsqueeze(-1) * l2n(phi)).sum(1)
    return AFAOutput(logits, video, torch.softmax(logits, dim=1))


def teachclip_similarity(
    text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, logit_scale: float | torch.Tensor, cross: CrossTransformer, head: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, AFAOutput]:
    """TeachCLIP's student: ``scale * cos(text, AFA video)`` [Bt, B] and the AFA outputs.
    (Its ``return_fine=False`` path is ``clip4clip_similarity`` with the same cross module.)"""
    out = afa(cross(frames, mask), head)
    return logit_scale * l2n(text) @ l2n(out.video).T, out


# ----- X-CLIP (section 3.6) -------------------------------------------------------------------
def _mixed_pool(sim: torch.Tensor, dim: int, mix: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """X-CLIP's pooling: ``sum_dim sim * (softmax_dim(sim / 0.01) mixed over dim by mix)``;
    masked entries take no weight and add nothing."""
    logits = sim / XCLIP_TEMPERATURE
    if mask is not None:
        logits, sim = logits.masked_fill(~mask, float("-inf")), sim.masked_fill(~mask, 0.0)
    weights = torch.softmax(logits, dim=dim)
    if mask is not None:
        weights = torch.nan_to_num(weights, nan=0.0)  # nothing valid: no weight
    weights = weights.movedim(dim, -1) @ mix
    return (sim * weights.movedim(-1, dim)).sum(dim)


def xclip_similarity(
    sentence: torch.Tensor,
    words: torch.Tensor,
    frames: torch.Tensor,
    mask: torch.Tensor,
    head: Mapping[str, torch.Tensor],
    cross: CrossTransformer | None,
    logit_scale: float | torch.Tensor,
    word_mask: torch.Tensor | None = None,
    frame_mask: torch.Tensor | None = None,
    video: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean of X-CLIP's video-sentence, video-word, sentence-frame and frame-word logits [Bt, B].

    sentence [Bt, D] (end-of-text), words [Bt, L, D] (every position), frames [B, F, D] (raw
    CLIP frames), mask [B, F] (for seqTransf's video vector). As the official code, padding
    words and padded frames take part unless ``word_mask`` [Bt, L] / ``frame_mask`` [B, F] are given.
    ``cross`` None: no seqTransf (meanP); ``video``: the video vectors [B, D], when already computed."""
    if video is None:
        video = video_vector(clip4clip_frames(frames, mask, cross), mask)
    sent, wrd, frm = l2n(sentence), l2n(words), l2n(frames)
    wm = None if word_mask is None else word_mask.bool()
    fm = None if frame_mask is None else frame_mask.bool()
    video_sentence = (sent @ head["global_mat_weight"]) @ video.T
    video_word = _mixed_pool(torch.einsum("twd,vd->twv", wrd, video), 1, head["word_logit_weight"], None if wm is None else wm[:, :, None])
    sentence_frame = _mixed_pool(torch.einsum("td,vfd->tvf", sent, frm), 2, head["frame_logit_weight"], None if fm is None else fm[None])
    frame_word = _xclip_frame_word(wrd, frm, head, wm, fm)
    return logit_scale * (video_sentence + video_word + sentence_frame + frame_word) / 4


def _xclip_frame_word(wrd: torch.Tensor, frm: torch.Tensor, head: Mapping[str, torch.Tensor], wm: torch.Tensor | None, fm: torch.Tensor | None) -> torch.Tensor:
    """X-CLIP's frame-word logit (before the scale): words pooled per frame and frames per word,
    then each pooled again, averaged [Bt, B]."""
    sim = torch.einsum("twd,de,vfe->twvf", wrd, head["local_mat_weight"], frm)  # [Bt, L, B, F]
    both = None if wm is None and fm is None else _pair_mask(wm, fm, sim.shape)
    per_frame = _mixed_pool(sim, 1, head["word_mat_weight"], both)  # [Bt, B, F]
    per_word = _mixed_pool(sim, 3, head["frame_mat_weight"], both)  # [Bt, L, B]
    frames_then = _mixed_pool(per_frame, 2, head["frame_mat_weight2"], None if fm is None else fm[None])
    words_then = _mixed_pool(per_word, 1, head["word_mat_weight2"], None if wm is None else wm[:, :, None])
    return (frames_then + words_then) / 2


def _pair_mask(wm: torch.Tensor | None, fm: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
    out = torch.ones(shape, dtype=torch.bool, device=(wm if wm is not None else fm).device)  # type: ignore[union-attr]
    if wm is not None:
        out = out & wm[:, :, None, None]
    if fm is not None:
        out = out & fm[None, None]
    return out


# ----- TS2-Net (section 3.7) ------------------------------------------------------------------
def ts2net_frames(tokens: torch.Tensor, mask: torch.Tensor, cross: CrossTransformer) -> tuple[torch.Tensor, torch.Tensor]:
    """seqTransf over all selected tokens [B, F*(1+k), D] (positions 0..F*(1+k)-1), then the CLS
    slots: phi [B, F, D] and the mask the similarity uses [B, F]. TS2-Net tiles the frame mask
    over the tokens (``repeat``, not ``repeat_interleave``: token j gets ``mask[j % F]``), so
    the CLS slot of frame f is masked as frame ``(1+k) f % F``; kept as the official code."""
    per_frame = tokens.shape[1] // mask.shape[1]
    tiled = mask.float().unsqueeze(1).repeat(1, 1, per_frame).view(len(mask), -1)
    return cross(tokens, tiled)[:, ::per_frame], tiled[:, ::per_frame]


def ts2net_similarity(text: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, logit_scale: float | torch.Tensor, cross: CrossTransformer) -> torch.Tensor:
    """TS2-Net's logits [Bt, B]: per video, the frames' cosines with the text weighted by
    ``softmax_f(4 * masked cosines / their norm over frames)`` (masked frames out)."""
    phi, m = ts2net_frames(tokens, mask, cross)
    return ts2net_score(text, phi, m, logit_scale)


def ts2net_score(text: torch.Tensor, phi: torch.Tensor, m: torch.Tensor, logit_scale: float | torch.Tensor) -> torch.Tensor:
    """TS2-Net's logits [Bt, B] from the CLS slots phi [B, F, D] and the mask they use [B, F]."""
    sim = torch.einsum("vfd,td->vft", l2n(phi), l2n(text))  # [B, F, Bt]
    valid = m.bool().unsqueeze(-1)
    weights = sim * valid
    weights = (weights / weights.norm(dim=1, keepdim=True)).masked_fill(~valid, -1e18)
    return logit_scale * (torch.softmax(4 * weights, dim=1) * sim).sum(1).T


# ----- X-Pool (section 3.9) -------------------------------------------------------------------
def xpool_pool(
    text: torch.Tensor, frames: torch.Tensor, head: Mapping[str, torch.Tensor], heads: int = 1, frame_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """X-Pool's ``pool_frames``: text [Nt, D], frames [Nv, F, D] (raw) -> pooled [Nv, Nt, D] and
    the attention [Nv, heads, F, Nt] (softmax over frames). One ``layer_norm1`` for both inputs;
    ``LN3(o + linear_proj(o))`` after ``LN2(out_proj(.))``; dropout is off (eval). X-Pool masks
    no frame; ``frame_mask`` [Nv, F] is an option."""

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, head[f"pool_frames.{name}.weight"], head[f"pool_frames.{name}.bias"])

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], head[f"pool_frames.{name}.weight"], head[f"pool_frames.{name}.bias"], 1e-5)

    (nt, dim), (nv, nf, _) = text.shape, frames.shape
    width = dim // heads
    t, f = norm(text, "layer_norm1"), norm(frames, "layer_norm1")
    q = linear(t, "cross_attn.q_proj").view(nt, heads, width)
    k = linear(f, "cross_attn.k_proj").view(nv, nf, heads, width)
    v = linear(f, "cross_attn.v_proj").view(nv, nf, heads, width)
    scores = torch.einsum("vfhd,thd->vhft", k, q) / math.sqrt(width)
    if frame_mask is not None:
        scores = scores.masked_fill(~frame_mask.bool()[:, None, :, None], float("-inf"))
    attention = torch.softmax(scores, dim=2)
    out = linear(torch.einsum("vhft,vfhd->vthd", attention, v).reshape(nv, nt, dim), "cross_attn.out_proj")
    out = norm(out, "layer_norm2")
    return norm(out + linear(out, "linear_proj"), "layer_norm3"), attention


def xpool_similarity(text: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """X-Pool's ``sim_matrix_training``: ``cos(text_t, pooled[v, t])`` [Nt, Nv], no scale (TeachCLIP multiplies by the scale)."""
    return torch.einsum("td,vtd->tv", l2n(text), l2n(pooled))


def xpool_grouped_similarity(text: torch.Tensor, pooled: torch.Tensor, video_ids: Sequence[str]) -> torch.Tensor:
    """X-Pool's test input (``sim_matrix_inference``): captions grouped by their video id in
    first-seen order, padded to the largest group with NaN rows: [ids, most captions, Nv]."""
    order = list(dict.fromkeys(video_ids))
    groups = [[i for i, v in enumerate(video_ids) if v == vid] for vid in order]
    sims = xpool_similarity(text, pooled)
    out = torch.full((len(order), max(map(len, groups)), pooled.shape[0]), float("nan"), dtype=sims.dtype)
    for a, rows in enumerate(groups):
        out[a, : len(rows)] = sims[rows]
    return out


# ----- relevance as TeachCLIP takes it (section 3.10) -----------------------------------------
def cosine_softmax(text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """``softmax_f(cos(text_i, frame_{i,f}))`` at temperature 1, no mask: text [n, D], frames [n, F, D] -> [n, F]."""
    return torch.softmax(torch.einsum("nd,nfd->nf", l2n(text), l2n(frames)), dim=-1)


def xclip_relevance(sentence: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """X-CLIP's, for caption i and video i: the softmax of its cosines with the raw CLIP frames [n, F]."""
    return cosine_softmax(sentence, frames)


def ts2net_relevance(sentence: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """TS2-Net's (TeachCLIP's wrapper): the softmax of the cosines with seqTransf's output at the CLS slots (``ts2net_frames``) [n, F]."""
    return cosine_softmax(sentence, phi)


def xpool_relevance(attention: torch.Tensor) -> torch.Tensor:
    """X-Pool's: the attention of caption i over the frames of video i, from ``xpool_pool``'s
    [Nv, heads, F, Nt] with Nv = Nt -> [n, F] (the mean over heads; X-Pool has one)."""
    return torch.diagonal(attention.mean(dim=1), dim1=0, dim2=2).T
