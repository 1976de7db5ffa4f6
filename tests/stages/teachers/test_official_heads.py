"""Stage two's teacher heads loaded from the official checkpoint files (``checkpoint = ...``)
score the official code's own float32 features as that code did (issue 13): X-CLIP's four
logits and the relevance TeachCLIP takes, TS2-Net over its stored frame tokens (at the recorded
noise seed and at sigma 0), X-Pool's pooling. Within 1e-4 of the largest magnitude."""

import numpy as np
import pytest
import torch
from golden import checkpoint_path, errors, golden, need_golden, npz

from teachcache.stages.teachers.base import TeacherError
from teachcache.stages.teachers.config import TeacherConfig
from teachcache.stages.teachers.heads import build_teacher, load_checkpoint

pytestmark = pytest.mark.usefixtures("golden_folder")


@pytest.fixture
def golden_folder():
    need_golden()


def _official_head(kind: str, case: str, dims: dict, **options):
    config = TeacherConfig(name="t", kind=kind, frames="f", text="t", **options)
    head = build_teacher(config, dims)
    load_checkpoint(head, checkpoint_path(case))
    return head.eval()


def _close(ours: torch.Tensor, theirs: np.ndarray, what: str) -> None:
    _, relative = errors(ours.detach().float().numpy(), theirs)
    assert relative <= 1e-4, f"{what}: {relative:.2e} of the largest value"


def _text_inputs(out: dict) -> dict:
    mask = npz("xclip", "inputs")["input_mask"][:, 0]
    return {"text/t": torch.from_numpy(out["sequence_output_fp32"][:, 0]), "tokens/t": torch.from_numpy(out["seq_features_fp32"]), "token_mask/t": torch.from_numpy(mask > 0)}


def _video_mask(case: str) -> torch.Tensor:
    return torch.from_numpy(npz(case, "inputs")["video_mask"][:, 0] > 0)


def test_xclip_head_from_the_official_file_reproduces_its_similarity_and_relevance():
    out = golden("xclip")
    text = _text_inputs(out)
    video = {"frames/f": torch.from_numpy(out["visual_output_fp32"]), "frame_mask/f": _video_mask("xclip")}
    dims = {"text/t": (128,), "tokens/t": (32, 128), "token_mask/t": (32,), "frames/f": (12, 128), "frame_mask/f": (12,)}
    head = _official_head("xclip", "xclip", dims, temporal_layers=2)
    with torch.no_grad():
        _close(head.logits(text, video), out["sim_fp32"], "sim")
        _close(head.logits({k: v[:3] for k, v in text.items()}, video), out["tc_paired_sim_fp32"], "tc_paired_sim")
        relevance = head.relevance({k: v[:3] for k, v in text.items()}, video)
    _close(torch.softmax(relevance, dim=-1), out["tc_sentence2frames_sim_fp32"], "tc_sentence2frames_sim (softmax of the stored relevance)")


@pytest.mark.parametrize("suffix", ["", "_sigma0"])
def test_ts2net_head_over_the_stored_frame_tokens_reproduces_its_similarity(suffix):
    out = golden("ts2net")
    tokens = torch.from_numpy(out[f"visual_output{suffix}_fp32"]).view(3, 12, 4, 128)  # [CLS, 3 selected] per frame
    video = {"frames/f": tokens[:, :, 0], "frame_tokens/f": tokens, "frame_mask/f": _video_mask("ts2net")}
    dims = {"text/t": (128,), "frames/f": (12, 128), "frame_tokens/f": (12, 4, 128), "frame_mask/f": (12,)}
    head = _official_head("ts2net", "ts2net", dims, temporal_layers=2)
    with torch.no_grad():
        _close(head.logits({"text/t": torch.from_numpy(out["sequence_output_fp32"][:, 0])}, video), out[f"sim_final{suffix}_fp32"], "sim_final")


def test_a_wrong_temporal_layer_count_is_refused_with_the_file_s_count():
    dims = {"text/t": (128,), "frames/f": (12, 128), "frame_tokens/f": (12, 4, 128), "frame_mask/f": (12,)}
    with pytest.raises(TeacherError, match="seqTransf has 2 layers; set temporal_layers = 2"):
        _official_head("ts2net", "ts2net", dims, temporal_layers=1)


def test_xpool_head_from_the_official_file_reproduces_teachclip_s_paired_sims_and_attention():
    out, inp = golden("xpool"), npz("xpool", "inputs")
    frames = torch.from_numpy(out["frame_embeds"])
    dims = {"text/t": (512,), "frames/f": (12, 512), "frame_mask/f": (12,)}
    head = _official_head("xpool", "xpool", dims)
    video = {"frames/f": frames, "frame_mask/f": torch.ones(3, 12, dtype=torch.bool)}
    text = {"text/t": torch.from_numpy(out["text_embeds"])}
    with torch.no_grad():
        _close(head.logits(text, video) / head.scale, out["sims_t2v"], "sims_t2v")
    assert inp["video"].shape[:2] == (3, 12)
