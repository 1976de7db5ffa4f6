"""``train.student.init``: a student starts from an official CLIP4Clip / TeachCLIP checkpoint's
heads (and then scores as that checkpoint: issue 13), or from a CLIP's text tower as CLIP4Clip
starts seqTransf; files that fit neither are refused in one line."""

import pytest
import torch
from golden import checkpoint, checkpoint_path, clip4clip_inputs, errors, golden, need_golden
from safetensors.torch import save_file

from teachcache.cache.errors import ConfigError
from teachcache.stages.common.checkpoints.base import CheckpointError
from teachcache.stages.student.config import StudentConfig
from teachcache.stages.student.init import initialise, student_config_of
from teachcache.stages.student.model import Student

pytestmark = pytest.mark.usefixtures("golden_folder")


@pytest.fixture
def golden_folder():
    need_golden()


def test_a_teachclip_student_starts_as_the_released_one_and_scores_as_its_code():
    ckpt, out = checkpoint("teachclip"), golden("teachclip")
    config = student_config_of(ckpt)
    assert (config.video_head, config.afa, config.afa_masked, config.video_projection) == ("seqTransf", True, False, False)
    student = Student(config, 128, 128).eval()
    assert initialise(student, checkpoint_path("teachclip"))[:2] == ["seqTransf (2 layers)", "AFA"]
    text, frames = torch.from_numpy(out["sequence_output_fp32"][:, 0]), torch.from_numpy(out["visual_output_fp32"])
    mask = clip4clip_inputs("teachclip")[2]  # seqTransf reads it; TeachCLIP's AFA (afa_masked false) does not
    with torch.no_grad():
        sim, frame_logits = student(text, frames, mask)
    assert errors(sim.numpy(), out["sim_afa_fp32"])[1] <= 1e-4
    assert errors(frame_logits.numpy(), out["frame_logits_fp32"])[1] <= 1e-4


def test_a_clip_state_dict_starts_seqtransf_from_its_text_tower(tmp_path):
    backbone = checkpoint("clip4clip").backbone
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.items()}, str(path))
    rows = backbone["positional_embedding"].shape[0]
    student = Student(StudentConfig(layers=1, max_frames=rows), 128, 128)
    assert initialise(student, str(path)) == ["seqTransf from the CLIP text tower (position embedding, layers 0-0)"]
    assert torch.equal(student.temporal.frame_position_embeddings.weight, backbone["positional_embedding"].float())
    assert torch.equal(student.temporal.transformerClip.resblocks[0].mlp.c_fc.weight, backbone["transformer.resblocks.0.mlp.c_fc.weight"].float())


def test_files_and_students_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="set train.student.video_head = 'seqTransf'"):
        initialise(Student(StudentConfig(video_head="meanP"), 128, 128), checkpoint_path("teachclip"))
    with pytest.raises(ConfigError, match="set train.student.afa = true"):
        initialise(Student(StudentConfig(layers=2, afa=False, max_frames=checkpoint("teachclip").hparams["cross_rows"]), 128, 128), checkpoint_path("teachclip"))
    with pytest.raises(ConfigError, match="does not fit this student"):
        initialise(Student(StudentConfig(layers=3), 128, 128), checkpoint_path("teachclip"))
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="neither a CLIP4Clip-family checkpoint nor a CLIP state dict"):
        initialise(Student(StudentConfig(), 128, 128), str(other))
