"""DiDeMo in the LocalizingMoments format, read as CLIP4Clip does: paragraph-to-video.

- ``train_data.json``, ``val_data.json``, ``test_data.json``: lists of moments
  ``{annotation_id, description, video, times, ...}``; ``video`` is the Flickr file name
  with its original extension (``..._dc1a90b8ef.mov``, sometimes ending in a bare ``.``).
- Every description of a video, in file order, is joined into one paragraph; the window
  is 0-31 s (CLIP4Clip overwrites the moments' own times with it).
Video files are found by that name, by it plus an extension (the downloader's
``<video>.mp4``) or by its stem.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from teachcache.pipeline.datasets.common import AnnotatedVideo, Annotations, expect, need_file, read_json

if TYPE_CHECKING:
    from teachcache.pipeline.prepare import PrepareConfig

SPLIT_FILES = {"train": "train_data.json", "val": "val_data.json", "test": "test_data.json"}
WINDOW = (0.0, 31.0)


def read(root: Path, cfg: PrepareConfig) -> Annotations:
    """DiDeMo annotations: one paragraph per video over the 0-31 s window."""
    out = Annotations(paragraphs=True)
    for split in cfg.splits:
        path = need_file(root, SPLIT_FILES[split], f"the {split} moments")
        moments = read_json(path)
        expect(isinstance(moments, list), path, "expected a list of moments")
        seen: set[str] = set()
        for i, m in enumerate(moments):
            expect(isinstance(m, dict) and "video" in m and "description" in m, path, f"moment {i} lacks 'video' or 'description'")
            vid = m["video"]
            if vid not in seen:
                seen.add(vid)
                out.add_video(AnnotatedVideo(vid, split, *WINDOW, names=(vid.rstrip("."),)))
            out.add_caption(f"{vid}#{m.get('annotation_id', i)}", vid, m["description"])
    return out
