"""``load_official``, the documented entry point: from each golden official checkpoint file, its
encoders and head score the golden pixel tensors and token ids as the official code did
(issue 13: the ``_fp32`` outputs within 1e-4 of their largest magnitude)."""

import pytest
import torch
from golden import NOISE_SEED, XPOOL_HEADS, checkpoint_path, clip4clip_inputs, errors, golden, need_golden, npz

from teachcache.pipeline.official import load_official
from teachcache.stages.student.model import Student

pytestmark = pytest.mark.usefixtures("golden_folder")

CASES = {  # case -> the golden similarity its head gives
    "clip4clip": "sim_seqTransf_fp32",
    "teachclip": "sim_afa_fp32",
    "xclip": "sim_fp32",
    "ts2net": "sim_final_fp32",
}


@pytest.fixture
def golden_folder():
    need_golden()


def _check(ours: torch.Tensor, theirs, what: str) -> None:
    _, relative = errors(ours.float().numpy(), theirs)
    assert relative <= 1e-4, f"{what}: {relative:.2e} of the largest value"


@pytest.mark.parametrize("case", list(CASES))
def test_official_files_score_pixels_and_token_ids_as_the_official_code(case):
    ids, pixels, mask = clip4clip_inputs(case)
    model = load_official(checkpoint_path(case))
    assert isinstance(model.head, Student) == (case in ("clip4clip", "teachclip"))
    video = model.video_arrays(pixels.view(3, 12, 3, 224, 224), mask, torch.Generator().manual_seed(NOISE_SEED))
    _check(model.similarity(model.text_arrays(ids), video), golden(case)[CASES[case]], f"{case} {CASES[case]}")


def test_x_clip_relevance_softmax_is_teachclip_s_teaching_distribution():
    ids, pixels, mask = clip4clip_inputs("xclip")
    model = load_official(checkpoint_path("xclip"))
    text = {k: v[:3] for k, v in model.text_arrays(ids).items()}
    relevance = model.relevance(text, model.video_arrays(pixels.view(3, 12, 3, 224, 224), mask))
    _check(torch.softmax(relevance, -1), golden("xclip")["tc_sentence2frames_sim_fp32"], "tc_sentence2frames_sim")


def test_x_pool_from_its_own_hf_backbone():
    inp, out = npz("xpool", "inputs"), golden("xpool")
    model = load_official(checkpoint_path("xpool"), heads=XPOOL_HEADS)
    text = model.text_arrays(torch.from_numpy(inp["input_ids"]), torch.from_numpy(inp["attention_mask"]))
    video = model.video_arrays(torch.from_numpy(inp["video"]), torch.ones(3, 12, dtype=torch.bool))
    _check(video["frames/f"], out["frame_embeds"], "frame_embeds")
    _check(model.similarity(text, video) / model.head.scale, out["sims_t2v"], "sims_t2v")


def test_ts2net_at_sigma_0_is_the_hard_top_k():
    ids, pixels, mask = clip4clip_inputs("ts2net")
    model = load_official(checkpoint_path("ts2net"), sigma=0.0)
    video = model.video_arrays(pixels.view(3, 12, 3, 224, 224), mask)  # no noise drawn: no generator needed
    _check(model.similarity(model.text_arrays(ids), video), golden("ts2net")["sim_final_sigma0_fp32"], "ts2net sim_final_sigma0")
