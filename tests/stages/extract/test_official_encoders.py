"""Backbones of official checkpoints as stage-one encoders (issue 13): the OpenAI towers of the
CLIP4Clip family, TS2-Net's visual backbone with token shift and selection, X-Pool's
HuggingFace CLIP. Checked on the golden files from uint8 frames and token ids."""

import numpy as np
import pytest
import torch
from golden import GOLDEN, NOISE_SEED, XPOOL_HEADS, checkpoint, checkpoint_path, golden, need_golden, npz

from teachcache.cache.errors import ConfigError
from teachcache.stages.common.checkpoints.base import CheckpointError
from teachcache.stages.extract.decode import GeometrySpec
from teachcache.stages.extract.encoders.base import ModelSpec
from teachcache.stages.extract.encoders.hf_clip import HFClipFrameEncoder, HFClipText, xpool_token_ids
from teachcache.stages.extract.encoders.openai_clip import OpenAIClipFrameEncoder, OpenAIClipText, build_visual, clip4clip_token_ids, normalise
from teachcache.stages.extract.encoders.ts2net import PatchShift, TS2NetFrameEncoder, build_ts2net_visual, perturbed_topk

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("golden_folder")


@pytest.fixture
def golden_folder():
    need_golden()


def _close(ours, theirs, rel=1e-4):
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= rel * np.abs(theirs).max()


def _frames(case="clip4clip"):
    """uint8 frames [36, 224, 224, 3] and which are real [36] (the rest are the official zero padding)."""
    inp = npz(case, "inputs")
    return inp["frames_uint8"].reshape(-1, 224, 224, 3), inp["video_mask"].reshape(-1).astype(bool)


def test_normalising_uint8_frames_gives_the_official_pixels_bit_for_bit():
    frames, valid = _frames()
    assert torch.equal(normalise(frames, CPU, valid), torch.from_numpy(npz("clip4clip", "inputs")["video"]).view(-1, 3, 224, 224))
    xpool = npz("xpool", "inputs")
    pixels = normalise(xpool["frames_uint8"].reshape(-1, 3, 224, 224), CPU, channels_last=False)
    assert torch.equal(pixels, torch.from_numpy(xpool["video"]).view(-1, 3, 224, 224))


@pytest.mark.parametrize("case", ["clip4clip", "teachclip", "xclip"])
def test_frame_encoder_gives_the_official_cls_features(case):
    enc = OpenAIClipFrameEncoder(checkpoint_path(case), CPU, batch_size=10)
    assert enc.geometry == GeometrySpec(224, "bicubic", "shortest") and enc.dim == 128
    frames, valid = _frames(case)
    _close(enc.encode(frames, valid).reshape(3, 12, -1), golden(case)["visual_output_fp32"])
    tokens = enc.encode_pixels(normalise(frames[:2], CPU), tokens=True)
    assert tokens.shape == (2, 50, 128)
    torch.testing.assert_close(tokens[:, 0], torch.from_numpy(enc.encode(frames[:2])))


def test_text_encoder_gives_end_of_text_and_every_position():
    ids = npz("xclip", "inputs")["input_ids"].reshape(4, 32)
    enc = OpenAIClipText(ModelSpec(model=checkpoint_path("xclip")), CPU, batch_size=3)
    assert enc.max_words == 32 and enc.dim == 128  # X-CLIP's file tells its max_words
    eot, hidden = enc.encode_ids(ids)
    out = golden("xclip")
    _close(eot.numpy()[:, None], out["sequence_output_fp32"])
    _close(hidden.numpy(), out["seq_features_fp32"])
    # the TextEncoder interface, with the golden ids standing in for the BPE tokenizer (the tiny vocabulary has 512 ids)
    mask = npz("xclip", "inputs")["input_mask"].reshape(4, 32)
    enc.tokenize = lambda texts: (ids[[int(t) for t in texts]], mask[[int(t) for t in texts]])  # type: ignore[method-assign]
    _close(enc.encode(["0", "1", "2", "3"])[:, None], out["sequence_output_fp32"])
    feats, real = enc.encode_tokens(["0", "1", "2", "3"], 40)
    assert feats.shape == (4, 40, 128) and not feats[:, 32:].any() and np.array_equal(real[:, :32], mask.astype(bool))
    _close(feats[:, :32], out["seq_features_fp32"])


