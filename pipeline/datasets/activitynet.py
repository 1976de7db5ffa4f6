"""ActivityNet Captions, read as CLIP4Clip does: paragraph-to-video, evaluated on val_1.

- ``train.json``, ``val_1.json``: ``{"v_<youtube id>": {duration, timestamps, sentences}}``.
- ``train_ids.json``, ``val_ids.json`` (optional): lists of the ids to keep.
- A video's sentences are joined into one paragraph; the window is 0 to its duration
  rounded up. ``val_1`` is the test split; there is no val split (hold one out of train
  with ``prepare.val_videos``, or select on test as the papers do).
Video files are ``v_<id>.mp4`` or ``<id>.mp4`` (any extension).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from teachcache.pipeline.datasets.common import AnnotatedVideo, Annotations, expect, need_file, read_json

if TYPE_CHECKING:
    from teachcache.pipeline.prepare import PrepareConfig

SPLIT_FILES = {"train": ("train.json", "train_ids.json"), "test": ("val_1.json", "val_ids.json")}


def read(root: Path, cfg: PrepareConfig) -> Annotations:
    """ActivityNet annotations: train from train.json, test from val_1.json."""
    out = Annotations(paragraphs=True)
    for split in cfg.splits:
        if split not in SPLIT_FILES:
            continue
        data_name, ids_name = SPLIT_FILES[split]
        path = need_file(root, data_name, f"the {split} split's videos and sentences")
        data = read_json(path)
        expect(isinstance(data, dict), path, "expected an object of video id -> {duration, timestamps, sentences}")
        keep = read_json(root / ids_name) if (root / ids_name).is_file() else list(data)
        for vid in keep:
            if vid not in data:
                continue  # the id lists name a few videos without annotations; CLIP4Clip skips them too
            entry = data[vid]
            expect(isinstance(entry, dict) and isinstance(entry.get("sentences"), list), path, f"{vid}: lacks a 'sentences' list")
            duration = float(entry.get("duration") or 0.0)
            start, end = (0.0, float(math.ceil(duration))) if duration > 0 else (None, None)
            out.add_video(AnnotatedVideo(vid, split, start, end, names=(vid[2:],) if vid.startswith("v_") else ()))
            for i, sentence in enumerate(entry["sentences"]):
                out.add_caption(f"{vid}#{i}", vid, sentence)
    return out
