"""Official checkpoint files: the format and model detected from the keys, the sizes derived
from the shapes, and refusals that list the offending names (issue 13; the golden files)."""

import pickle

import pytest
import torch
from golden import GOLDEN, checkpoint_path, need_golden
from safetensors.torch import save_file

from teachcache.cache.errors import InputMissing, TeachcacheError, UnknownKind
from teachcache.stages.common.checkpoints import CHECKPOINT_FORMATS, read_checkpoint
from teachcache.stages.common.checkpoints.base import CheckpointError

pytestmark = pytest.mark.usefixtures("golden_folder")
RAN = []


def _payload():
    RAN.append(True)


class Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (_payload, ())


@pytest.fixture
def golden_folder():
    need_golden()


def _state(case):
    state = torch.load(checkpoint_path(case), map_location="cpu", weights_only=True)
    return dict(state.get("state_dict", state))


@pytest.mark.parametrize(
    "case, model, head, ignored",
    [("clip4clip", "seqTransf", 25, 0), ("teachclip", "teachclip", 29, 0), ("xclip", "xclip", 33, 0), ("ts2net", "ts2net", 30, 10), ("xpool", "xpool", 16, 0)],
)
def test_each_golden_file_is_detected_and_split(case, model, head, ignored):
    ckpt = read_checkpoint(checkpoint_path(case))
    assert (ckpt.format, ckpt.model) == ("xpool" if case == "xpool" else "clip4clip", model)
    assert len(ckpt.head) == head and len(ckpt.ignored) == ignored
    assert not any(k.startswith("clip.") for k in [*ckpt.backbone, *ckpt.head])
    assert ckpt.logit_scale == pytest.approx(float(_state(case)["clip.logit_scale"].exp()))


def test_openai_sizes_come_from_the_shapes():
    h = read_checkpoint(checkpoint_path("xclip")).hparams
    assert {k: h[k] for k in ("vision_width", "vision_layers", "vision_heads", "patch", "grid", "image_size", "embed_dim")} == {
        "vision_width": 64, "vision_layers": 2, "vision_heads": 1, "patch": 32, "grid": 7, "image_size": 224, "embed_dim": 128}  # fmt: skip
    assert {k: h[k] for k in ("text_width", "text_layers", "text_heads", "context_length", "vocab_size", "sot_id", "eot_id")} == {
        "text_width": 128, "text_layers": 2, "text_heads": 2, "context_length": 77, "vocab_size": 512, "sot_id": 510, "eot_id": 511}  # fmt: skip
    assert (h["cross_layers"], h["cross_width"], h["cross_heads"], h["cross_rows"], h["max_words"], h["max_frames"]) == (2, 128, 2, 77, 32, 12)


def test_ts2net_reads_layers_10_11_from_attn_net_and_counts_them():
    ckpt = read_checkpoint(checkpoint_path("ts2net"))
    assert ckpt.hparams["vision_layers"] == 12 and ckpt.hparams["shift_layers"] == [10, 11]
    raw = _state("ts2net")
    name = "visual.transformer.resblocks.10.attn.in_proj_weight"
    assert torch.equal(ckpt.backbone[name], raw["clip.visual.transformer.resblocks.10.attn.net.in_proj_weight"])
    assert not any(".attn.net." in k for k in ckpt.backbone)
    assert all(k.startswith(("text_token_selector.", "visual_prompt_encoder.")) for k in ckpt.ignored)


def test_xpool_sizes_leave_the_head_counts_to_the_config():
    h = read_checkpoint(checkpoint_path("xpool")).hparams
    assert (h["text_width"], h["vision_width"], h["embed_dim"], h["pool_dim"], h["vocab_size"]) == (32, 32, 512, 512, 512)
    assert h["text_heads"] is None and h["vision_heads"] is None


def test_a_seqtransf_file_reads_as_meanp_only_when_asked():
    with pytest.raises(CheckpointError, match="model 'meanP'.*unexpected 25.*frame_position_embeddings.weight.*drop_head=True") as err:
        read_checkpoint(checkpoint_path("clip4clip"), model="meanP")
    assert len(err.value.unexpected) == 25 and not err.value.missing
    ckpt = read_checkpoint(checkpoint_path("clip4clip"), model="meanP", drop_head=True)
    assert ckpt.model == "meanP" and not ckpt.head and len(ckpt.ignored) == 25 and ckpt.cross_transformer() is None
    with pytest.raises(CheckpointError, match="drop_head is for reading a file as model 'meanP'"):
        read_checkpoint(checkpoint_path("clip4clip"), drop_head=True)