def test_the_bpe_tokenizer_needs_clip_s_vocabulary():
    enc = OpenAIClipText(ModelSpec(model="", pretrained=checkpoint_path("clip4clip"), max_words=16), CPU)
    assert enc.max_words == 16
    with pytest.raises(ConfigError, match="vocabulary has 512 ids, CLIP's BPE tokenizer needs 49408"):
        enc.encode(["a cat"])
    with pytest.raises(ConfigError, match="max_words = 80 exceeds the checkpoint's context length 77"):
        OpenAIClipText(ModelSpec(model=checkpoint_path("clip4clip"), max_words=80), CPU)


def test_clip4clip_tokenisation_equals_the_official_on_1006_captions():
    tokens = np.load(GOLDEN / "frames" / "tokens.npz")
    ids, mask = clip4clip_token_ids(list(tokens["sentences"]), 32)
    assert np.array_equal(ids, tokens["input_ids"]) and np.array_equal(mask, tokens["input_mask"])


def test_xpool_tokenisation_pads_with_end_of_text_to_the_longest():
    sentences = ["a man is singing", "a dog runs across the big green field"]
    ids, mask = xpool_token_ids(sentences)
    c4c, c4c_mask = clip4clip_token_ids(sentences, 32)
    n = c4c_mask.sum(1)
    assert ids.shape == (2, n.max()) and np.array_equal(mask.sum(1), n)
    assert np.array_equal(ids[0, : n[0]], c4c[0, : n[0]]) and (ids[0, n[0] :] == 49407).all()


def test_fp16_official_towers_are_float16_with_float32_norms_and_match_the_plain_outputs():
    tower = build_visual(checkpoint("clip4clip"), "fp16_official")
    assert tower.conv1.weight.dtype == tower.proj.dtype == tower.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16
    assert tower.ln_pre.weight.dtype == tower.class_embedding.dtype == torch.float32
    enc = OpenAIClipFrameEncoder(checkpoint("clip4clip"), CPU, precision="fp16_official")
    frames, valid = _frames()
    assert np.abs(enc.encode(frames, valid).reshape(3, 12, -1) - golden("clip4clip")["visual_output"]).max() < 1e-2
    with pytest.raises(ConfigError, match="unknown precision 'int8'"):
        build_visual(checkpoint("clip4clip"), "int8")


# ----- TS2-Net --------------------------------------------------------------------------------
def test_patch_shift_moves_whole_tokens_between_neighbouring_frames():
    x = torch.arange(2 * 3 * 50, dtype=torch.float32).view(6, 50, 1).expand(6, 50, 2)  # 2 videos x 3 frames
    out = PatchShift(3)(x.transpose(0, 1)).transpose(0, 1).reshape(2, 3, 50, 2)  # sequence-first, as inside the tower
    v = x.reshape(2, 3, 50, 2)
    assert torch.equal(out[:, 1:, [1, 8, 43]], v[:, :-1, [1, 8, 43]]) and torch.equal(out[:, 0, 1], v[:, 0, 1])
    assert torch.equal(out[:, :-1, [4, 11, 46]], v[:, 1:, [4, 11, 46]]) and torch.equal(out[:, 2, 4], v[:, 2, 4])
    assert torch.equal(out[:, :, [0, 2, 3, 5, 49]], v[:, :, [0, 2, 3, 5, 49]])
    with pytest.raises(ConfigError, match="whole videos of 3 frames; got 4"):
        PatchShift(3)(torch.zeros(50, 4, 2))


