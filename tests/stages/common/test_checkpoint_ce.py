"""CE's checkpoints (issue 14): ``trained_model.pth`` as the official BaseTrainer writes it, read
without running its pickled config, and the bare state dict; refusals name what is wrong."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from conftest import GOLDEN_CE

from teachcache.stages.common.checkpoints import read_checkpoint
from teachcache.stages.common.checkpoints.base import CheckpointError, InertConfigParser, InertNamespace, InertPath, load_file
from teachcache.stages.common.checkpoints.ce import read_ce

FOLDER = GOLDEN_CE / "ce_student"
EXPERTS = ["audio", "face", "imagenet.senet154.0", "r2p1d.r2p1d-ig65m.0"]
HINT = 'torch.save\\(torch.load\\(p, map_location="cpu"\\)\\["state_dict"\\], "state_dict.pth"\\)'
RAN: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def golden_ce():
    if not (FOLDER / "trained_model.pth").is_file():
        pytest.skip(f"the golden folder {GOLDEN_CE} is absent (set TEACHCACHE_SHARED to the folder holding data/golden-ce)")


def plain_state() -> dict[str, torch.Tensor]:
    return torch.load(FOLDER / "state_dict.pth", map_location="cpu", weights_only=True)


def _ran(*args):
    RAN.append("payload")


class Payload:
    def __reduce__(self):
        return (_ran, ())


def fake_parse_config(state: dict) -> types.ModuleType:
    """A module ``parse_config`` whose ConfigParser records any call; pickled objects refer to it by name."""
    module = types.ModuleType("parse_config")

    class ConfigParser:
        def __init__(self):
            RAN.append("init")

        def __setstate__(self, value):
            RAN.append("setstate")

        def __getstate__(self):
            return state

    ConfigParser.__module__, ConfigParser.__qualname__ = "parse_config", "ConfigParser"
    module.ConfigParser = ConfigParser  # type: ignore[attr-defined]
    return module


def save_with_config(path, state: dict, zipped: bool = True) -> types.ModuleType:
    """A trained_model.pth whose config pickles ``state``; returns the fake module it refers to."""
    module = fake_parse_config(state)
    sys.modules["parse_config"] = module
    try:
        parser = object.__new__(module.ConfigParser)
        torch.save({"arch": "CENet", "epoch": 1, "state_dict": plain_state(), "config": parser}, path, _use_new_zipfile_serialization=zipped)
    finally:
        del sys.modules["parse_config"]
    return module


def test_trained_model_reads_to_the_state_dict_without_running_its_config():
    ckpt = read_ce(FOLDER / "trained_model.pth")
    plain = plain_state()
    assert list(ckpt.checkpoint.head) == list(plain)
    assert all(torch.equal(ckpt.checkpoint.head[k], v) and ckpt.checkpoint.head[k].dtype == v.dtype for k, v in plain.items())
    assert ckpt.arch.order == tuple(EXPERTS) and ckpt.arch.vlad_clusters == {"audio": 2}
    assert ckpt.config is not None and ckpt.config["experts"]["modalities"] == EXPERTS and ckpt.config["arch"]["args"]["use_ce"] == "pairwise"
    assert "parse_config" not in sys.modules
    config = load_file(str(FOLDER / "trained_model.pth"))["config"].state  # every pickled object as inert data
    assert type(config["cfg_fname"]) is InertPath and config["cfg_fname"].endswith("configs/msrvtt/train-gpt2-xl-finetuned-mte-adam-tiny.json")
    assert type(config["_args"]) is InertNamespace and config["_args"].state["seeds"] == "0"
    net = ckpt.model()
    assert not net.training and all(torch.equal(net.state_dict()[k], v) for k, v in plain.items())


def test_read_checkpoint_detects_ce_and_tells_the_sizes():
    for name in ("trained_model.pth", "state_dict.pth"):
        ckpt = read_checkpoint(str(FOLDER / name))
        assert (ckpt.format, ckpt.model, ckpt.backbone, ckpt.ignored, len(ckpt.head)) == ("ce", "ce", {}, [], 124)
        assert ckpt.hparams == {
            "experts": 4, "input_widths": [256, 16, 24, 20], "vlad": {"audio": [128, 2]},
            "text_dim": 32, "text_clusters": 3, "text_ghosts": 1, "shared_dim": 32}  # fmt: skip


def test_a_bare_state_dict_needs_the_expert_names():
    with pytest.raises(CheckpointError, match="does not name its experts; pass them"):
        read_ce(FOLDER / "state_dict.pth")
    ckpt = read_ce(FOLDER / "state_dict.pth", experts=list(reversed(EXPERTS)))
    assert ckpt.config is None and ckpt.arch.order == tuple(EXPERTS)
    with pytest.raises(CheckpointError, match="pooling modules \\['audio'\\] are not among"):
        read_ce(FOLDER / "state_dict.pth", experts=["a", "b", "c", "d"])


def test_a_missing_or_extra_key_is_refused_with_the_names(tmp_path):
    state = plain_state()
    del state["ce.text_GU.3.cg.batch_norm.running_var"]
    state["ce.h_reason.0.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "sd.pth")
    with pytest.raises(CheckpointError, match="format 'ce'.*missing 1 \\[ce.text_GU.3.cg.batch_norm.running_var\\], unexpected 1 \\[ce.h_reason.0.weight\\]") as err:
        read_ce(tmp_path / "sd.pth", experts=EXPERTS)
    assert err.value.missing == ["ce.text_GU.3.cg.batch_norm.running_var"] and err.value.unexpected == ["ce.h_reason.0.weight"]


def test_any_other_global_is_refused_with_the_export_hint_and_nothing_runs(tmp_path):
    import os

    torch.save({"state_dict": plain_state(), "hook": os.system}, tmp_path / "system.pth")
    torch.save({"state_dict": plain_state(), "args": Payload()}, tmp_path / "payload.pth")
    save_with_config(tmp_path / "nested.pth", {"_config": {"experts": {"modalities": EXPERTS}}, "evil": Payload()})
    for name, what in (("system.pth", "posix.system"), ("payload.pth", "_ran"), ("nested.pth", "_ran")):
        with pytest.raises(CheckpointError, match=f"cannot be read with torch.load\\(weights_only=True\\).*{what}.*; export its state dict .*{HINT}$"):
            read_ce(tmp_path / name)
    assert not RAN


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])  # torch < 1.6 wrote the legacy format
def test_the_config_placeholder_never_runs_the_real_class(tmp_path, zipped):
    state = {"_config": {"experts": {"modalities": EXPERTS, "drop_feats": ""}, "arch": {"args": {"use_ce": "pairwise"}}}}
    module = save_with_config(tmp_path / "trained_model.pth", state, zipped)
    sys.modules["parse_config"] = module  # even with the real class importable, the placeholder is used
    try:
        raw = load_file(str(tmp_path / "trained_model.pth"))
        ckpt = read_ce(tmp_path / "trained_model.pth")
    finally:
        del sys.modules["parse_config"]
    assert not RAN and type(raw["config"]) is InertConfigParser and raw["config"].state == state
    assert ckpt.config == state["_config"] and ckpt.arch.order == tuple(EXPERTS)


def test_a_config_of_another_variant_is_refused(tmp_path):
    state = {"_config": {"experts": {"modalities": EXPERTS}, "arch": {"args": {"use_ce": "pairwise", "use_mish": 0}}}}
    save_with_config(tmp_path / "relu.pth", state)
    with pytest.raises(CheckpointError, match="asks for \\{'use_mish': 0\\}"):
        read_ce(tmp_path / "relu.pth")
    state = {"_config": {"experts": {"modalities": [*EXPERTS, "speech"], "drop_feats": "speech"}}}
    save_with_config(tmp_path / "drop.pth", state)
    assert read_ce(tmp_path / "drop.pth").arch.order == tuple(EXPERTS)
