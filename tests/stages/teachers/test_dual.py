import pytest
import torch

from stages.extract.config import TeacherConfig
from stages.teachers.registry import build_teacher


def _teacher(scale=100.0):
    return build_teacher(TeacherConfig(name="t", kind="dual", scale=scale))


def test_relevance_is_cosine_with_own_frames_and_zero_on_padding():
    text = torch.tensor([[1.0, 0.0]])
    frames = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, True, False]])
    r = _teacher().relevance(text, frames, mask)
    torch.testing.assert_close(r, torch.tensor([[1.0, 0.0, 2**-0.5, 0.0]]))


def test_logits_use_the_masked_mean_of_normalised_frames():
    text = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # video 0: frames (1,0) and (0,1) -> mean (0.5, 0.5) -> normalised (0.707, 0.707)
    # video 1: valid frame (0, 4); the padded frame (9, 0) must not count
    frames = torch.tensor([[[3.0, 0.0], [0.0, 1.0]], [[0.0, 4.0], [9.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    t = _teacher(scale=10.0).logits(text, frames, mask)
    s = 10 * 2**-0.5
    torch.testing.assert_close(t, torch.tensor([[s, 0.0], [s, 10.0]]))


def test_video_without_valid_frames_scores_zero_not_nan():
    t = _teacher().logits(torch.ones(1, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.bool))
    assert torch.equal(t, torch.zeros(1, 1))


def test_dims_must_match_and_unknown_kinds_are_named():
    with pytest.raises(ValueError, match="teacher 't' \\(dual\\).*width 384.*256"):
        _teacher().check_dims(384, 256)
    with pytest.raises(ValueError, match="teacher 'x': unknown kind 'xpool'"):
        build_teacher(TeacherConfig(name="x", kind="xpool"))
