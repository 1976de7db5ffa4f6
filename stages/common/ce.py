"""Collaborative Experts' CE+ network (the TeachText student), as the official code computes it
(albanie/collaborative-experts @ 7eb3b9d, ``model/model.py`` and ``model/net_vlad.py``) in the
configuration TeachText's CE+ uses: pairwise collaborative gating with the self pair, three
reasoning layers (``g``), none after (``h``), Mish, BatchNorm in the reasoning layers.

Module and parameter names are the official ones, so an official state dict loads with
``load_state_dict(strict=True)``. Experts are always in sorted (code-point) order: the MoE
columns and the ``ce.*.{i}`` modules follow it. The forward, step by step:

- missing experts (``available`` 0) are zeroed (a copy); variable-length experts go through a
  NetVLAD (``pooling.<expert>``, no ghost clusters), whose padding tokens count;
- text: a NetVLAD with ghost clusters (``text_pooling``), then one gated embedding unit per
  expert (``ce.text_GU.{i}``) and the mixture weights ``softmax(ce.moe_fc(vlad))``;
- video: ``L2(fc(x))`` per expert (``ce.video_dim_reduce.{i}``), then, expert by expert, the
  availability-weighted mean of ``g([e_m; e_n])`` over every n (the CE mask) gates ``e_m``
  (``ce.video_GU.{i}``); ``e_m`` is replaced by its gated value before the next expert, so later
  experts pair with the gated embeddings of earlier ones (as the official loop does);
- similarity: the per-expert cosines mixed with the MoE weights, renormalised over the experts
  the video has (``ce_similarity``).

Departure: the official CE gating refuses a single expert (it asserts two or more); here one
expert is accepted and its mask comes from the self pair alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from teachcache.cache.errors import ConfigError, NumericalError

CE_EPS = 1e-11  # the official denominator guard of the CE mask


# ----- the architecture, read off a state dict ------------------------------------------------


@dataclass
class CEArchitecture:
    """The sizes of a CE+ network. ``experts``: name -> raw feature width (per token for a
    variable-length expert), kept in sorted order; ``vlad_clusters``: the variable-length
    experts and their NetVLAD cluster counts. The remaining fields describe the only variant
    supported (TeachText's CE+); any other value is refused."""

    experts: dict[str, int]
    vlad_clusters: dict[str, int]
    text_dim: int
    text_clusters: int
    text_ghosts: int
    shared_dim: int
    use_ce: str = "pairwise"
    include_self: bool = True
    num_g_layers: int = 3
    num_h_layers: int = 0
    order: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.experts = {name: int(self.experts[name]) for name in sorted(self.experts)}
        self.order = tuple(self.experts)
        variant = (self.use_ce, bool(self.include_self), self.num_g_layers, self.num_h_layers)
        if variant != ("pairwise", True, 3, 0):
            raise ConfigError(f"CE architecture: only use_ce 'pairwise', include_self, num_g_layers 3, num_h_layers 0 (TeachText's CE+) are supported, not {variant}")
        if not self.experts:
            raise ConfigError("CE architecture: no experts")
        if unknown := sorted(set(self.vlad_clusters) - set(self.experts)):
            raise ConfigError(f"CE architecture: vlad_clusters names experts that are not in experts: {unknown}")
        if dotted := [name for name in self.vlad_clusters if "." in name]:
            raise ConfigError(f"CE architecture: a variable-length expert's name cannot contain '.' (it names a module): {dotted}")
        sizes = [*self.experts.values(), *self.vlad_clusters.values(), self.text_dim, self.text_clusters, self.shared_dim]
        if min(sizes) < 1 or self.text_ghosts < 0:
            raise ConfigError(f"CE architecture: sizes must be positive: {self.to_dict()}")

    def pooled_dim(self, name: str) -> int:
        """An expert's width after pooling (D*K for a variable-length expert)."""
        return self.experts[name] * self.vlad_clusters.get(name, 1)

    @property
    def text_vlad_dim(self) -> int:
        return self.text_dim * self.text_clusters

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("order")
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CEArchitecture:
        return cls(**dict(values))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], experts: Sequence[str]) -> CEArchitecture:
        """Every size from the tensor shapes of an official CE state dict. ``experts``: the
        expert names (any order), which a state dict does not hold (its modules are indexed)."""
        return cls(**sizes_from_state(state, experts))


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ConfigError(f"CE state dict: no {key!r}; is it a CE+ (pairwise collaborative gating) state dict?")
    return tuple(int(n) for n in state[key].shape)


