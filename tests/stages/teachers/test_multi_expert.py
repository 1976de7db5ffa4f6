"""TeachText's video-side extension on the tiny data: a motion expert (frame differences), a
``ce`` teacher over appearance and motion fitted in stage one, and a student on appearance
alone distilled from it."""

import numpy as np
import pytest
import torch
from conftest import tiny_extract_config

from teachcache.pipeline.stores import open_training_store
from teachcache.stages.extract.config import FrameEncoderConfig
from teachcache.stages.extract.encoders.motion import signed_differences
from teachcache.stages.extract.run import run_extraction
from teachcache.stages.student.config import ObjectiveConfig, StudentConfig, TrainConfig
from teachcache.stages.student.recipe import train_student
from teachcache.stages.teachers.base import TeacherError
from teachcache.stages.teachers.config import TeacherConfig
from teachcache.stages.teachers.fit import split_for, teacher_metrics
from teachcache.stages.teachers.heads import head_record, load_teacher


def test_signed_differences_show_where_and_which_way_things_moved():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1, 0, 0] = 200  # appears in frame 1, gone in frame 2
    diff = signed_differences(frames)
    assert (diff[0] == 128).all()  # the first frame's difference is blank
    assert diff[1, 0, 0, 0] == 228 and diff[2, 0, 0, 0] == 28  # leading vs trailing edge
    assert (diff[1, 1:] == 128).all()


@pytest.fixture(scope="module")
def experts_store(tiny_data, tmp_path_factory):
    cfg = tiny_extract_config(tiny_data, tmp_path_factory.mktemp("experts") / "store")
    cfg.frame_encoders = {"clip": FrameEncoderConfig(name="clip"), "motion": FrameEncoderConfig(name="motion", kind="open_clip_motion", seed=1)}
    cfg.teachers = {"ce": TeacherConfig(name="ce", kind="ce", experts=["clip", "motion"], shared_dim=32, fit_epochs=2, fit_batch_size=4)}
    run_extraction(cfg, progress=False)
    return cfg


def test_the_motion_expert_is_stored_beside_the_appearance(experts_store):
    with open_training_store(experts_store) as store:
        clip, motion = store.read("frames/clip"), store.read("frames/motion")
        mask = store.read("frame_mask/clip")
        assert motion.shape == clip.shape and np.array_equal(mask, store.read("frame_mask/motion"))
        assert not np.allclose(motion[mask], clip[mask])


def test_a_ce_teacher_fits_over_both_experts_and_teaches_an_appearance_student(experts_store, tmp_path):
    with open_training_store(experts_store) as store:
        record = head_record(store, "ce")
        assert record["fitted"] and record["dims"].keys() >= {"frames/clip", "frames/motion", "text/clip"}
        head = load_teacher(store, "ce")
        metrics = teacher_metrics(head, split_for(store, "val", [head]), torch.device("cpu"))
        assert 0 <= metrics["t2v"]["R1"] <= 100
        cfg = TrainConfig(run_dir=str(tmp_path / "run"), epochs=1, batch_size=4, student=StudentConfig(heads=4))
        cfg.objective = ObjectiveConfig(kind="teachtext", teachers=["ce"])
        result = train_student(cfg, store, progress=False)
    assert result["teachers"] == ["ce"] and np.isfinite(result["history"][0]["loss"]["distill"])


def test_a_ce_teacher_needs_frame_encoders_as_experts():
    config = TeacherConfig(name="ce", kind="ce", experts=["motion"])
    from teachcache.stages.teachers.ce import CETeacher

    with pytest.raises(TeacherError, match="motion"):
        CETeacher.check_config(config, {"clip": FrameEncoderConfig()}, {"clip": object()})


def test_ce_only_fields_stay_out_of_other_teachers_fingerprints():
    from teachcache.stages.extract.config import teacher_components

    assert "experts" not in teacher_components(TeacherConfig(name="dual")) and "shared_dim" not in teacher_components(TeacherConfig(name="dual"))
    assert teacher_components(TeacherConfig(name="ce", kind="ce", experts=["clip"]))["experts"] == ["clip"]
