"""CE+ (TeachText's student) against the outputs of the official Collaborative Experts code
(``../shared/data/golden-ce``, issue 14): the eval forward, a training step with batch
statistics and its TeachText losses, the architecture read off the state dict, and the
similarity's behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import GOLDEN_CE

from teachcache.cache.errors import ConfigError, NumericalError
from teachcache.stages.common.ce import CEArchitecture, CENet, CEOutput, ce_similarity
from teachcache.stages.common.checkpoints.base import CheckpointError, load_module
from teachcache.stages.common.losses import max_margin_ranking, teachtext_distillation

MARGIN = 0.09381161988446174  # the official config's margin, to the last digit
RTOL = 1e-5  # max|diff| / max|golden|: element-wise rtol fails near zero (entries ~1e-4)
GROUPS = ("text_embds", "vid_embds", "pooled", "video_reduced", "ce_mask")


@pytest.fixture(scope="module", autouse=True)
def golden_ce():
    if not (GOLDEN_CE / "manifest.json").is_file():
        pytest.skip(f"the golden folder {GOLDEN_CE} is absent (set TEACHCACHE_SHARED to the folder holding data/golden-ce)")


def state() -> dict[str, torch.Tensor]:
    return torch.load(GOLDEN_CE / "ce_student" / "state_dict.pth", map_location="cpu", weights_only=True)


def meta() -> dict:
    return json.loads((GOLDEN_CE / "ce_student" / "meta.json").read_text())


def npz(case: str, name: str) -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN_CE / case / f"{name}.npz"))


def network() -> CENet:
    sd = state()
    net = CENet(CEArchitecture.from_state_dict(sd, meta()["expert_order"]))
    net.load_state_dict(sd, strict=True)
    return net


def forward(net: CENet, inputs: dict[str, np.ndarray]) -> CEOutput:
    order = net.arch.order
    experts = {m: torch.from_numpy(inputs[f"experts/{m}"]) for m in order}
    available = {m: torch.from_numpy(inputs[f"ind/{m}"]) for m in order}
    with torch.no_grad():
        return net(experts, available, torch.from_numpy(inputs["text"]))


def flat(out: CEOutput) -> dict[str, torch.Tensor]:
    """The output under the golden file's keys."""
    arrays = {"sims": out.similarity(), "moe_weights": out.moe_weights, "text_vlad": out.text_vlad}
    for group in GROUPS:
        arrays |= {f"{group}/{name}": value for name, value in getattr(out, group).items()}
    return arrays


def worst(ours: dict[str, torch.Tensor], golden: dict[str, np.ndarray], prefix: str = "") -> dict[str, float]:
    """max|diff| / max|golden| for every golden key under ``prefix`` (all must be computed)."""
    keys = [k for k in golden if k.startswith(prefix) and golden[k].ndim]
    assert {k[len(prefix) :] for k in keys} <= set(ours), sorted({k[len(prefix) :] for k in keys} - set(ours))
    return {k: float(np.abs(ours[k[len(prefix) :]].numpy().reshape(golden[k].shape) - golden[k]).max() / np.abs(golden[k]).max()) for k in keys}


def test_eval_reproduces_every_golden_array():
    net = network().eval()
    errors = worst(flat(forward(net, npz("ce_student", "inputs"))), npz("ce_student", "outputs"))
    assert len(errors) == 20 and max(errors.values()) <= RTOL, errors


def test_train_mode_reproduces_the_cenet_step_and_its_losses():
    net = network().train()  # BatchNorm on batch statistics, as the official training step
    inputs, golden = npz("teachtext_loss", "inputs"), npz("teachtext_loss", "outputs")
    assert inputs["ind/face"].dtype == np.float64 and inputs["text"].shape == (4, 1, 6, 32)
    out = forward(net, inputs)
    errors = worst(flat(out), golden, "cenet_step/")
    assert len(errors) == 10 and max(errors.values()) <= RTOL, errors
    sims = out.similarity()
    teachers = [torch.from_numpy(golden[f"teacher_sim/{t}"]) for t in range(3)]
    ranking, distil = max_margin_ranking(sims, margin=MARGIN), teachtext_distillation(sims, teachers)
    assert float(ranking) == pytest.approx(float(golden["cenet_step/ranking_loss"]), abs=1e-6)
    assert float(distil) == pytest.approx(float(golden["cenet_step/distil_loss"]), abs=1e-6)
    assert float(teachtext_distillation(sims, [torch.from_numpy(golden["teacher_mean"])])) == pytest.approx(float(distil), abs=1e-7)