def _vlad_sizes(state: Mapping[str, Any], prefix: str) -> tuple[int, int, int]:
    """(feature width, clusters, ghosts) of the NetVLAD under ``prefix``."""
    dim, total = _shape(state, f"{prefix}.clusters")
    clusters = _shape(state, f"{prefix}.clusters2")[2]
    return dim, clusters, total - clusters


def _indexed(state: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = [int(m.group(1)) for k in state if (m := pattern.match(k))]
    return max(found) + 1 if found else 0


def _linears(state: Mapping[str, Any], prefix: str) -> int:
    """The linear layers (2-D weights) of the Sequential under ``prefix``."""
    pattern = re.compile(re.escape(prefix) + r"\d+\.weight")
    return sum(1 for k in state if pattern.fullmatch(k) and len(state[k].shape) == 2)


def sizes_from_state(state: Mapping[str, Any], experts: Sequence[str]) -> dict[str, Any]:
    """``CEArchitecture``'s fields from the shapes (see ``CEArchitecture.from_state_dict``)."""
    order = sorted(experts)
    count = _indexed(state, "ce.video_dim_reduce.")
    if len(order) != count or len(set(order)) != count:
        raise ConfigError(f"CE state dict: {count} experts (ce.video_dim_reduce.0..{count - 1}), but {len(set(order))} distinct names given: {order}")
    pooled = sorted({k.split(".")[1] for k in state if k.startswith("pooling.")})
    if missing := sorted(set(pooled) - set(order)):
        raise ConfigError(f"CE state dict: pooling modules {missing} are not among the expert names {order}")
    widths, vlad = {}, {}
    for i, name in enumerate(order):
        in_dim = _shape(state, f"ce.video_dim_reduce.{i}.fc.weight")[1]
        widths[name] = in_dim
        if name in pooled:
            dim, clusters, ghosts = _vlad_sizes(state, f"pooling.{name}")
            if ghosts or dim * clusters != in_dim:
                raise ConfigError(f"CE state dict: pooling.{name} ({dim} x {clusters} clusters, {ghosts} ghosts) does not feed ce.video_dim_reduce.{i} ({in_dim} inputs)")
            widths[name], vlad[name] = dim, clusters
    text_dim, text_clusters, text_ghosts = _vlad_sizes(state, "text_pooling")
    shared = _shape(state, "ce.g_reason_1.weight")[0]
    return {
        "experts": widths,
        "vlad_clusters": vlad,
        "text_dim": text_dim,
        "text_clusters": text_clusters,
        "text_ghosts": text_ghosts,
        "shared_dim": shared,
        "num_g_layers": 1 + _linears(state, "ce.g_reason_shared."),
        "num_h_layers": _linears(state, "ce.h_reason."),
    }


# ----- the official modules -------------------------------------------------------------------


class NetVLAD(nn.Module):
    """NetVLAD as in CE: soft assignment ``softmax(BN(x W))`` over clusters and ghosts (ghost
    columns dropped after the softmax), residuals to ``clusters2``, L2 per cluster, flattened
    ``d*K + k``, L2. Every token counts (no mask: the official code ignores it)."""

    def __init__(self, feature_size: int, clusters: int, ghosts: int = 0):
        super().__init__()
        scale = 1 / math.sqrt(feature_size)
        self.cluster_size = clusters
        self.clusters = nn.Parameter(scale * torch.randn(feature_size, clusters + ghosts))
        self.clusters2 = nn.Parameter(scale * torch.randn(1, feature_size, clusters))
        self.batch_norm = nn.BatchNorm1d(clusters + ghosts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> [B, D*K]."""
        batch, tokens, dim = x.shape
        logits = self.batch_norm(x.reshape(batch * tokens, dim) @ self.clusters)
        assign = F.softmax(logits, dim=1)[:, : self.cluster_size].reshape(batch, tokens, self.cluster_size)
        vlad = torch.einsum("bnk,bnd->bdk", assign, x) - assign.sum(1, keepdim=True) * self.clusters2
        vlad = F.normalize(vlad, dim=1)
        return F.normalize(vlad.reshape(batch, dim * self.cluster_size), dim=1)


class ReduceDim(nn.Module):
    """``L2(fc(x))``: an expert to the shared width."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(x), dim=-1)


class ContextGating(nn.Module):
    """``x * sigmoid(BN(fc(x)))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.batch_norm = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.batch_norm(self.fc(x)))


class GatedEmbeddingUnit(nn.Module):
    """The text side of one expert: ``L2(ContextGating(fc(x)))``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.cg = ContextGating(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.cg(self.fc(x)), dim=-1)


class ContextGatingReasoning(nn.Module):
    """``x * sigmoid(BN(mask) + BN2(fc(x)))``: the gate takes the CE mask."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.batch_norm2 = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.batch_norm(mask) + self.batch_norm2(self.fc(x)))


class GatedEmbeddingUnitReasoning(nn.Module):
    """The video side of one expert: ``L2(ContextGatingReasoning(x, mask))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.cg = ContextGatingReasoning(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.cg(x, mask), dim=-1)


@dataclass
class CEVideo:
    """The video side of the CE module: gated embeddings and the intermediates, each [B, S]."""

    reduced: list[torch.Tensor]
    masks: list[torch.Tensor]
    embeddings: list[torch.Tensor]


class CEModule(nn.Module):
    """The official ``CEModule`` (module ``ce``): the text units, the MoE weights, the reduction,
    the pairwise reasoning ``g`` and the video gated units."""

    def __init__(self, arch: CEArchitecture):
        super().__init__()
        shared, experts = arch.shared_dim, arch.order
        self.moe_fc = nn.Linear(arch.text_vlad_dim, len(experts))
        self.video_dim_reduce = nn.ModuleList([ReduceDim(arch.pooled_dim(m), shared) for m in experts])
        self.g_reason_1 = nn.Linear(2 * shared, shared)
        self.g_reason_shared = nn.Sequential(nn.BatchNorm1d(shared), nn.Mish(), nn.Linear(shared, shared), nn.BatchNorm1d(shared), nn.Mish(), nn.Linear(shared, shared))
        self.video_GU = nn.ModuleList([GatedEmbeddingUnitReasoning(shared) for _ in experts])
        self.text_GU = nn.ModuleList([GatedEmbeddingUnit(arch.text_vlad_dim, shared) for _ in experts])

    def text(self, text_vlad: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-expert text embeddings [Q, S] and the mixture weights [Q, M] (before renormalisation)."""
        return [unit(text_vlad) for unit in self.text_GU], F.softmax(self.moe_fc(text_vlad), dim=1)

    def reason(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """``g([left; right])``; each pair is its own call (in training, its own BatchNorm batch)."""
        return self.g_reason_shared(self.g_reason_1(torch.cat([left, right], dim=1)))

    def video(self, pooled: list[torch.Tensor], available: torch.Tensor) -> CEVideo:
        """Collaborative gating in expert order; ``available`` [B, M] (0/1, the features' dtype)."""
        reduced = [reduce(x) for reduce, x in zip(self.video_dim_reduce, pooled)]
        current, masks = list(reduced), []
        for m, unit in enumerate(self.video_GU):
            pairs = available[:, m : m + 1] * available  # [B, M]: both experts present
            total = torch.zeros_like(current[m])
            for n in range(len(current)):
                total = total + pairs[:, n : n + 1] * self.reason(current[m], current[n])
            mask = total / (pairs.sum(1, keepdim=True) + CE_EPS)
            masks.append(mask)
            current[m] = unit(current[m], mask)  # later experts pair with the gated embedding
        return CEVideo(reduced, masks, current)


# ----- the network ----------------------------------------------------------------------------


@dataclass
class CEOutput:
    """What ``CENet`` computes. B videos, C captions per video, M experts (sorted), S shared width.

    ``text_embds``: name -> [B, C, S]; ``vid_embds``: name -> [B, S] (both unit norm);
    ``moe_weights`` [B, C, M] (softmax, before the availability renormalisation);
    ``available`` [B, M]; intermediates: ``text_vlad`` [B*C, Dt*K], ``pooled`` (the
    variable-length experts' NetVLAD outputs), ``video_reduced`` and ``ce_mask`` (name -> [B, S])."""

    text_embds: dict[str, torch.Tensor]
    vid_embds: dict[str, torch.Tensor]
    moe_weights: torch.Tensor
    available: torch.Tensor
    text_vlad: torch.Tensor
    pooled: dict[str, torch.Tensor]
    video_reduced: dict[str, torch.Tensor]
    ce_mask: dict[str, torch.Tensor]

    def text_side(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Text embeddings [B*C, M, S] and weights [B*C, M], rows video-major."""
        text = torch.stack(list(self.text_embds.values()), dim=2)
        return text.flatten(0, 1), self.moe_weights.flatten(0, 1)

    def video_side(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Video embeddings [B, M, S] and availability [B, M]."""
        return torch.stack(list(self.vid_embds.values()), dim=1), self.available

    def similarity(self) -> torch.Tensor:
        """[B*C, B]: every caption row against every video (the official ``indep`` mode;
        training with C > 1 averages each video's C rows)."""
        return ce_similarity(*self.text_side(), *self.video_side())


class CENet(nn.Module):
    """The official ``CENet`` for TeachText's CE+ (see the module docstring)."""

    def __init__(self, arch: CEArchitecture):
        super().__init__()
        self.arch = arch
        self.pooling = nn.ModuleDict({m: NetVLAD(arch.experts[m], k) for m, k in sorted(arch.vlad_clusters.items())})
        self.text_pooling = NetVLAD(arch.text_dim, arch.text_clusters, arch.text_ghosts)
        self.ce = CEModule(arch)

    def forward(self, experts: Mapping[str, torch.Tensor], available: Mapping[str, torch.Tensor], text: torch.Tensor) -> CEOutput:
        """``experts``: name -> [B, D] ([B, T, D] for a variable-length expert; rows of missing
        videos may hold anything, NaN included); ``available``: name -> [B] (0/1); ``text``
        [B, C, L, Dt] (zero padded tokens). Returns a ``CEOutput``."""
        order = self.arch.order
        features, avail = self._inputs(experts, available)
        pooled = {m: self.pooling[m](features[m]) for m in order if m in self.pooling}
        batch, captions = text.shape[:2]
        text_vlad = self.text_pooling(text.reshape(batch * captions, *text.shape[2:]))
        text_units, weights = self.ce.text(text_vlad)
        video = self.ce.video([pooled.get(m, features[m]) for m in order], avail)
        return CEOutput(
            text_embds={m: t.reshape(batch, captions, -1) for m, t in zip(order, text_units)},
            vid_embds=dict(zip(order, video.embeddings)),
            moe_weights=weights.reshape(batch, captions, -1),
            available=avail,
            text_vlad=text_vlad,
            pooled=pooled,
            video_reduced=dict(zip(order, video.reduced)),
            ce_mask=dict(zip(order, video.masks)),
        )

    def _inputs(self, experts: Mapping[str, torch.Tensor], available: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The expert features with missing rows zeroed (a copy) and the availability [B, M]."""
        order = self.arch.order
        if missing := [m for m in order if m not in experts or m not in available]:
            raise ConfigError(f"CENet: no features or availability for experts {missing} (expected {list(order)})")
        features = {m: drop_missing(m, experts[m], available[m], 3 if m in self.pooling else 2) for m in order}
        dtype = features[order[0]].dtype
        return features, torch.stack([available[m].to(dtype) for m in order], dim=1)


def drop_missing(name: str, x: torch.Tensor, available: torch.Tensor, dims: int) -> torch.Tensor:
    """A copy of ``x`` with the rows of missing videos set to 0; refuses NaN in an available row."""
    if x.dim() != dims or available.shape != x.shape[:1]:
        raise ConfigError(f"CENet: expert {name!r} has shape {tuple(x.shape)} and availability {tuple(available.shape)}; expected {dims} dims and [B]")
    if not torch.all((available == 0) | (available == 1)):
        raise ConfigError(f"CENet: the availability of expert {name!r} must be 0 or 1")
    present = (available == 1).reshape(-1, *[1] * (dims - 1))
    if torch.isnan(x).logical_and(present).any():
        rows = torch.isnan(x).flatten(1).any(1).logical_and(available == 1).nonzero().flatten().tolist()
        raise NumericalError(f"CENet: expert {name!r} has NaN in rows marked available: {rows}")
    return torch.where(present, x, torch.zeros((), dtype=x.dtype, device=x.device))


def ce_similarity(text: torch.Tensor, weights: torch.Tensor, video: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """CE's similarity [Q, V]: ``sum_m w[q,m] av[v,m] <t_m[q], v_m[v]> / sum_m w[q,m] av[v,m]``.

    ``text`` [Q, M, S] and ``weights`` [Q, M] (the MoE softmax) for the caption rows; ``video``
    [V, M, S] and ``available`` [V, M] (0/1) for the videos, which may come from another set.
    The availability renormalises the weights per (caption, video) pair. A video with no
    available expert is refused (officially a NaN row)."""
    if text.shape[1:] != video.shape[1:] or weights.shape != text.shape[:2] or available.shape != video.shape[:2]:
        raise ConfigError(
            f"ce_similarity: shapes text {tuple(text.shape)}, weights {tuple(weights.shape)}, video {tuple(video.shape)}, available {tuple(available.shape)} do not fit"
        )
    available = available.to(text.dtype)
    if empty := (available.sum(1) == 0).nonzero().flatten().tolist():
        raise NumericalError(f"ce_similarity: videos {empty} have no available expert (the official code gives NaN similarities)")
    numerator = (text * weights.unsqueeze(2)).flatten(1) @ (video * available.unsqueeze(2)).flatten(1).T
    return numerator / (weights @ available.T)
