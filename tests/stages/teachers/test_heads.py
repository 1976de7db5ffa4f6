"""Each head's logits and relevance on small cases checked by hand (docs/method.md section 3)."""

import math

import numpy as np
import pytest
import torch

from teachcache.cache.errors import UnknownKind
from teachcache.stages.common.data import CAPTION_ROW, VIDEO_ROW
from teachcache.stages.teachers.base import TeacherError
from teachcache.stages.teachers.config import TeacherConfig
from teachcache.stages.teachers.heads import build_teacher, teacher_class

SQRT3 = math.sqrt(3.0)


def _head(kind, text_dim=2, frame_dim=2, frames=2, scale=100.0, **extra):
    dims = {"text/t": (text_dim,), "frames/f": (frames, frame_dim), "frame_mask/f": (frames,), **extra.pop("dims", {})}
    head = build_teacher(TeacherConfig(name="h", kind=kind, frames="f", text="t", scale=scale, **extra), dims)
    return head.eval()


def _inputs(text, frames, mask):
    return {"text/t": torch.tensor(text)}, {"frames/f": torch.tensor(frames), "frame_mask/f": torch.tensor(mask)}


# ----- dual -----------------------------------------------------------------------------------
def test_dual_relevance_is_cosine_with_own_frames_and_zero_on_padding():
    text, video = _inputs([[1.0, 0.0]], [[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [5.0, 5.0]]], [[True, True, True, False]])
    r = _head("dual", frames=4).relevance(text, video)
    torch.testing.assert_close(r, torch.tensor([[1.0, 0.0, 2**-0.5, 0.0]]))


def test_dual_logits_use_the_masked_mean_of_normalised_frames():
    # video 0: frames (1,0) and (0,1) -> mean (0.5, 0.5); video 1: valid frame (0, 4), the padded (9, 0) must not count
    text, video = _inputs([[1.0, 0.0], [0.0, 2.0]], [[[3.0, 0.0], [0.0, 1.0]], [[0.0, 4.0], [9.0, 0.0]]], [[True, True], [True, False]])
    s = 10 * 2**-0.5
    torch.testing.assert_close(_head("dual", scale=10.0).logits(text, video), torch.tensor([[s, 0.0], [s, 10.0]]))


def test_dual_video_without_valid_frames_scores_zero_and_widths_must_match():
    text, video = _inputs([[1.0, 1.0]], [[[0.0, 0.0], [0.0, 0.0]]], [[False, False]])
    assert torch.equal(_head("dual").logits(text, video), torch.zeros(1, 1))
    with pytest.raises(TeacherError, match="teacher 'h' \\(dual\\).*width 3 but frames/f has 2"):
        _head("dual", text_dim=3)