def test_the_architecture_comes_from_the_shapes_and_the_names_are_official():
    sd, info = state(), meta()
    arch = CEArchitecture.from_state_dict(sd, list(reversed(info["expert_order"])))
    assert arch.order == tuple(info["expert_order"])
    assert {m: arch.pooled_dim(m) for m in arch.order} == {m: dims[0] for m, dims in info["expert_dims(in,out)"].items()}
    assert arch.experts == info["raw_input_dims"] and arch.vlad_clusters == {"audio": 2}
    assert (arch.text_dim, arch.text_clusters, arch.text_ghosts, arch.shared_dim) == (info["text_dim"], 3, 1, 32)
    assert CEArchitecture.from_dict(arch.to_dict()) == arch
    ours = CENet(arch).state_dict()
    assert list(ours) == list(sd)  # the official names, in the official order
    assert {k: [list(v.shape), str(v.dtype)] for k, v in ours.items()} == info["checkpoint"]["state_dict keys"]


def test_a_state_dict_with_a_missing_or_extra_key_is_refused_with_the_names():
    sd = state()
    net = CENet(CEArchitecture.from_state_dict(sd, meta()["expert_order"]))
    sd["ce.h_reason.0.weight"] = sd.pop("ce.video_GU.2.cg.batch_norm2.bias")
    with pytest.raises(CheckpointError, match="the CE network does not fit: .*Missing key.*ce.video_GU.2.cg.batch_norm2.bias.*Unexpected key.*ce.h_reason.0.weight"):
        load_module(net, sd, "the CE network")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"use_ce": "attention"}, "only use_ce 'pairwise'"),
        ({"num_h_layers": 1}, "num_h_layers 0"),
        ({"include_self": False}, "include_self"),
        ({"vlad_clusters": {"speech": 3}}, "not in experts"),
        ({"vlad_clusters": {"audio.x": 2}, "experts": {"audio.x": 4, "face": 2}}, "cannot contain '.'"),
    ],
)
def test_unsupported_variants_are_refused(change, message):
    values = {"experts": {"audio": 4, "face": 2}, "vlad_clusters": {"audio": 2}, "text_dim": 4, "text_clusters": 2, "text_ghosts": 1, "shared_dim": 4} | change
    with pytest.raises(ConfigError, match=message):
        CEArchitecture(**values)


def test_wrong_names_for_a_state_dict_are_refused():
    with pytest.raises(ConfigError, match="4 experts .* 3 distinct names"):
        CEArchitecture.from_state_dict(state(), ["audio", "face", "face", "x"])
    with pytest.raises(ConfigError, match=r"pooling modules \['audio'\] are not among"):
        CEArchitecture.from_state_dict(state(), ["a", "b", "c", "d"])


def test_similarity_of_other_text_and_video_sets():
    out = forward(network().eval(), npz("ce_student", "inputs"))
    text, weights = out.text_side()
    video, available = out.video_side()
    sims = out.similarity()
    assert torch.equal(sims, ce_similarity(text, weights, video, available))
    rows, cols = [5, 0, 3, 2, 1], [2, 0]
    part = ce_similarity(text[rows], weights[rows], video[cols], available[cols])
    assert part.shape == (5, 2)
    torch.testing.assert_close(part, sims[rows][:, cols], rtol=0, atol=1e-7)
    golden = npz("ce_student", "outputs")["sims"]
    assert np.abs(part.numpy() - golden[rows][:, cols]).max() <= RTOL * np.abs(golden).max()


def test_a_video_with_no_available_expert_is_refused():
    out = forward(network().eval(), npz("ce_student", "inputs"))
    video, available = out.video_side()
    available = available.clone()
    available[1] = 0
    with pytest.raises(NumericalError, match=r"videos \[1\] have no available expert"):
        ce_similarity(*out.text_side(), video, available)


def test_missing_rows_may_hold_anything_but_available_rows_no_nan():
    net, inputs = network().eval(), npz("ce_student", "inputs")
    base = flat(forward(net, inputs))["sims"]
    junk = dict(inputs)
    junk["experts/face"] = np.where(inputs["ind/face"][:, None] == 0, 7.0, inputs["experts/face"]).astype(np.float32)
    assert torch.equal(flat(forward(net, junk))["sims"], base)
    assert np.isnan(inputs["experts/face"][1]).all()  # the official NaN rows stay untouched
    bad = dict(inputs)
    bad["experts/imagenet.senet154.0"] = inputs["experts/imagenet.senet154.0"].copy()
    bad["experts/imagenet.senet154.0"][2, 3] = np.nan
    with pytest.raises(NumericalError, match=r"'imagenet.senet154.0' has NaN in rows marked available: \[2\]"):
        forward(net, bad)
    bad = dict(inputs) | {"ind/face": np.array([1, 0.5, 1], np.float32)}
    with pytest.raises(ConfigError, match="must be 0 or 1"):
        forward(net, bad)
