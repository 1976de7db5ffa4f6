"""Small building blocks shared by the student, the teacher heads and the official backbones."""

from __future__ import annotations

from collections import OrderedDict

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


# ----- OpenAI CLIP's building blocks ----------------------------------------------------------
# Named as in OpenAI CLIP and CLIP4Clip, so an official state dict loads 1:1 once its prefix
# (``clip.visual.``, ``clip.``, ``transformerClip.``) is stripped. ``Transformer`` and
# ``CrossTransformer`` take batch-first inputs; the blocks run sequence-first inside.


class QuickGELU(nn.Module):
    """CLIP's activation: ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """A LayerNorm that computes in float32 and returns the input's dtype (as in OpenAI CLIP's
    float16 towers, whose LayerNorms keep float32 weights)."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


class ResidualAttentionBlock(nn.Module):
    """A pre-norm transformer layer over sequence-first x [L, N, width]: ``x + attn(ln_1(x))``,
    then ``x + mlp(ln_2(x))`` with a QuickGELU MLP of 4x the width. ``attn_mask`` is a fixed
    additive mask [L, L] (the text tower's causal mask); a per-call mask may be given to
    ``forward`` instead. ``shift`` acts on the attention's input only (the identity; TS2-Net's
    patch shift replaces it)."""

    def __init__(self, width: int, heads: int, eps: float = 1e-5, attn_mask: torch.Tensor | None = None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)  # sequence-first, as the official code runs it
        self.ln_1 = LayerNorm(width, eps)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width)))
        self.ln_2 = LayerNorm(width, eps)
        self.attn_mask = attn_mask
        self.shift: nn.Module = nn.Identity()

    def attention(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.attn_mask if attn_mask is None else attn_mask
        if mask is not None:
            mask = mask.to(dtype=x.dtype, device=x.device)
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.shift(self.ln_1(x)), attn_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """``layers`` residual attention blocks (``resblocks``) over batch-first x [N, L, width],
    run sequence-first inside as the official code (the same kernels, the same rounding)."""

    def __init__(self, width: int, layers: int, heads: int, eps: float = 1e-5, attn_mask: torch.Tensor | None = None):
        super().__init__()
        if width % heads:
            raise ConfigError(f"{heads} attention heads do not divide the width {width}")
        self.width, self.layers, self.heads = width, layers, heads
        self.resblocks = nn.Sequential(*(ResidualAttentionBlock(width, heads, eps, attn_mask) for _ in range(layers)))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x.permute(1, 0, 2)
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x.permute(1, 0, 2)


def causal_mask(length: int) -> torch.Tensor:
    """The text tower's additive mask [L, L]: -inf strictly above the diagonal."""
    return torch.full((length, length), float("-inf")).triu_(1)


class CrossTransformer(nn.Module):
    """CLIP4Clip's seqTransf cross module (docs/method.md section 4; the notes' section 3.4):
    frame position embeddings (rows 0..N-1), a transformer with LayerNorm eps 1e-12 and
    QuickGELU whose keys at padded positions get -1e6, output plus the input.

    ``wrap_positions`` takes positions modulo ``rows`` (TeachCLIP's TS2-Net wrapper) instead of
    refusing more than ``rows`` positions."""

    def __init__(self, width: int, layers: int, heads: int, rows: int = 77, wrap_positions: bool = False):
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(rows, width)
        self.transformerClip = Transformer(width, layers, heads, eps=1e-12)
        self.wrap_positions = wrap_positions

    def key_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The additive mask [B*heads, N, N]: -1e6 on the keys of padded positions."""
        n, heads = mask.shape[1], self.transformerClip.heads
        padded = (1.0 - mask.float()).unsqueeze(1) * -1000000.0
        return padded.expand(-1, n, -1).repeat_interleave(heads, dim=0)

    def hidden(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer's output for x [B, N, D] and mask [B, N] (1 = valid), before the residual."""
        n, rows = x.shape[1], self.frame_position_embeddings.num_embeddings
        if n > rows and not self.wrap_positions:
            raise ConfigError(f"{n} positions exceed the cross module's {rows} position embeddings")
        positions = torch.arange(n, device=x.device) % rows
        return self.transformerClip(x + self.frame_position_embeddings(positions), self.key_mask(mask).to(x.device))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.hidden(x, mask) + x


CROSS_ROWS = 77  # CLIP4Clip sets the cross config's max_position_embeddings to CLIP's context length


def cross_heads(width: int) -> int:
    """CLIP4Clip's attention heads for a width (``width // 64``), or the largest count below
    it that divides the width (at least one)."""
    return next(h for h in range(max(1, width // 64), 0, -1) if width % h == 0)


def temporal_module(width: int, layers: int, heads: int = 0, positions: int = 0) -> CrossTransformer:
    """A fresh seqTransf (CLIP4Clip's cross module) initialised as CLIP4Clip does: linear and
    embedding weights from N(0, 0.02), zero biases, LayerNorms at one and zero (the attention's
    in-projection keeps torch's default, as CLIP4Clip's ``init_weights`` does not reach it).
    ``heads`` 0 = ``cross_heads(width)``; ``positions``: most positions it must take (rows >= 77)."""
    cross = CrossTransformer(width, layers, heads or cross_heads(width), max(CROSS_ROWS, positions))
    for module in cross.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return cross
