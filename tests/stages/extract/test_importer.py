"""Importing Collaborative Experts' released features and TeachText's teacher files
(``../shared/data/golden-ce/formats``: a tiny MSR-VTT folder in the official paths and
formats, with what the official loader returns for it)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GOLDEN_CE
from golden_ce import EXPERT_FILES, FORMATS, ROOT, TEACHERS, TEXT, features_config, need_golden_ce

from teachcache.cache import schema
from teachcache.cache.errors import ConfigError, InputMissing
from teachcache.cache.pickles import PickleRefused, load_pickle
from teachcache.cache.store import Store
from teachcache.stages.extract.config import ExpertFileConfig, FeaturesConfig
from teachcache.stages.extract.feature_files import FeatureFileError
from teachcache.stages.extract.importer import run_import
from teachcache.stages.student.objectives.bank import TeacherBank

NUM_TEST_CAPTIONS = 2


@pytest.fixture(autouse=True)
def golden_ce_present() -> None:
    need_golden_ce()


def ce_config(store: Path, root: Path = ROOT) -> FeaturesConfig:
    cfg = features_config(store, root)
    cfg.layout.shard_size = cfg.layout.chunk_rows = 2  # several shards on 7 videos
    return cfg


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Store:
    path = tmp_path_factory.mktemp("ce") / "store"
    run_import(ce_config(path), progress=False)
    return Store.open(path)


def test_the_store_holds_what_the_official_loader_returns_for_the_val_videos(imported):
    golden = dict(np.load(FORMATS / "loader_outputs.npz"))
    videos = imported.videos().to_pylist()
    val = [i for i, v in enumerate(videos) if v["split"] == "val"]
    assert [videos[i]["video_id"] for i in val] == Path(ROOT / "val_list_full.txt").read_text().split()
    for name in EXPERT_FILES:
        values, mask = imported.read(schema.expert(name), np.array(val)), imported.read(schema.expert_mask(name), np.array(val))
        available = mask if mask.ndim == 1 else mask.any(-1)
        np.testing.assert_array_equal(available.astype(np.float32), golden[f"retrieval/ind/{name}"], err_msg=name)
        official = golden[f"retrieval/experts/{name}"]
        assert np.isnan(official[~available]).all()  # the official loader's mark of a missing video
        np.testing.assert_array_equal(values[available], official[available], err_msg=name)
        assert not values[~available].any()
    captions = imported.captions().to_pylist()
    tokens, token_mask = imported.read(schema.tokens(TEXT)), imported.read(schema.token_mask(TEXT))
    text = np.zeros_like(golden["retrieval/text"])
    counts = np.zeros(golden["retrieval/text_token_mask"].shape)
    for i, row in enumerate(val):
        rows = [r for r, c in enumerate(captions) if c["video_id"] == videos[row]["video_id"]][:NUM_TEST_CAPTIONS]
        text[i, : len(rows)] = tokens[rows]
        counts[i, : len(rows)] = token_mask[rows].sum(-1)
    np.testing.assert_array_equal(text, golden["retrieval/text"])
    np.testing.assert_array_equal(counts, golden["retrieval/text_token_mask"])


def test_captions_follow_raw_captions_and_missing_videos_are_reported(imported):
    raw = load_pickle(ROOT / "raw-captions.pkl")
    captions = imported.captions().to_pylist()
    assert [c["text"] for c in captions if c["video_id"] == "video0"] == [" ".join(c) for c in raw["video0"]]
    missing = json.loads(imported.get_file(schema.IMPORT_MISSING_FILE))
    assert missing["face"] == ["video1", "video3", "video5"]
    assert missing["audio"] == ["video2", "video3", "video6"]
    assert missing["imagenet.senet154.0"] == []


def test_teacher_matrices_are_rebuilt_as_teachtexts_trainer_builds_them(imported):
    """T_t = sum over the teacher's modalities of text . video (no weights), averaged over teachers."""
    meta = json.loads((GOLDEN_CE / "teachtext_loss" / "meta.json").read_text())
    golden = dict(np.load(GOLDEN_CE / "teachtext_loss" / "outputs.npz"))
    captions = imported.captions().to_pylist()
    video_rows = {v["video_id"]: i for i, v in enumerate(imported.videos().to_pylist())}
    caption_rows = [[r for r, c in enumerate(captions) if c["video_id"] == b["video"]][b["caption_index"]] for b in meta["batch_rows"]]
    batch_videos = [video_rows[b["video"]] for b in meta["batch_rows"]]
    sims = []
    for t, name in enumerate(TEACHERS):
        assert imported.read(schema.teacher_mask(name), np.array(batch_videos)).all()
        text = imported.read(schema.teacher_text(name), np.array(caption_rows))
        video = imported.read(schema.teacher_video(name), np.array(batch_videos))
        sims.append(np.einsum("qmd,bmd->qb", text, video))
        np.testing.assert_allclose(sims[-1], golden[f"teacher_sim/{t}"], atol=1e-6)
    np.testing.assert_allclose(np.mean(sims, 0), golden["teacher_mean"], atol=1e-6)
    bank = TeacherBank(list(TEACHERS), imported, torch.device("cpu"))  # what stage two rebuilds
    arrays = {schema.teacher_text(n): torch.from_numpy(imported.read(schema.teacher_text(n), np.array(caption_rows))) for n in TEACHERS}
    arrays |= {schema.teacher_video(n): torch.from_numpy(imported.read(schema.teacher_video(n), np.array(batch_videos))) for n in TEACHERS}
    for t, logits in enumerate(bank.logits(arrays)):
        np.testing.assert_allclose(logits.numpy(), golden[f"teacher_sim/{t}"], atol=1e-6)
    assert bank.scales() == [1.0, 1.0, 1.0]
    assert not imported.read(schema.teacher_mask("w2v"))[[video_rows["video4"], video_rows["video5"]]].any()  # train videos only


