"""The official heads (stages/teachers/official.py) on top of teachcache's loaders and backbones
reproduce every golden output of the official code (issue 13): the ``_fp32`` arrays within
1e-4 of their largest magnitude (similarities also elementwise, rtol 1e-4), the plain
(float16-tower) arrays within 2e-2 absolute. The plain arrays are compared with the float32
computation: float16 kernels differ between CPUs (the notes' section 3.3), and our
``fp16_official`` towers on this CPU land 2.4e-2 from the plain TS2-Net similarities."""

import numpy as np
import pytest
import torch
from golden import CASES, GOLDEN, checkpoint, clip4clip_inputs, errors, golden, is_similarity, need_golden, reference, run

from teachcache.stages.common.layers import CrossTransformer
from teachcache.stages.teachers import official as o
from teachcache.stages.teachers.config import TeacherConfig
from teachcache.stages.teachers.heads import build_teacher

pytestmark = pytest.mark.usefixtures("golden_folder")


@pytest.fixture
def golden_folder():
    need_golden()


def _pairs(cases=CASES):
    """(case, key) of every recorded output but the ``_fp32`` copies."""
    pairs = [(case, key) for case in cases for key in sorted(golden(case)) if not key.endswith("_fp32")]
    return pairs or [pytest.param("-", "-", marks=pytest.mark.skip(reason=f"the golden folder {GOLDEN} is absent"))]


@pytest.mark.parametrize("case, key", _pairs())
def test_float32_outputs_equal_the_official_fp32_run(case, key):
    ours, theirs = run(case)[key], reference(case, key, fp32=True)
    _, relative = errors(ours, theirs)
    assert relative <= 1e-4, f"{case} {key}: {relative:.2e} of the largest value"
    if is_similarity(key):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case, key", _pairs([c for c in CASES if c != "xpool"]))
def test_float16_tower_outputs_within_2e_2(case, key):
    absolute, _ = errors(run(case)[key], reference(case, key, fp32=False))
    assert absolute <= 2e-2, f"{case} {key}: {absolute:.2e}"


def test_fp16_official_similarities_stay_within_2e_2_of_the_plain_ones():
    ours, theirs = run("clip4clip", "fp16_official"), golden("clip4clip")
    for key in ("sim_seqTransf", "sim_meanP", "visual_output", "sequence_output"):
        assert np.abs(ours[key] - theirs[key]).max() <= 2e-2
        assert not np.array_equal(ours[key], run("clip4clip")[key])


def test_x_pool_head_equals_the_project_s_xpool_teacher():
    """XPoolTeacher (stage two's head) loaded from the official names scores as X-Pool's pool_frames."""
    out, ckpt = golden("xpool"), checkpoint("xpool")
    text, frames = torch.from_numpy(out["text_embeds"]), torch.from_numpy(out["frame_embeds"])
    dims = {"text/t": (512,), "frames/f": (12, 512), "frame_mask/f": (12,)}
    head = build_teacher(TeacherConfig(name="x", kind="xpool", frames="f", text="t"), dims).eval()
    head.load_state_dict(head.map_official({**ckpt.head, "clip.logit_scale": torch.tensor(np.log(ckpt.logit_scale))}))
    with torch.no_grad():
        theirs = head.logits({"text/t": text}, {"frames/f": frames, "frame_mask/f": torch.ones(3, 12, dtype=torch.bool)})
    pooled, _ = o.xpool_pool(text, frames, ckpt.head)
    torch.testing.assert_close(theirs, ckpt.logit_scale * o.xpool_similarity(text, pooled), rtol=1e-5, atol=1e-5)


def test_x_clip_masks_are_an_option_and_all_true_masks_change_nothing():
    eot, words, frames = (torch.from_numpy(run("xclip")[k]) for k in ("sequence_output", "seq_features", "visual_output"))
    eot = eot[:, 0]
    ids, _, mask = clip4clip_inputs("xclip")
    ckpt, cross = checkpoint("xclip"), checkpoint("xclip").cross_transformer()
    with torch.no_grad():
        plain = o.xclip_similarity(eot, words, frames, mask, ckpt.head, cross, ckpt.logit_scale)
        ones = o.xclip_similarity(eot, words, frames, mask, ckpt.head, cross, ckpt.logit_scale, torch.ones(4, 32, dtype=torch.bool), torch.ones(3, 12, dtype=torch.bool))
        masked = o.xclip_similarity(eot, words, frames, mask, ckpt.head, cross, ckpt.logit_scale, ids > 0, mask > 0)
    torch.testing.assert_close(ones, plain)
    assert torch.isfinite(masked).all() and (masked - plain).abs().max() > 0.1  # the official code masks neither words nor frames


def test_ts2net_mask_is_tiled_over_the_tokens_as_the_official_code():
    cross = CrossTransformer(8, 1, 2, rows=48).eval()
    mask = torch.tensor([[1] * 7 + [0] * 5])
    with torch.no_grad():
        _, m = o.ts2net_frames(torch.randn(1, 48, 8), mask, cross)
    assert m[0].tolist() == [float(mask[0, (4 * f) % 12]) for f in range(12)] == [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0]


def test_relevances_are_distributions_over_the_frames_of_the_paired_video():
    out = run("xclip")
    rel = out["tc_sentence2frames_sim"]
    np.testing.assert_allclose(rel.sum(1), 1.0, rtol=1e-6)
    attention = torch.softmax(torch.randn(3, 1, 12, 3), dim=2)
    torch.testing.assert_close(o.xpool_relevance(attention), torch.stack([attention[i, 0, :, i] for i in range(3)]))