def test_perturbed_topk_at_sigma_0_is_the_hard_top_k_in_ascending_index():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.7]])
    ind = perturbed_topk(scores, 3, torch.randn(1, 10, 5), sigma=0.0)
    assert torch.equal(ind.argmax(-1), torch.tensor([[1, 3, 4]])) and torch.equal(ind.sum(-1), torch.ones(1, 3))


@pytest.mark.parametrize("sigma, suffix", [(0.05, ""), (0.0, "_sigma0")])
def test_ts2net_tokens_at_the_recorded_seed(sigma, suffix):
    enc = TS2NetFrameEncoder(checkpoint("ts2net"), CPU, batch_size=13, sigma=sigma)  # 13 -> 12: whole videos per batch
    assert enc.batch_size == 12 and enc.dim == 128
    frames, valid = _frames("ts2net")
    tokens = enc.encode_tokens(frames, torch.Generator().manual_seed(NOISE_SEED), valid)
    assert tokens.shape == (36, 4, 128)
    _close(tokens.reshape(3, 48, -1), golden("ts2net")[f"visual_output{suffix}_fp32"])
    other = enc.encode_tokens(frames, torch.Generator().manual_seed(NOISE_SEED + 1), valid)
    assert (np.abs(other - tokens).max() > 1e-3) == (sigma > 0)
    cls = enc.encode(frames, valid)
    np.testing.assert_allclose(cls, tokens[:, 0], atol=1e-5)


def test_ts2net_variants_and_refusals():
    with pytest.raises(ConfigError, match="needs fill"):
        build_ts2net_visual(checkpoint("ts2net"), variant="teachclip")
    with pytest.raises(CheckpointError, match="lacks"):
        build_ts2net_visual(checkpoint("ts2net"), variant="teachclip", fill={})
    with pytest.raises(CheckpointError, match="is a 'seqTransf' checkpoint, not TS2-Net's"):
        build_ts2net_visual(checkpoint("clip4clip"))
    fill = GOLDEN / "ts2net" / "teachclip_base_clip_fill.safetensors"
    variant = build_ts2net_visual(checkpoint("ts2net"), variant="teachclip", fill=fill)
    original = build_ts2net_visual(checkpoint("ts2net"))
    assert all(isinstance(b.shift, torch.nn.Identity) for b in variant.tower.transformer.resblocks)
    assert isinstance(original.tower.transformer.resblocks[10].shift, PatchShift) and isinstance(original.tower.transformer.resblocks[9].shift, torch.nn.Identity)
    a, b = (m.tower.transformer.resblocks[11].attn.in_proj_weight for m in (variant, original))
    assert not torch.equal(a, b)


# ----- X-Pool's HuggingFace CLIP --------------------------------------------------------------
def test_hf_clip_encoders_give_x_pool_s_features_exactly():
    inp, out = npz("xpool", "inputs"), golden("xpool")
    frames = inp["frames_uint8"].reshape(-1, 3, 224, 224).transpose(0, 2, 3, 1)
    enc = HFClipFrameEncoder(checkpoint("xpool"), CPU, batch_size=7, vision_heads=XPOOL_HEADS)
    assert enc.dim == 512 and enc.geometry.image_size == 224
    _close(enc.encode(frames).reshape(3, 12, -1), out["frame_embeds"])
    text = HFClipText(ModelSpec(model=checkpoint_path("xpool")), CPU, text_heads=XPOOL_HEADS)
    np.testing.assert_array_equal(text.encode_ids(inp["input_ids"], inp["attention_mask"]).numpy(), out["text_embeds"])
    one_head = HFClipText(ModelSpec(model=checkpoint_path("xpool")), CPU, text_heads=1)
    assert np.abs(one_head.encode_ids(inp["input_ids"]).numpy() - out["text_embeds"]).max() > 0.1  # the heads are not in the file
    with pytest.raises(ConfigError, match="not a HuggingFace CLIP"):
        HFClipFrameEncoder(checkpoint("clip4clip"))