def test_every_pickle_variant_reads_the_same_as_the_protocol_3_file(tmp_path):
    reference = load_pickle(ROOT / EXPERT_FILES["audio"][0], "numpy")
    for variant in sorted((FORMATS / "pickle-variants").iterdir()):
        content = load_pickle(variant, "numpy")
        assert list(content) == list(reference), variant.name
        for vid, value in reference.items():
            if isinstance(value, float):
                assert isinstance(content[vid], float) and np.isnan(content[vid])
            else:
                np.testing.assert_array_equal(content[vid], value, err_msg=variant.name)


def test_a_pickle_that_references_anything_else_is_refused_without_running_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"video0": Payload()}))
    with pytest.raises(PickleRefused, match="shutil.rmtree"):
        load_pickle(path, "numpy")
    assert (tmp_path / "victim").is_dir()


def test_a_refused_import_leaves_nothing_on_disk(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(ROOT, root, symlinks=False)
    bad = dict(load_pickle(root / EXPERT_FILES["face"][0], "numpy"))
    bad["video0"] = np.array([1.0, np.nan, 2.0], np.float32)  # partly NaN: neither a feature nor CE's missing mark
    (root / EXPERT_FILES["face"][0]).write_bytes(pickle.dumps(bad))
    store = tmp_path / "store"
    with pytest.raises(FeatureFileError, match="video0"):
        run_import(ce_config(store, root), progress=False)
    assert not store.exists()
    cfg = ce_config(store, root)
    cfg.experts["face"].file = "nowhere.pickle"
    with pytest.raises(InputMissing, match="nowhere.pickle"):
        run_import(cfg, progress=False)
    assert not store.exists()
    cfg.experts, cfg.text, cfg.teachers = {}, {}, {}
    with pytest.raises(ConfigError, match="no"):
        run_import(cfg, progress=False)
    assert not store.exists()


def test_a_rerun_skips_finished_shards_and_other_files_are_refused(tmp_path):
    store = tmp_path / "store"
    first = run_import(ce_config(store), progress=False)
    again = run_import(ce_config(store), progress=False)
    assert first.shards_done > 0 and again.shards_done == 0 and again.shards_skipped == first.shards_done
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    (root / "val_list_full.txt").write_text("video4\nvideo5\n")
    with pytest.raises(Exception, match="differences"):
        run_import(ce_config(store, root), progress=False)
    assert Store.open(store).num_rows(schema.VIDEOS) == 7  # untouched


def test_npz_hdf5_and_npy_experts_import_like_pickles(tmp_path):
    import h5py

    content = load_pickle(ROOT / EXPERT_FILES["face"][0], "numpy")
    present = {k: v for k, v in content.items() if not isinstance(v, float)}
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    np.savez(root / "face.npz", **present)
    with h5py.File(root / "face.h5", "w") as handle:
        for k, v in present.items():
            handle[k] = v
    ids = list(content)
    np.save(root / "face.npy", np.stack([np.full(16, np.nan, np.float32) if isinstance(content[v], float) else content[v] for v in ids]))
    (root / "face.ids.txt").write_text("\n".join(ids) + "\n")
    stored = {}
    for suffix in ("npz", "h5", "npy"):
        cfg = ce_config(tmp_path / suffix, root)
        cfg.experts = {"face": ExpertFileConfig("face", f"face.{suffix}")}
        cfg.text = cfg.teachers = {}
        run_import(cfg, progress=False)
        with Store.open(tmp_path / suffix) as s:
            stored[suffix] = (s.read(schema.expert("face")), s.read(schema.expert_mask("face")))
    with _import_face_only(tmp_path, root) as s:
        reference = (s.read(schema.expert("face")), s.read(schema.expert_mask("face")))
    (root / "face.ids.txt").write_text("\n".join(reversed(ids)) + "\n")  # the ids are an input: another order, another store
    cfg = ce_config(tmp_path / "npy", root)
    cfg.experts = {"face": ExpertFileConfig("face", "face.npy")}
    cfg.text = cfg.teachers = {}
    with pytest.raises(Exception, match="ids.txt"):
        run_import(cfg, progress=False)
    for suffix, (values, mask) in stored.items():
        np.testing.assert_array_equal(values, reference[0], err_msg=suffix)
        np.testing.assert_array_equal(mask, reference[1], err_msg=suffix)


def _import_face_only(tmp_path: Path, root: Path) -> Store:
    cfg = ce_config(tmp_path / "pickle", root)
    cfg.experts = {"face": cfg.experts["face"]}
    cfg.text = cfg.teachers = {}
    run_import(cfg, progress=False)
    return Store.open(tmp_path / "pickle")


def test_the_imported_groups_open_in_xarray(imported):
    import xarray as xr

    root = Path(str(imported.path)) / "arrays.zarr"
    experts = xr.open_zarr(root, group="expert", consolidated=False)
    assert experts["audio"].dims == ("video", "token_audio", "dim_audio") and experts["face"].dims == ("video", "dim_face")
    for group in ("expert_mask", "tokens", "token_mask", "teacher_video", "teacher_text", "teacher_mask"):
        assert xr.open_zarr(root, group=group, consolidated=False).data_vars, group
