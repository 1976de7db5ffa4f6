"""Stage one from files with the official checkpoints (issue 13, end to end): the real clips
through `teachcache extract` with X-CLIP's and TS2-Net's own backbones and heads and TeachCLIP's
student CLIP; the stored frames are the official towers on the official loader's frames (the
golden ``frames/`` record), padded slots included; TS2-Net's frame tokens are seeded; an
official student scores the store through `teachcache evaluate --checkpoint`."""

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import GOLDEN, REAL_CLIPS
from golden import checkpoint_path, need_golden

from teachcache.cache.store import Store
from teachcache.pipeline.cli import main
from teachcache.pipeline.official import load_official

CONFIG = """
[extract]
data = "data"
store = "store"
[extract.decode]
workers = 0
[extract.layout]
shard_size = 4
chunk_rows = 2
[extract.frame_encoders.xclip]
kind = "clip4clip"
pretrained = "{xclip}"
[extract.frame_encoders.ts2net]
kind = "ts2net"
pretrained = "{ts2net}"
noise_seed = 1234
[extract.frame_encoders.student]
kind = "clip4clip"
pretrained = "{teachclip}"
[extract.text_encoders.xclip]
kind = "clip4clip"
pretrained = "{xclip}"
max_words = 32
tokens = 32
[extract.text_encoders.ts2net]
kind = "clip4clip"
pretrained = "{ts2net}"
max_words = 32
[extract.text_encoders.student]
kind = "clip4clip"
pretrained = "{teachclip}"
max_words = 32
[extract.teachers.xclip]
kind = "xclip"
frames = "xclip"
text = "xclip"
checkpoint = "{xclip}"
temporal_layers = 2
[extract.teachers.ts2net]
kind = "ts2net"
frames = "ts2net"
text = "ts2net"
checkpoint = "{ts2net}"
temporal_layers = 2
[train]
frames = "student"
text = "student"
"""


class TinyVocabulary:
    """The golden checkpoints' 512-id vocabulary (start 510, end 511): words hashed below 500.
    (CLIP's BPE tokenizer needs 49,408 ids; the official code's token ids are tested elsewhere.)"""

    sot_token_id, eot_token_id = 510, 511

    def encode(self, text: str) -> list[int]:
        return [sum(map(ord, word)) % 500 + 1 for word in text.lower().split()]


@pytest.fixture(scope="module", autouse=True)
def tiny_vocabulary():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("teachcache.stages.extract.encoders.openai_clip.check_vocabulary", lambda checkpoint: TinyVocabulary())
        yield


@pytest.fixture(scope="module")
def official_store(tmp_path_factory, tiny_vocabulary):
    need_golden()
    root = tmp_path_factory.mktemp("official")
    (root / "teachclip.toml").write_text(CONFIG.format(xclip=checkpoint_path("xclip"), ts2net=checkpoint_path("ts2net"), teachclip=checkpoint_path("teachclip")))
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        prepared = runner.invoke(main, ["prepare", "--dataset", "custom", "--root", str(REAL_CLIPS), "--split", "test", "--out", "data"])
        assert prepared.exit_code == 0, prepared.output
        extracted = runner.invoke(main, ["extract", "--quiet", "--config", "teachclip.toml"])
        assert extracted.exit_code == 0, extracted.output
    finally:
        os.chdir(cwd)
    return root


def _golden_crops(video_id: str) -> tuple[np.ndarray, np.ndarray]:
    record = np.load(GOLDEN / "frames" / "sampling.npz")
    crops, mask = record[f"{video_id}__crops_uint8"], record[f"{video_id}__video_mask"] > 0
    frames = np.zeros((len(mask), *crops.shape[1:]), np.uint8)
    frames[: len(crops)] = crops
    return frames, mask


def test_stored_frames_are_the_official_tower_on_the_official_frames_padding_included(official_store):
    frames, mask = _golden_crops("tav_car-turn")
    model = load_official(checkpoint_path("xclip"))
    expected = model.frames.encode(frames, mask)  # padded slots: the blank (zero) frame's features
    with Store.open(official_store / "store") as store:
        row = store.videos().column("video_id").to_pylist().index("tav_car-turn")
        stored = store.read("frames/xclip", slice(row, row + 1))[0].astype(np.float32)
        assert np.array_equal(store.read("frame_mask/xclip", slice(row, row + 1))[0], mask)
        tokens = store.read("frame_tokens/ts2net", slice(0, 6))
    np.testing.assert_allclose(stored, expected, atol=2e-3, rtol=1e-2)  # float16 storage
    assert not mask.all() and np.abs(stored[~mask]).max() > 0  # the padded slots hold features, as the official loaders' zeros give
    assert tokens.shape == (6, 12, 4, 128) and np.isfinite(tokens).all()


def test_stored_relevance_is_the_official_heads_on_those_frames(official_store):
    frames, mask = _golden_crops("tav_car-turn")
    model = load_official(checkpoint_path("xclip"))
    pixels = torch.from_numpy(model.frames.encode(frames, mask)).unsqueeze(0)
    ids, _ = model.text.tokenize(["a jeep car is moving on the road"])
    text = model.text_arrays(torch.from_numpy(ids))
    video = {"frames/f": pixels, "frame_mask/f": torch.from_numpy(mask).unsqueeze(0)}
    expected = model.relevance(text, video)[0].numpy()
    with Store.open(official_store / "store") as store:
        row = store.captions().column("video_id").to_pylist().index("tav_car-turn")
        stored = store.read("relevance/xclip", slice(row, row + 1))[0].astype(np.float32)
    np.testing.assert_allclose(stored, expected, atol=3e-3)


def test_ts2net_tokens_are_drawn_from_the_recorded_seed(official_store):
    """A second extraction from scratch stores the very same frame tokens (noise_seed + shard)."""
    cwd = os.getcwd()
    os.chdir(official_store)
    try:
        with Store.open("store") as store:
            first = store.read("frame_tokens/ts2net", slice(0, 6))
        again = CliRunner().invoke(main, ["extract", "--quiet", "--force", "--config", "teachclip.toml"])
        assert again.exit_code == 0, again.output
        with Store.open("store") as store:
            assert np.array_equal(store.read("frame_tokens/ts2net", slice(0, 6)), first)
            assert store.attrs["config"]["frame_encoders"]["ts2net"]["noise_seed"] == 1234
    finally:
        os.chdir(cwd)


def test_evaluate_scores_an_official_student_on_its_own_clip_s_features_only(official_store):
    cwd = os.getcwd()
    os.chdir(official_store)
    try:
        runner = CliRunner()
        scored = runner.invoke(main, ["evaluate", "--config", "teachclip.toml", "--checkpoint", checkpoint_path("teachclip")])
        assert scored.exit_code == 0, scored.output
        assert "t2v: R@1" in scored.output and "teachclip checkpoint (seqTransf (2 layers), AFA, logit scale" in scored.output and "on 6 test videos, 6 captions" in scored.output
        other = runner.invoke(main, ["evaluate", "--config", "teachclip.toml", "--set", "train.frames=xclip", "--checkpoint", checkpoint_path("teachclip")])
        assert other.exit_code == 2 and "frames/xclip in store" in other.output and "not " + checkpoint_path("teachclip") in other.output
    finally:
        os.chdir(cwd)
