"""Small building blocks shared by the student and the teacher heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from teachcache.cache.errors import ConfigError


def identity_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A linear layer starting as the identity where the widths match (zero bias)."""
    layer = nn.Linear(in_dim, out_dim)
    with torch.no_grad():
        layer.bias.zero_()
        if in_dim == out_dim:
            layer.weight.copy_(torch.eye(in_dim))
    return layer


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` with masked-out entries at 0; all-masked slices give all zeros."""
    weights = F.softmax(logits.masked_fill(~mask, float("-inf")), dim=dim)
    return torch.nan_to_num(weights, nan=0.0)


def masked_mean_video(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the L2-normalised valid frames, [B, F, D] -> [B, D] (zeros for no valid frame)."""
    weights = mask.to(frames.dtype).unsqueeze(-1)
    total = (F.normalize(frames, dim=-1) * weights).sum(1)
    return total / weights.sum(1).clamp(min=1.0)


class TemporalEncoder(nn.Module):
    """CLIP4Clip's seqTransf core: frame position embeddings, residual transformer layers
    over the valid frames, output + input."""

    def __init__(self, dim: int, layers: int, heads: int, max_frames: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"{heads} attention heads do not divide the frame width {dim}")
        self.max_frames = max_frames
        self.positions = nn.Embedding(max_frames, dim)
        nn.init.normal_(self.positions.weight, std=0.01)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = frames.shape[1]
        if n > self.max_frames:
            raise ConfigError(f"{n} frames exceed the {self.max_frames} position embeddings")
        hidden = frames + self.positions(torch.arange(n, device=frames.device))
        # a video with no valid frame would attend to nothing: let it attend to all (its output is masked later)
        key_padding = ~mask.bool() & mask.bool().any(-1, keepdim=True)
        return self.layers(hidden, src_key_padding_mask=key_padding) + frames
