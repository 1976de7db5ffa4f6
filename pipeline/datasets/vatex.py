"""VATEX: English captions, ten per video, several-captions-per-video protocol.

Two layouts are read:
- the official ``vatex_training_v1.0.json`` and ``vatex_validation_v1.0.json``: lists of
  ``{videoID, enCap: [10 English], chCap: [...]}``, ``videoID`` = ``<youtube id>_<start>_<end>``.
  Training is train. The validation file is split into val and test by ``val_list.txt``
  and ``test_list.txt`` (the HGR split of 1,500 + 1,500 that later papers use) when they
  are in ``prepare.variant`` (or the root); without them it is all test.
- the HGR / TS2-Net layout: ``ref_captions.json`` (``{video id: [sentence, ...]}``) with
  ``train_list.txt``, ``val_list.txt`` (optional) and ``test_list.txt``.
Videos are ``<videoID>.mp4`` (any extension).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from teachcache.pipeline.datasets.common import AnnotatedVideo, AnnotationError, Annotations, expect, need_file, read_json, read_lines

if TYPE_CHECKING:
    from teachcache.pipeline.prepare import PrepareConfig

TRAIN_FILE, VALIDATION_FILE = "vatex_training_v1.0.json", "vatex_validation_v1.0.json"
REF_FILE = "ref_captions.json"
LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}


def _official(path: Path) -> dict[str, list[str]]:
    data = read_json(path)
    expect(isinstance(data, list), path, "expected a list of {videoID, enCap, chCap}")
    out = {}
    for i, item in enumerate(data):
        expect(isinstance(item, dict) and "videoID" in item and isinstance(item.get("enCap"), list), path, f"entry {i} lacks videoID or an enCap list")
        out[item["videoID"]] = item["enCap"]
    return out


def _add(out: Annotations, vid: str, split: str, sentences: list[str]) -> None:
    out.add_video(AnnotatedVideo(vid, split))
    for i, sentence in enumerate(sentences):
        out.add_caption(f"{vid}#{i}", vid, sentence)


def _read_ref_layout(root: Path, cfg: PrepareConfig) -> Annotations:
    path = root / REF_FILE
    captions = read_json(path)
    expect(isinstance(captions, dict), path, "expected an object of video id -> sentences")
    out = Annotations()
    for split in cfg.splits:
        list_path = root / LIST_FILES[split]
        if not list_path.is_file():
            if split == "val":
                continue
            need_file(root, LIST_FILES[split], f"the {split} videos")
        for vid in read_lines(list_path):
            if vid not in captions:
                raise AnnotationError(f"{LIST_FILES[split]}: video {vid!r} has no entry in {REF_FILE}")
            _add(out, vid, split, captions[vid])
    return out


def read(root: Path, cfg: PrepareConfig) -> Annotations:
    """VATEX annotations in the official or the HGR layout."""
    if (root / REF_FILE).is_file():
        return _read_ref_layout(root, cfg)
    out = Annotations()
    if "train" in cfg.splits:
        for vid, sentences in _official(need_file(root, TRAIN_FILE, "the training videos and captions")).items():
            _add(out, vid, "train", sentences)
    if not {"val", "test"} & set(cfg.splits):
        return out
    validation = _official(need_file(root, VALIDATION_FILE, "the val and test videos and captions"))
    lists = Path(cfg.variant) if cfg.variant else root
    if (lists / LIST_FILES["test"]).is_file():
        for split in ("val", "test"):
            if split in cfg.splits and (lists / LIST_FILES[split]).is_file():
                for vid in read_lines(lists / LIST_FILES[split]):
                    if vid not in validation:
                        raise AnnotationError(f"{LIST_FILES[split]}: video {vid!r} is not in {VALIDATION_FILE}")
                    _add(out, vid, split, validation[vid])
    elif "test" in cfg.splits:
        for vid, sentences in validation.items():
            _add(out, vid, "test", sentences)
    return out
