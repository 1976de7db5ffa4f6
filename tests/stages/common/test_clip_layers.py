"""OpenAI CLIP's building blocks and CLIP4Clip's cross module (stages/common/layers.py)."""

import pytest
import torch
import torch.nn.functional as F

from teachcache.cache.errors import ConfigError
from teachcache.stages.common.checkpoints.clip4clip import BLOCK
from teachcache.stages.common.layers import CrossTransformer, LayerNorm, QuickGELU, ResidualAttentionBlock, Transformer, causal_mask


def test_quick_gelu_and_float32_layer_norm():
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(QuickGELU()(x), x * torch.sigmoid(1.702 * x))
    ln = LayerNorm(4, eps=1e-12)
    half = torch.randn(2, 4).half()
    out = ln(half)
    assert out.dtype == torch.float16 and ln.eps == 1e-12
    torch.testing.assert_close(out, F.layer_norm(half.float(), (4,), eps=1e-12).half())


def test_block_and_transformer_are_named_as_openai_clip():
    block = ResidualAttentionBlock(8, 2)
    assert set(block.state_dict()) == set(BLOCK)
    names = set(Transformer(8, 3, 2).state_dict())
    assert names == {f"resblocks.{i}.{n}" for i in range(3) for n in BLOCK}
    with pytest.raises(ConfigError, match="3 attention heads do not divide the width 8"):
        Transformer(8, 1, 3)


def test_causal_mask_keeps_earlier_positions_independent_of_later_ones():
    torch.manual_seed(0)
    model = Transformer(8, 2, 2).eval()
    x = torch.randn(1, 5, 8)
    y = x.clone()
    y[:, 3:] += 1.0
    with torch.no_grad():
        a, b = model(x, causal_mask(5)), model(y, causal_mask(5))
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_cross_transformer_masks_padded_keys_and_adds_its_input():
    torch.manual_seed(0)
    cross = CrossTransformer(8, 2, 2, rows=6).eval()
    assert set(cross.state_dict()) == {"frame_position_embeddings.weight"} | {f"transformerClip.resblocks.{i}.{n}" for i in range(2) for n in BLOCK}
    assert all(b.ln_1.eps == 1e-12 and isinstance(b.mlp.gelu, QuickGELU) for b in cross.transformerClip.resblocks)
    x, mask = torch.randn(2, 4, 8), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    y = x.clone()
    y[0, 3] = 5.0  # a padded frame: the valid frames must not see it
    with torch.no_grad():
        a, b = cross(x, mask), cross(y, mask)
        torch.testing.assert_close(a, cross.hidden(x, mask) + x)
    torch.testing.assert_close(a[0, :3], b[0, :3])
    torch.testing.assert_close(a[1], b[1])
    assert cross.key_mask(mask).shape == (4, 4, 4) and cross.key_mask(mask)[1, 0, 3] == -1e6  # [B*heads, N, N]: video 0 twice


def test_cross_transformer_positions_beyond_its_rows():
    cross = CrossTransformer(8, 1, 2, rows=3).eval()
    with pytest.raises(ConfigError, match="4 positions exceed the cross module's 3 position embeddings"):
        cross(torch.zeros(1, 4, 8), torch.ones(1, 4))
    wrapped = CrossTransformer(8, 1, 2, rows=3, wrap_positions=True).eval()
    assert wrapped(torch.zeros(1, 4, 8), torch.ones(1, 4)).shape == (1, 4, 8)