# ----- teachtext ------------------------------------------------------------------------------
def test_teachtext_starts_as_the_dual_score_and_learns_its_scale():
    text, video = _inputs([[1.0, 0.0], [0.0, 2.0]], [[[3.0, 0.0], [0.0, 1.0]], [[0.0, 4.0], [9.0, 0.0]]], [[True, True], [True, False]])
    head = _head("teachtext", scale=10.0)
    torch.testing.assert_close(head.logits(text, video), _head("dual", scale=10.0).logits(text, video))
    assert head.log_scale.requires_grad and head.scale == pytest.approx(10.0)
    torch.testing.assert_close(head.relevance(text, video), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


# ----- ts2net ---------------------------------------------------------------------------------
def test_ts2net_weights_frames_by_softmax_of_4_s_over_norm():
    # cos with the caption: 0.6 and 0.8 (norm 1); a padded third frame must not count in the score
    text, video = _inputs([[1.0, 0.0]], [[[0.6, 0.8], [0.8, 0.6], [1.0, 0.0]]], [[True, True, False]])
    head = _head("ts2net", frames=3, scale=10.0)
    w = torch.softmax(torch.tensor([2.4, 3.2]), 0)
    torch.testing.assert_close(head.logits(text, video), 10.0 * (w[0] * 0.6 + w[1] * 0.8).view(1, 1))
    # relevance as TeachCLIP takes it: the cosines at every slot (unmasked), 0 where nothing is stored
    torch.testing.assert_close(head.relevance(text, video), torch.tensor([[0.6, 0.8, 1.0]]))
    video["frames/f"][0, 2] = 0.0
    torch.testing.assert_close(head.relevance(text, video), torch.tensor([[0.6, 0.8, 0.0]]))


# ----- xpool ----------------------------------------------------------------------------------
def test_xpool_relevance_is_the_scaled_dot_of_layer_normed_query_and_key():
    # D = 4: LN([4,0,0,0]) = [3,-1,-1,-1]/sqrt3, LN([0,4,0,0]) = [-1,3,-1,-1]/sqrt3; / sqrt(D) = 2
    text, video = _inputs([[4.0, 0, 0, 0]], [[[0, 4.0, 0, 0], [4.0, 0, 0, 0], [7.0, 1, 2, 3]]], [[True, True, False]])
    r = _head("xpool", text_dim=4, frame_dim=4, frames=3, padding="masked").relevance(text, video)
    torch.testing.assert_close(r, torch.tensor([[-2 / 3, 2.0, 0.0]]), atol=1e-4, rtol=1e-4)


def test_official_padding_lets_stored_padded_frames_in_and_zero_ones_out():
    # X-Pool masks no frame: a padded frame whose features are stored (official encoders) takes part
    text, video = _inputs([[4.0, 0, 0, 0]], [[[0, 4.0, 0, 0], [4.0, 0, 0, 0], [7.0, 1, 2, 3]]], [[True, True, False]])
    official, masked = (_head("xpool", text_dim=4, frame_dim=4, frames=3, padding=p) for p in ("official", "masked"))
    assert official.relevance(text, video)[0, 2] != 0 and not torch.allclose(official.logits(text, video), masked.logits(text, video))
    video["frames/f"][0, 2] = 0.0  # zeros (open_clip's padding): left out either way
    torch.testing.assert_close(official.logits(text, video), masked.logits(text, video))
    bad = TeacherConfig(name="h", kind="xpool", frames="f", text="t", padding="some")
    with pytest.raises(TeacherError, match="padding = 'some'; choose one of"):
        teacher_class(bad).check_config(bad, {"f": None}, {"t": None})


def test_xpool_with_one_valid_frame_pools_that_frame():
    # attention on the only valid frame; at identity weights z = LN(f) -> T = scale * cos(t, LN(f))
    text, video = _inputs([[4.0, 0, 0, 0]], [[[0, 4.0, 0, 0], [9.0, 9, 0, 0]]], [[True, False]])
    head = _head("xpool", text_dim=4, frame_dim=4, scale=100.0, padding="masked")
    expected = 100 * (-1 / SQRT3) / 2  # LN(f) = [-1,3,-1,-1]/sqrt3 has norm 2; t/|t| = e1
    torch.testing.assert_close(head.logits(text, video), torch.tensor([[expected]]), atol=1e-3, rtol=1e-4)
    video["frames/f"][0, 1] = torch.tensor([-5.0, 2, 8, 1])  # the padded frame is ignored
    torch.testing.assert_close(head.logits(text, video), torch.tensor([[expected]]), atol=1e-3, rtol=1e-4)


# ----- xclip ----------------------------------------------------------------------------------
def _xclip(words, word_mask, frames, mask, text, padding="masked"):
    head = _head("xclip", frames=len(frames[0]), scale=10.0, padding=padding, dims={"tokens/t": (len(words[0]), 2), "token_mask/t": (len(words[0]),)})
    t, v = _inputs(text, frames, mask)
    t |= {"tokens/t": torch.tensor(words), "token_mask/t": torch.tensor(word_mask)}
    return head, t, v


def test_xclip_with_one_word_and_one_frame_is_their_cosine():
    # sentence = the word = (1, 0); the valid frame (0.6, 0.8): all four grains give cos = 0.6
    head, t, v = _xclip([[[1.0, 0.0], [5.0, 5.0]]], [[True, False]], [[[0.6, 0.8], [0.0, 1.0]]], [[True, False]], [[2.0, 0.0]])
    torch.testing.assert_close(head.logits(t, v), torch.tensor([[6.0]]))
    torch.testing.assert_close(head.relevance(t, v), torch.tensor([[0.6, 0.0]]))


def test_xclip_softmax_at_0_01_picks_the_best_word():
    # two words with cos 0.8 and 0.6 to the (single-frame) video: softmax(80, 60) ~ (1, 2e-9)
    head, t, v = _xclip([[[0.8, 0.6], [0.6, 0.8]]], [[True, True]], [[[1.0, 0.0]]], [[True]], [[1.0, 0.0]])
    # sentence-video 1, video-word 0.8, sentence-frame 1, word-frame: per word the single frame (0.8, 0.6),
    # then over words 0.8 (pool words then frames) and 0.8 (frames then words) -> mean 0.8
    torch.testing.assert_close(head.logits(t, v), torch.tensor([[10.0 * (1 + 0.8 + 1 + 0.8) / 4]]), atol=1e-5, rtol=1e-5)


def test_xclip_needs_word_features():
    with pytest.raises(TeacherError, match="teacher 'h' \\(xclip\\) needs arrays \\['tokens/t', 'token_mask/t'\\]"):
        _head("xclip")


# ----- captions -------------------------------------------------------------------------------
def test_caption_teacher_scores_the_other_captions_and_excludes_the_query():
    head = build_teacher(TeacherConfig(name="c", kind="captions", text="t", scale=1.0), {"text/t": (2,)})
    text = {"text/t": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), CAPTION_ROW: torch.tensor([10, 20])}
    # video 0 holds captions 10 (1,0) and 11 (0,1); video 1 holds caption 20 (0,1) only, and a padded slot
    video = {"bank/c": torch.tensor([[[1.0, 0.0], [0.0, 3.0]], [[0.0, 1.0], [0.0, 0.0]]]), "bank_rows/c": torch.tensor([[10, 11], [20, -1]])}
    # query 10 vs video 0: only caption 11 counts -> 0; query 10 vs video 1 -> cos((1,0),(0,1)) = 0
    # query 20 vs video 0: mean(0, 1) = 0.5; query 20 vs video 1: its only caption is itself -> 0
    torch.testing.assert_close(head.logits(text, video), torch.tensor([[0.0, 0.0], [0.5, 0.0]]))
    head.config.pool = "max"
    torch.testing.assert_close(head.logits(text, video), torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert not head.has_relevance


# ----- blackbox -------------------------------------------------------------------------------
def test_blackbox_top_k_fills_missing_pairs_with_the_lowest_kept_score():
    head = build_teacher(TeacherConfig(name="b", kind="blackbox", top_k=1), {})
    text = {"topk_video/b": torch.tensor([[2, 0], [1, 1]]), "topk_score/b": torch.tensor([[5.0, 1.0], [3.0, 3.0]]), CAPTION_ROW: torch.tensor([0, 1])}
    video = {VIDEO_ROW: torch.tensor([0, 1, 2])}
    torch.testing.assert_close(head.logits(text, video), torch.tensor([[1.0, 1.0, 5.0], [3.0, 3.0, 3.0]]))
    dense = build_teacher(TeacherConfig(name="b", kind="blackbox"), {})
    scores = torch.arange(6.0).view(2, 3)
    torch.testing.assert_close(dense.logits({"scores/b": scores}, {VIDEO_ROW: torch.tensor([2, 0])}), scores[:, [2, 0]])


def test_blackbox_file_must_cover_the_store(tmp_path):
    from teachcache.stages.teachers.blackbox import load_scores

    path = tmp_path / "s.npz"
    np.savez(path, scores=np.ones((1, 2)), caption_ids=np.array(["c0"]), video_ids=np.array(["v0", "v1"]))
    assert load_scores(str(path), "b", ["c0"], ["v1", "v0"]).shape == (1, 2)
    with pytest.raises(TeacherError, match="teacher 'b' \\(blackbox\\).*lacks 1 captions \\(e.g. \\['c1'\\]\\)"):
        load_scores(str(path), "b", ["c0", "c1"], ["v0"])


def test_unknown_kind_and_wrong_checkpoint_shapes_name_the_teacher(tmp_path):
    from safetensors.torch import save_file

    from teachcache.stages.teachers.heads import load_checkpoint

    with pytest.raises(UnknownKind, match="teacher 'x': unknown teacher kind 'pool'"):
        build_teacher(TeacherConfig(name="x", kind="pool"), {})
    wrong = _head("xpool", text_dim=4, frame_dim=4).state_dict()
    save_file({k: v.contiguous() for k, v in wrong.items()}, tmp_path / "w.safetensors")
    with pytest.raises(TeacherError, match="teacher 'h' \\(xpool\\): weights in .*w.safetensors do not fit.*wrong shapes"):
        load_checkpoint(_head("xpool", text_dim=2, frame_dim=2), str(tmp_path / "w.safetensors"))


def test_official_xpool_checkpoint_loads_by_name_mapping(tmp_path):
    from teachcache.stages.teachers.heads import load_checkpoint

    torch.manual_seed(0)
    names = ["cross_attn.q_proj", "cross_attn.k_proj", "cross_attn.v_proj", "cross_attn.out_proj", "linear_proj", "layer_norm1", "layer_norm2", "layer_norm3"]
    official = {f"pool_frames.{n}.{leaf}": torch.randn(4, 4) if leaf == "weight" and "norm" not in n else torch.randn(4) for n in names for leaf in ("weight", "bias")}
    official["clip.logit_scale"] = torch.tensor(4.0)
    official["clip.visual.proj"] = torch.randn(8, 4)  # the CLIP itself is not part of the head
    torch.save({"epoch": 3, "state_dict": official}, tmp_path / "model_best.pth")
    head = _head("xpool", text_dim=4, frame_dim=4)
    load_checkpoint(head, str(tmp_path / "model_best.pth"))
    assert torch.equal(head.query.weight, official["pool_frames.cross_attn.q_proj.weight"])
    assert torch.equal(head.norm_out.bias, official["pool_frames.layer_norm3.bias"])
    assert head.scale == pytest.approx(math.exp(4.0)) and torch.equal(head.text_projection.weight, torch.eye(4))
