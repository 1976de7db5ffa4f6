"""The store's schema: every array name, row key, unit of work and file name, in one place.

Every reader and writer builds names through this module (never by hand), so a name is
spelt once. Arrays are addressed ``<family>/<owner>``: the owner is the encoder or teacher
named in the extraction config. The first axis of an array runs over ``videos`` or
``captions`` (its row kind). Work is cut into units (one per array family and owner) times
shards of rows; a unit's shard is written whole, then marked done.
"""

from __future__ import annotations

# ----- row kinds -----------------------------------------------------------------------------
VIDEOS = "videos"
CAPTIONS = "captions"
ROW_KINDS = (VIDEOS, CAPTIONS)

# ----- row keys: not arrays, each row's position in the store, handed to teacher heads -----------
CAPTION_ROW = "row/caption"
VIDEO_ROW = "row/video"
ROW_KEYS = (CAPTION_ROW, VIDEO_ROW)

# ----- files of a store directory ---------------------------------------------------------------
ATTRS_FILE = "store.json"  # the attributes, written whole (temporary name, then rename) and last
DONE_DIR = "_done"  # one marker per finished (unit, shard)
FILES_DIR = "files"  # small named blobs kept with the arrays (teacher heads)
VIDEOS_FILE = "videos.parquet"
CAPTIONS_FILE = "captions.parquet"
FAILURES_FILE = "failures.parquet"

# ----- arrays ------------------------------------------------------------------------------------
KEYFRAMES = "keyframes"  # videos: uint8 [S, S, 3], the most contrasted sampled frame (search pages)
DENOISE_RANK = "denoise/rank"  # captions: int32, 0-based rank of the own video among training videos (-1 outside train, and for failed videos)
DENOISE_SCORE = "denoise/score"  # captions: float32, the teacher ensemble's score of the own video (NaN where the rank is -1)


def frames(encoder: str) -> str:
    """videos: float16 [F, D], a frame encoder's projected (unnormalised) features; zeros where masked (blank-padding kinds: the blank frame's)."""
    return f"frames/{encoder}"


def frame_tokens(encoder: str) -> str:
    """videos: float16 [F, T, D], the tokens a frame encoder keeps per frame (TS2-Net: CLS and the selected patches)."""
    return f"frame_tokens/{encoder}"


def frame_mask(encoder: str) -> str:
    """videos: bool [F], false for padding and failed videos."""
    return f"frame_mask/{encoder}"


def text(encoder: str) -> str:
    """captions: float16 [D], a text encoder's sentence vector."""
    return f"text/{encoder}"


def tokens(encoder: str) -> str:
    """captions: float16 [L, D], a text encoder's word features."""
    return f"tokens/{encoder}"


def token_mask(encoder: str) -> str:
    """captions: bool [L], false for padding words."""
    return f"token_mask/{encoder}"


def relevance(teacher: str) -> str:
    """captions: float16 [F], a teacher's raw per-frame scores of the caption with its own video."""
    return f"relevance/{teacher}"


def bank(teacher: str) -> str:
    """videos: float16 [C, D], a caption teacher's bank of each video's caption vectors."""
    return f"bank/{teacher}"


def bank_rows(teacher: str) -> str:
    """videos: int32 [C], the bank's caption rows (-1: none)."""
    return f"bank_rows/{teacher}"


def scores(teacher: str) -> str:
    """captions: float16 [V], a black-box teacher's dense scores."""
    return f"scores/{teacher}"


def topk_video(teacher: str) -> str:
    """captions: int32 [K+1], a black-box teacher's top K videos plus the own one."""
    return f"topk_video/{teacher}"


def topk_score(teacher: str) -> str:
    """captions: float16 [K+1], their scores."""
    return f"topk_score/{teacher}"


def expert(name: str) -> str:
    """videos: float32 [D] or [T, D], an imported video expert's features (zeros where the video lacks it, and after its tokens)."""
    return f"expert/{name}"


def expert_mask(name: str) -> str:
    """videos: bool [] (the video has the expert) or [T] (its real tokens; all false: it lacks the expert)."""
    return f"expert_mask/{name}"


