"""Teachers through stage one and back: fit, store, rebuild; denoising ranks; report card."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import tiny_extract_config

from teachcache.cache.store import Store
from teachcache.pipeline.stores import open_training_store
from teachcache.stages.extract.config import TextEncoderConfig
from teachcache.stages.extract.phases.teachers import matched_inputs
from teachcache.stages.extract.run import run_extraction
from teachcache.stages.student.config import TrainConfig
from teachcache.stages.student.objectives.bank import TeacherBank
from teachcache.stages.student.recipe import train_student
from teachcache.stages.teachers.base import TeacherError
from teachcache.stages.teachers.config import TeacherConfig
from teachcache.stages.teachers.fit import ensemble_ranks, score_matrix, split_for, teacher_metrics
from teachcache.stages.teachers.heads import head_record, load_teacher, stored_teachers

FIT = {"fit_epochs": 3, "fit_batch_size": 4}


@pytest.fixture(scope="module")
def teacher_store(tiny_data, tmp_path_factory):
    """A store with every teacher kind over the tiny data set."""
    root = tmp_path_factory.mktemp("teachers")
    captions = pq.read_table(tiny_data / "captions.parquet").column("caption_id").to_pylist()
    videos = pq.read_table(tiny_data / "videos.parquet").column("video_id").to_pylist()
    scores = np.random.default_rng(0).normal(size=(len(captions), len(videos)))
    np.savez(root / "scores.npz", scores=scores, caption_ids=np.array(captions), video_ids=np.array(videos))
    cfg = tiny_extract_config(tiny_data, root / "store")
    cfg.text_encoders = {"clip": TextEncoderConfig(tokens=20)}
    teachers = [
        TeacherConfig(name="dual"),
        TeacherConfig(name="xpool", kind="xpool", temporal_layers=1, **FIT),
        TeacherConfig(name="xclip", kind="xclip", **FIT),
        TeacherConfig(name="ts2net", kind="ts2net", **FIT),
        TeacherConfig(name="tt", kind="teachtext", **FIT),
        TeacherConfig(name="captions", kind="captions"),
        TeacherConfig(name="bb", kind="blackbox", scores=str(root / "scores.npz"), top_k=2),
    ]
    cfg.teachers = {t.name: t for t in teachers}
    cfg.denoise_teachers = ["xpool", "tt"]
    run_extraction(cfg, progress=False)
    return cfg, scores


def test_fit_store_rebuild_round_trip(teacher_store):
    cfg, _ = teacher_store
    with open_training_store(cfg) as store:
        assert stored_teachers(store) == list(cfg.teachers)
        video_index = store.captions().column("video_index").to_numpy()
        for name in ("xpool", "xclip", "ts2net", "tt"):
            head, record = load_teacher(store, name), head_record(store, name)
            assert record["fitted"] and not any(p.requires_grad for p in head.parameters())
            history = [h["val_t2v_R1"] for h in record["history"]]
            assert len(history) == 3 and record["best_epoch"] == 1 + history.index(max(history))
            # the rebuilt head reproduces what stage one measured and stored with the fitted one
            val = split_for(store, "val", [head])
            assert teacher_metrics(head, val, torch.device("cpu")) == record["metrics"]["val"]
            text, video = matched_inputs(store, head, 0, store.num_rows("captions"), video_index, torch.device("cpu"))
            stored = store.read(f"relevance/{name}").astype(np.float32)
            np.testing.assert_allclose(head.relevance(text, video).numpy(), stored, atol=2e-3, rtol=2e-3)
        # fitting moved the weights away from their identity start
        assert not torch.equal(load_teacher(store, "xpool").query.weight, torch.eye(load_teacher(store, "xpool").dim))


def test_second_run_reuses_the_stored_heads(teacher_store):
    cfg, _ = teacher_store
    before = (lambda s: s.get_file("heads/xpool.safetensors"))(Store.open(cfg.store))
    summary = run_extraction(cfg, progress=False)
    assert summary.shards_done == 0
    assert Store.open(cfg.store).get_file("heads/xpool.safetensors") == before


def test_word_features_and_inputs_are_stored(teacher_store):
    from teachcache.stages.teachers.blackbox import load_scores

    cfg, _ = teacher_store
    with open_training_store(cfg) as store:
        mask = store.read("token_mask/clip")
        assert store.read("tokens/clip").shape[1:] == (20, store.read("text/clip").shape[1])
        assert mask.any(1).all() and not mask.all()  # every caption has words, shorter ones are padded
        # the black box keeps the top 2 videos per caption (in the store's order) plus its own
        captions = store.captions()
        scores = load_scores(cfg.teachers["bb"].scores, "bb", captions.column("caption_id").to_pylist(), store.videos().column("video_id").to_pylist())
        own = captions.column("video_index").to_numpy()
        kept = store.read("topk_video/bb")
        np.testing.assert_array_equal(kept, np.concatenate([np.argsort(-scores, 1)[:, :2], own[:, None]], 1))
        # a caption bank holds exactly the video's captions, -1 padded
        rows = store.read("bank_rows/captions")
        assert all(sorted(r[r >= 0]) == list(np.flatnonzero(own == v)) for v, r in enumerate(rows))


def test_denoise_ranks_are_the_ensemble_rank_of_the_own_video(teacher_store):
    cfg, _ = teacher_store
    with open_training_store(cfg) as store:
        heads = [load_teacher(store, n) for n in cfg.denoise_teachers]
        train = split_for(store, "train", heads)
        rows = train.caption_arrays["row/caption"].numpy()
        ranks, scores = store.read("denoise/rank"), store.read("denoise/score")
        mean = torch.stack([score_matrix(h, train, torch.device("cpu")) for h in heads]).mean(0)
        own = mean[torch.arange(train.num_captions), train.caption_video]
        np.testing.assert_array_equal(ranks[rows], (mean > own[:, None]).sum(1).numpy())
        np.testing.assert_allclose(scores[rows], own.numpy(), rtol=1e-5)
        outside = np.setdiff1d(np.arange(store.num_rows("captions")), rows)
        assert (ranks[outside] == -1).all() and np.isnan(scores[outside]).all()
        assert ensemble_ranks(heads, train, torch.device("cpu"))[0].tolist() == ranks[rows].tolist()


def test_stage_two_drops_noisy_captions_and_distils_every_kind(teacher_store, tmp_path):
    cfg, _ = teacher_store
    with open_training_store(cfg) as store:
        ranks = store.read("denoise/rank")
        train = TrainConfig(run_dir=str(tmp_path), text="clip", epochs=1, batch_size=4)
        train.objective.teachers = list(cfg.teachers)
        train.denoise.top_k = 1
        result = train_student(train, store, progress=False)
    assert result["denoise"]["captions_dropped"] == int((ranks >= 1).sum())
    assert result["denoise"]["captions_kept"] == int((ranks == 0).sum())
    assert result["teachers"] == train.objective.teachers and result["teacher_ms_per_step"] > 0


def test_missing_teacher_and_wrong_relevance_are_named(teacher_store):
    cfg, _ = teacher_store
    with open_training_store(cfg) as store:
        with pytest.raises(ValueError, match="objective.teachers names \\['nope'\\]"):
            TeacherBank(["nope"], store, torch.device("cpu"))
        bank = TeacherBank(["tt"], store, torch.device("cpu"))
        store.attrs = {**store.attrs, "arrays": [a if a["name"] != "relevance/tt" else {**a, "tail": [5]} for a in store.attrs["arrays"]]}
        with pytest.raises(ValueError, match="teacher 'tt': relevance/tt has shape \\(5,\\)"):
            bank.check_relevance(store, "clip")


def test_teacher_features_missing_from_the_config_are_refused(tiny_data, tmp_path):
    cfg = tiny_extract_config(tiny_data, tmp_path / "s")
    cfg.teachers = {"xc": TeacherConfig(name="xc", kind="xclip")}
    with pytest.raises(TeacherError, match="teacher 'xc' \\(xclip\\) needs word features"):
        run_extraction(cfg, progress=False)
    cfg.teachers = {"xp": TeacherConfig(name="xp", kind="xpool", frames="other")}
    with pytest.raises(TeacherError, match="teacher 'xp' reads frames/other"):
        run_extraction(cfg, progress=False)


def test_report_card_warns_about_teachers_weaker_than_the_student(teacher_store, tmp_path):
    from click.testing import CliRunner

    from teachcache.pipeline.cli import main
    from teachcache.pipeline.report import card_markdown, teacher_card

    cfg, _ = teacher_store
    with open_training_store(cfg) as store:
        record = head_record(store, "xpool")["metrics"]
        strong = {"best_epoch": 1, "val": {"t2v": {"R1": 101.0, "R5": 0, "R10": 0}}, "test": {"t2v": {"R1": 0.0, "R5": 0, "R10": 0}}}
        card = teacher_card(store, strong)
        assert {w["teacher"] for w in card["warnings"]} == set(stored_teachers(store))
        weak = {**strong, "val": {"t2v": {"R1": -1.0, "R5": 0, "R10": 0}}}
        assert teacher_card(store, weak)["warnings"] == []
        assert f"{record['val']['t2v']['R1']:.1f}" in card_markdown(card) and "InfoNCE student" in card_markdown(card)
    out = CliRunner().invoke(main, ["teachers", cfg.store, "--no-baseline"])
    assert out.exit_code == 0, out.output
    assert "| xpool | xpool | epoch" in out.output and (cfg_store := json.loads((Store.open(cfg.store).path / "report" / "teachers.json").read_text()))
    assert [r["name"] for r in cfg_store["rows"]] == list(cfg.teachers)
