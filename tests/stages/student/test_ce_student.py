"""The ``ce`` student over an imported store: the official CE+ numbers through the store, and a
TeachText run (CE+ taught by released teacher files) end to end from the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import GOLDEN_CE
from golden_ce import EXPERT_FILES, ROOT, TEXT, features_config, need_golden_ce

from teachcache.cache.store import Store
from teachcache.pipeline.cli import main
from teachcache.stages.extract.importer import run_import
from teachcache.stages.student.build import build_student
from teachcache.stages.student.config import StudentConfig, TrainConfig
from teachcache.stages.student.init import initialise


@pytest.fixture(autouse=True)
def golden_ce_present() -> None:
    need_golden_ce()


def golden_student_config() -> TrainConfig:
    """The tiny CE+ of golden-ce/ce_student (meta.json's sizes)."""
    student = StudentConfig(kind="ce", afa=False, shared_dim=32, text_clusters=3, text_ghosts=1, vlad_clusters={"audio": 2})
    return TrainConfig(source="features", text=TEXT, student=student)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    path = tmp_path_factory.mktemp("ce") / "store"
    cfg = features_config(path, teachers=())
    run_import(cfg, progress=False)
    return Store.open(path)


def test_the_official_ce_weights_over_the_store_give_the_official_similarities(store):
    """Official state dict into the student, its arrays read from the store: the golden sims of
    the val videos (2 captions each) within 1e-5 of their largest value."""
    student = build_student(golden_student_config(), store)
    loaded = initialise(student, str(GOLDEN_CE / "ce_student" / "trained_model.pth"))  # train.student.init, from CE's own file
    assert loaded == [f"124 CE tensors from {GOLDEN_CE / 'ce_student' / 'trained_model.pth'} (experts {list(EXPERT_FILES)})"]
    student.eval()
    videos = store.videos().to_pylist()
    val = np.array([i for i, v in enumerate(videos) if v["split"] == "val"])
    captions = store.captions().to_pylist()
    rows = np.array([r for i in val for r in [r for r, c in enumerate(captions) if c["video_index"] == i][:2]])
    video_arrays = {n: torch.from_numpy(store.read(n, val)) for n in student.video_arrays}
    caption_arrays = {n: torch.from_numpy(store.read(n, rows)) for n in student.caption_arrays}
    with torch.no_grad():
        sims = student.similarity(student.encode_captions(caption_arrays), student.encode_videos(video_arrays)[0]).numpy()
    golden = np.load(GOLDEN_CE / "ce_student" / "outputs.npz")["sims"]
    assert sims.shape == golden.shape == (6, 3)
    assert np.abs(sims - golden).max() / np.abs(golden).max() < 1e-5


def test_a_ce_checkpoint_over_other_sizes_is_refused(store):
    cfg = golden_student_config()
    cfg.student.shared_dim = 16
    with pytest.raises(Exception, match="shared_dim"):
        initialise(build_student(cfg, store), str(GOLDEN_CE / "ce_student" / "state_dict.pth"))


def test_a_ce_student_names_what_the_store_lacks(store):
    cfg = golden_student_config()
    cfg.student.experts = ["audio", "motion"]
    with pytest.raises(Exception, match="motion"):
        build_student(cfg, store)
    cfg = golden_student_config()
    cfg.text = "w2v"
    with pytest.raises(Exception, match="tokens/w2v"):
        build_student(cfg, store)


def test_teachtext_trains_a_ce_student_from_released_teacher_files(tmp_path):
    """Import (with a test split) and train from the command line: the run reads only the
    store, its teachers are the released files, and its card has the ranking-only baseline."""
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    (root / "val_list_full.txt").write_text("video4\nvideo5\n")
    (root / "test_list_full.txt").write_text("video6\n")
    config = tmp_path / "ce.toml"
    experts = "".join(f'[features.experts."{n}"]\nfile = "{f}"\nmax_tokens = {t}\n' for n, (f, t) in EXPERT_FILES.items())
    teachers = "".join(f'[features.teachers.{t}]\nfile = "teachers/train-full-ce-refined-text-{t}.pkl"\n' for t in ("w2v", "gpt2-xl"))
    config.write_text(
        f'[features]\nroot = "{root}"\nstore = "{tmp_path / "store"}"\n{experts}'
        f'[features.text.{TEXT}]\nfile = "aggregated_text_feats/{TEXT}.pkl"\nmax_tokens = 6\n{teachers}'
        f'[train]\nsource = "features"\ntext = "{TEXT}"\nrun_dir = "{tmp_path / "run"}"\nbatch_size = 4\nepochs = 2\nlr = 1e-3\nweight_decay = 1e-5\n'
        '[train.student]\nkind = "ce"\nafa = false\nshared_dim = 32\ntext_clusters = 3\nvlad_clusters = {audio = 2}\n'
        '[train.objective]\nkind = "teachtext"\nteachers = ["w2v", "gpt2-xl"]\nmargin = 0.09381161988446174\n'
    )
    imported = CliRunner().invoke(main, ["import-features", "--quiet", "--config", str(config)])
    assert imported.exit_code == 0, imported.output
    trained = CliRunner().invoke(main, ["train", "--quiet", "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["student_kind"] == "ce" and metrics["teachers"] == ["w2v", "gpt2-xl"]
    assert all(np.isfinite(h["loss"]["distill"]) for h in metrics["history"])
    card = (tmp_path / "run" / "teachers.md").read_text()
    assert "| w2v | released | released file |" in card and "ranking-only student" in card
    assert (tmp_path / "store" / "_done").is_dir() and not list((tmp_path / "store").glob("arrays.zarr/frames"))  # no frame was ever extracted
    refused = CliRunner().invoke(main, ["search", "a query", "--run", str(tmp_path / "run")])
    assert refused.exit_code == 2 and "clip4clip" in refused.output


def _import(tmp_path, train: str, val: str, test: str, teachers=("w2v",)) -> Store:
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    for name, ids in (("train", train), ("val", val), ("test", test)):
        (root / f"{name}_list_full.txt").write_text(ids.replace(" ", "\n") + "\n")
    cfg = features_config(tmp_path / "store", root, teachers)
    run_import(cfg, progress=False)
    return Store.open(tmp_path / "store")


def test_refusals_before_any_training(tmp_path):
    """A teacher file that lacks training videos, videos without any of the student's experts,
    AFA on a ce student, and a clip4clip student on an imported store."""
    from teachcache.cache.errors import ConfigError
    from teachcache.stages.student.config import ObjectiveConfig
    from teachcache.stages.student.validate import check_against_store, check_train_config

    store = _import(tmp_path, "video0 video1 video2 video3 video4", "video5", "video6")
    cfg = golden_student_config()
    cfg.objective = ObjectiveConfig(kind="teachtext", teachers=["w2v"])
    with pytest.raises(ConfigError, match=r"lacks 1 of the 5 training videos \(e.g. \['video4'\]\)"):
        check_against_store(cfg, store)
    cfg.objective.w_distill = 0.0  # the ranking loss alone reads no teacher
    check_against_store(cfg, store)
    cfg.student.experts = ["audio"]  # video2 and video3 have no audio
    with pytest.raises(ConfigError, match=r"2 videos of split 'train' have none of the ce student's experts \['audio'\]"):
        check_against_store(cfg, store)
    cfg = golden_student_config()
    cfg.student.afa = True
    with pytest.raises(ConfigError, match="AFA"):
        check_train_config(cfg)
    plain = TrainConfig(source="features", text=TEXT)
    with pytest.raises(ConfigError, match="kind = 'ce'"):
        check_against_store(plain, store)


@pytest.mark.parametrize("kind", ["infonce", "teachclip", "mckd", "teachtext"])
def test_every_objective_trains_a_ce_student(tmp_path, kind):
    from teachcache.stages.student.config import ObjectiveConfig
    from teachcache.stages.student.recipe import train_student

    store = _import(tmp_path, "video0 video1 video2 video3", "video4 video5", "video6", teachers=("w2v", "gpt2-xl"))
    cfg = golden_student_config()
    cfg.run_dir, cfg.epochs, cfg.batch_size = str(tmp_path / "run"), 1, 4
    cfg.objective = ObjectiveConfig(kind=kind, teachers=["w2v", "gpt2-xl"])
    result = train_student(cfg, store, progress=False)
    assert result["student_kind"] == "ce" and all(np.isfinite(v) for v in result["history"][0]["loss"].values())