def test_a_file_of_another_format_is_refused_with_the_names():
    with pytest.raises(CheckpointError, match="does not fit format 'clip4clip'.*missing .*clip.visual.conv1.weight.*unexpected .*clip.text_model") as err:
        read_checkpoint(checkpoint_path("xpool"), format="clip4clip")
    assert "clip.visual.proj" in err.value.missing and "pool_frames.linear_proj.weight" in err.value.unexpected
    with pytest.raises(CheckpointError, match="does not fit format 'xpool'"):
        read_checkpoint(checkpoint_path("clip4clip"), format="xpool")
    with pytest.raises(CheckpointError, match="format 'clip4clip' has no model 'xpool'"):
        read_checkpoint(checkpoint_path("clip4clip"), format="clip4clip", model="xpool")
    with pytest.raises(UnknownKind, match="unknown checkpoint format 'hf'"):
        read_checkpoint(checkpoint_path("clip4clip"), format="hf")
    assert set(CHECKPOINT_FORMATS) == {"clip4clip", "xpool", "ce"}


def test_a_named_model_whose_head_is_absent_is_refused():
    with pytest.raises(CheckpointError, match="model 'xclip': missing 8 .*global_mat_weight"):
        read_checkpoint(checkpoint_path("clip4clip"), model="xclip")


@pytest.mark.parametrize(
    "case, old, new",
    [
        ("clip4clip", "clip.visual.proj", "clip.visual.projection"),
        ("teachclip", "frameLinear2.bias", "frame_linear2.bias"),
        ("xclip", "transformerClip.resblocks.1.ln_2.weight", "transformerClip.resblocks.1.ln2.weight"),
        ("xpool", "pool_frames.layer_norm3.bias", "pool_frames.layer_norm_3.bias"),
    ],
)
def test_a_renamed_key_is_refused_naming_both(tmp_path, case, old, new):
    state = _state(case)
    state[new] = state.pop(old)
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(str(path))
    assert err.value.missing == [old] and err.value.unexpected == [new]
    assert old in str(err.value) and new in str(err.value)


def test_a_missing_key_is_refused(tmp_path):
    state = _state("ts2net")
    del state["visual_token_selector.score_predictor.out_conv.2.weight"], state["clip.visual.transformer.resblocks.11.attn.net.in_proj_bias"]
    torch.save(state, tmp_path / "m.bin")
    with pytest.raises(CheckpointError, match="missing 2") as err:
        read_checkpoint(str(tmp_path / "m.bin"))
    assert err.value.missing == ["clip.visual.transformer.resblocks.11.attn.net.in_proj_bias", "visual_token_selector.score_predictor.out_conv.2.weight"]


def test_a_wrong_shape_is_refused_when_the_weights_load(tmp_path):
    state = _state("clip4clip")
    state["transformerClip.resblocks.0.mlp.c_fc.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "s.bin")
    with pytest.raises(CheckpointError, match="the seqTransf head does not fit.*c_fc.weight"):
        read_checkpoint(str(tmp_path / "s.bin")).cross_transformer()


def test_a_file_that_needs_pickled_objects_is_refused_without_running_it(tmp_path):
    with open(tmp_path / "evil.bin", "wb") as f:
        pickle.dump({"clip.logit_scale": Payload()}, f, protocol=2)
    torch.save({"state_dict": _state("clip4clip"), "args": Payload()}, tmp_path / "with_object.bin")
    for name in ("evil.bin", "with_object.bin"):
        with pytest.raises(CheckpointError, match="cannot be read with torch.load\\(weights_only=True\\).*Unsupported global.*_payload"):
            read_checkpoint(str(tmp_path / name))
    assert not RAN
    torch.save({"epoch": 1, "note": "no tensors"}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="holds no state dict of tensors"):
        read_checkpoint(str(tmp_path / "plain.pt"))
    with pytest.raises(InputMissing):
        read_checkpoint(str(tmp_path / "absent.bin"))
    assert issubclass(CheckpointError, TeachcacheError)


def test_unknown_keys_name_no_format(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="no known format .*encoder.weight"):
        read_checkpoint(str(tmp_path / "x.pt"))


def test_safetensors_module_prefix_and_position_ids_are_accepted(tmp_path):
    state = _state("xpool")
    state["clip.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, tmp_path / "x.safetensors")
    ckpt = read_checkpoint(str(tmp_path / "x.safetensors"))
    assert ckpt.model == "xpool" and ckpt.ignored == ["clip.text_model.embeddings.position_ids"]
    state["clip.text_model.embeddings.position_ids"] = torch.arange(77).flip(0)[None]
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="position_ids is not 0..76"):
        read_checkpoint(str(tmp_path / "bad.pth"))


def test_golden_folder_has_the_files():
    assert (GOLDEN / "ts2net" / "teachclip_base_clip_fill.safetensors").is_file()


def test_the_format_registry_is_torch_free():
    import subprocess
    import sys

    code = "import sys, teachcache.stages.common.checkpoints as c; print(c.CHECKPOINT_FORMATS.names(), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "['clip4clip', 'xpool', 'ce'] False"
