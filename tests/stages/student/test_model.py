import pytest
import torch
import torch.nn.functional as F

from teachcache.stages.student.config import StudentConfig
from teachcache.stages.student.model import Student


def _inputs(b=3, f=4, d=8, t=6):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(b, f, dtype=torch.bool)
    mask[1, 2:] = False
    return torch.randn(b, t, generator=g), torch.randn(b, f, d, generator=g), mask


def test_meanp_without_afa_is_the_masked_mean_of_normalised_frames():
    _, frames, mask = _inputs()
    s = Student(StudentConfig(video_head="meanP", afa=False), 6, 8)
    video, logits = s.encode_video(frames, mask)
    expected = F.normalize((F.normalize(frames, dim=-1) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    torch.testing.assert_close(video, expected)  # identity-initialised projection
    assert logits is None


def test_padded_frames_do_not_change_the_video_vector():
    _, frames, mask = _inputs()
    for cfg in (StudentConfig(video_head="seqTransf"), StudentConfig(video_head="meanP", afa=True)):
        torch.manual_seed(0)
        s = Student(cfg, 6, 8).eval()
        a, _ = s.encode_video(frames, mask)
        changed = frames.clone()
        changed[1, 2:] = 1000.0
        b, _ = s.encode_video(changed, mask)
        torch.testing.assert_close(a, b)


def test_unmasked_afa_reproduces_teachclip_and_lets_padding_in():
    _, frames, mask = _inputs()
    torch.manual_seed(0)
    s = Student(StudentConfig(video_head="meanP", afa=True, afa_masked=False), 6, 8)
    a, _ = s.encode_video(frames, mask)
    changed = frames.clone()
    changed[1, 2:] = 5.0
    b, _ = s.encode_video(changed, mask)
    assert not torch.allclose(a[1], b[1])


def test_logits_shape_scale_clamp_and_no_nan_for_an_empty_video():
    text, frames, mask = _inputs()
    mask[2] = False
    s = Student(StudentConfig(logit_scale=150.0), 6, 8)
    logits, frame_logits = s(text, frames, mask)
    assert logits.shape == (3, 3) and frame_logits.shape == (3, 4)
    assert s.scale().item() == pytest.approx(100.0)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in s.parameters() if p.grad is not None)


def test_bad_head_settings_are_named():
    with pytest.raises(ValueError, match="unknown video head .tightTransf."):
        Student(StudentConfig(video_head="tightTransf"), 6, 8)
    with pytest.raises(ValueError, match="heads = 3"):
        Student(StudentConfig(heads=3), 6, 8)


def test_logit_scale_learns_and_is_clamped_on_the_parameter():
    text, frames, mask = _inputs()
    s = Student(StudentConfig(logit_scale=50.0), 6, 8)
    logits, _ = s(text, frames, mask)
    logits.sum().backward()
    assert s.logit_scale.grad.abs().item() > 0
    with torch.no_grad():
        s.logit_scale.fill_(10.0)
    s.clamp_scale()
    assert s.scale().item() == pytest.approx(100.0)


def test_afa_aggregates_at_temperature_point_one():
    _, frames, mask = _inputs()
    s = Student(StudentConfig(video_head="meanP", afa=True, video_projection=False), 6, 8)
    video, a = s.encode_video(frames, mask)
    weights = torch.softmax((a / 0.1).masked_fill(~mask, float("-inf")), -1)
    expected = F.normalize((weights[..., None] * F.normalize(frames, dim=-1)).sum(1), dim=-1)
    torch.testing.assert_close(video, expected)
    torch.testing.assert_close(a, s.afa(frames))  # the teaching logits are the raw a (temperature 1)


def test_seqtransf_adds_its_input_back():
    _, frames, mask = _inputs()
    s = Student(StudentConfig(heads=4, video_projection=False), 6, 8)
    for block in s.temporal.transformerClip.resblocks:  # zero every residual branch: the transformer becomes the identity
        torch.nn.init.zeros_(block.attn.out_proj.weight)
        torch.nn.init.zeros_(block.attn.out_proj.bias)
        torch.nn.init.zeros_(block.mlp.c_proj.weight)
        torch.nn.init.zeros_(block.mlp.c_proj.bias)
    torch.nn.init.zeros_(s.temporal.frame_position_embeddings.weight)
    torch.testing.assert_close(s.frame_features(frames, mask), 2 * frames)  # output (= input) + input
