"""MSR-VTT in the layout CLIP4Clip, X-Pool and TeachCLIP read.

- ``MSRVTT_data.json``: ``videos`` (video_id, split in train/validate/test) and
  ``sentences`` (video_id, caption, sen_id), 20 captions per video.
- ``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv``: column ``video_id``, the training
  videos; every caption of each is a training sample.
- ``MSRVTT_JSFUSION_test.csv``: the 1k-A test, columns key, vid_key, video_id, sentence,
  one caption per video; separated by ``,`` as distributed (``;`` accepted too).
- split ``full``: the json's own split (6,513 train / 497 val / 2,990 test videos, all
  20 captions each).
Videos are ``<video_id>.mp4`` (other extensions are found too).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from teachcache.pipeline.datasets.common import AnnotatedVideo, AnnotationError, Annotations, expect, need_file, read_json, read_table

JSON_FILE = "MSRVTT_data.json"
TEST_1KA_FILE = "MSRVTT_JSFUSION_test.csv"
TRAIN_FILES = {"9k": "MSRVTT_train.9k.csv", "7k": "MSRVTT_train.7k.csv"}
JSON_SPLITS = {"train": "train", "validate": "val", "val": "val", "test": "test"}
VARIANTS = ("9k", "7k", "full")

if TYPE_CHECKING:
    from teachcache.pipeline.prepare import PrepareConfig


def _json_captions(root: Path) -> tuple[dict, dict[str, list[tuple[str, str]]]]:
    """(video entries by id, captions by video id) from MSRVTT_data.json."""
    path = need_file(root, JSON_FILE, "the MSR-VTT videos and their 20 captions each")
    data = read_json(path)
    expect(isinstance(data, dict) and "sentences" in data and "videos" in data, path, "expected an object with 'videos' and 'sentences'")
    by_video: dict[str, list[tuple[str, str]]] = {}
    for i, s in enumerate(data["sentences"]):
        expect(isinstance(s, dict) and "video_id" in s and "caption" in s, path, f"sentences[{i}] lacks video_id or caption")
        by_video.setdefault(s["video_id"], []).append((f"sen{s.get('sen_id', i)}", s["caption"]))
    videos = {}
    for i, v in enumerate(data["videos"]):
        expect(isinstance(v, dict) and "video_id" in v, path, f"videos[{i}] lacks video_id")
        videos[v["video_id"]] = v
    return videos, by_video


def _add_json_split(out: Annotations, ids: list[str], split: str, captions: dict[str, list[tuple[str, str]]], path: str) -> None:
    for vid in ids:
        if vid not in captions:
            raise AnnotationError(f"{path}: video {vid!r} has no caption in {JSON_FILE}")
        out.add_video(AnnotatedVideo(vid, split))
        for cid, text in captions[vid]:
            out.add_caption(cid, vid, text)


def _add_1ka_test(out: Annotations, root: Path) -> None:
    path = need_file(root, TEST_1KA_FILE, "the 1k-A test split")
    for row in read_table(path, ("key", "video_id", "sentence")):
        out.add_video(AnnotatedVideo(row["video_id"], "test"))
        out.add_caption(row["key"], row["video_id"], row["sentence"])


def read(root: Path, cfg: PrepareConfig) -> Annotations:
    """MSR-VTT annotations: ``cfg.variant`` 9k or 7k (training CSV + 1k-A test) or full."""
    variant, splits = cfg.variant or "9k", tuple(cfg.splits)
    if variant not in VARIANTS:
        raise AnnotationError(f"MSR-VTT split {variant!r} is unknown; choose one of {VARIANTS}")
    out = Annotations()
    if variant == "full":
        videos, captions = _json_captions(root)
        for split in splits:
            ids = [vid for vid, v in videos.items() if JSON_SPLITS.get(v.get("split", "")) == split]
            _add_json_split(out, ids, split, captions, JSON_FILE)
        return out
    if "train" in splits:
        train_path = need_file(root, TRAIN_FILES[variant], f"the {variant} training videos")
        _, captions = _json_captions(root)
        ids = [row["video_id"] for row in read_table(train_path, ("video_id",))]
        _add_json_split(out, ids, "train", captions, TRAIN_FILES[variant])
    if "test" in splits:
        _add_1ka_test(out, root)
    return out