def teacher_video(teacher: str) -> str:
    """videos: float32 [M, D], an imported multi-expert teacher's video embedding per modality (TeachText's vid_embds)."""
    return f"teacher_video/{teacher}"


def teacher_text(teacher: str) -> str:
    """captions: float32 [M, D], its caption embedding per modality (text_embds)."""
    return f"teacher_text/{teacher}"


def teacher_mask(teacher: str) -> str:
    """videos: bool [], the video is in the teacher's file (TeachText's files hold the training videos)."""
    return f"teacher_mask/{teacher}"


# ----- dimension names (xarray, dask and other readers see named axes) ----------------------------
ROW_AXIS = {VIDEOS: "video", CAPTIONS: "caption"}
TAIL_AXES = {  # per array family, the axes after the row axis
    "frames": ("frame", "dim"),
    "frame_mask": ("frame",),
    "frame_tokens": ("frame", "slot", "dim"),
    "text": ("dim",),
    "tokens": ("word", "dim"),
    "token_mask": ("word",),
    "relevance": ("frame",),
    "bank": ("slot", "dim"),
    "bank_rows": ("slot",),
    "scores": ("video",),
    "topk_video": ("rank",),
    "topk_score": ("rank",),
    "expert": ("token", "dim"),
    "expert_mask": ("token",),
    "teacher_video": ("modality", "dim"),
    "teacher_text": ("modality", "dim"),
    "teacher_mask": (),
    KEYFRAMES: ("y", "x", "rgb"),
}
SHARED_AXES = {"video", "caption", "frame", "y", "x", "rgb"}  # one size in a whole store; the others are per owner


def dimension_names(name: str, rows: str, tail_len: int) -> tuple[str, ...]:
    """Named axes of an array, e.g. ``frames/clip`` -> (video, frame, dim_clip): an axis whose size
    differs between owners (a width, a word count) carries the owner's name, so every group of
    the store opens as one xarray Dataset."""
    axes = TAIL_AXES.get(family(name), ())
    if len(axes) > tail_len and family(name) in ("expert", "expert_mask"):
        axes = axes[len(axes) - tail_len :]  # a fixed-size expert has no token axis
    if len(axes) != tail_len:
        axes = tuple(f"axis{i}" for i in range(1, tail_len + 1))
    tail = tuple(axis if axis in SHARED_AXES else f"{axis}_{owner(name).replace('/', '_')}" for axis in axes)
    return (ROW_AXIS[rows], *tail)


def owner(name: str) -> str:
    """The encoder or teacher an array belongs to: ``relevance/xpool`` -> ``xpool``."""
    return name.split("/", 1)[1] if "/" in name else name


def family(name: str) -> str:
    """An array's family: ``relevance/xpool`` -> ``relevance``."""
    return name.split("/", 1)[0]


# ----- units of work -----------------------------------------------------------------------------
FRAMES_UNIT = "frames"  # video shards: every frame encoder, its mask and the keyframes
DENOISE_UNIT = "denoise"  # caption shards: the denoising ranks and scores (written whole)


def text_unit(encoder: str) -> str:
    """caption shards: a text encoder's sentence vectors (and word features)."""
    return f"text/{encoder}"


def inputs_unit(teacher: str) -> str:
    """Arrays stage one prepares for a teacher head beyond the encoders' (caption banks, user scores)."""
    return f"inputs/{teacher}"


def head_unit(teacher: str) -> str:
    """A teacher head's weights and record (one shard)."""
    return f"head/{teacher}"


def import_unit(name: str, rows: str) -> str:
    """Shards of an imported expert's, text's or teacher's arrays over one row kind."""
    return f"import/{name}/{rows}"


def relevance_unit(teacher: str) -> str:
    """caption shards: a teacher's relevance."""
    return f"relevance/{teacher}"


# ----- files kept with the arrays ----------------------------------------------------------------
IMPORT_MISSING_FILE = "import/missing.json"  # imported expert -> the ids of videos without it


def head_file(teacher: str, suffix: str) -> str:
    """``heads/<teacher>.safetensors`` (weights) or ``heads/<teacher>.json`` (config, widths, fit, metrics)."""
    return f"heads/{teacher}.{suffix}"
