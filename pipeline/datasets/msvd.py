"""MSVD in the layout CLIP4Clip reads.

- ``train_list.txt``, ``val_list.txt``, ``test_list.txt``: one video id per line
  (``-4wsuPCjDBc_5_15``: YouTube id, start and end seconds).
- ``raw-captions.pkl``: a pickle of ``{video_id: [caption, ...]}`` where each caption is a
  list of tokens, joined with single spaces (plain strings are accepted too).
A pickle can run code when loaded; this one is read by ``cache.pickles``' plain unpickler,
which admits only dicts, lists, tuples, strings and numbers.
Videos are ``<video_id>.avi`` as distributed (any extension is found).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from teachcache.cache.pickles import PickleRefused, load_pickle
from teachcache.pipeline.datasets.common import AnnotatedVideo, AnnotationError, Annotations, expect, need_file, read_lines

if TYPE_CHECKING:
    from teachcache.pipeline.prepare import PrepareConfig

CAPTIONS_FILE = "raw-captions.pkl"
LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}


def _check_plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return True
    if depth > 4:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _check_plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_check_plain(v, depth + 1) for v in value)
    return False


def load_plain_pickle(path: Path) -> Any:
    """Load a pickle that holds only dicts, lists and strings; anything else is an AnnotationError."""
    try:
        value = load_pickle(path, "plain")
    except PickleRefused as exc:
        raise AnnotationError(f"{path}: not a plain pickle of captions ({exc.__cause__})") from exc
    expect(_check_plain(value), path, "holds something other than dicts, lists and strings; refused")
    return value


def _caption_text(caption: Any) -> str:
    return caption if isinstance(caption, str) else " ".join(caption)


def read(root: Path, cfg: PrepareConfig) -> Annotations:
    """MSVD annotations: the three list files and the captions pickle."""
    path = need_file(root, CAPTIONS_FILE, "the captions of every video")
    captions = load_plain_pickle(path)
    expect(isinstance(captions, dict), path, f"expected a dict of video id -> captions, got {type(captions).__name__}")
    out = Annotations()
    for split in cfg.splits:
        for vid in read_lines(need_file(root, LIST_FILES[split], f"the {split} videos")):
            if vid not in captions:
                raise AnnotationError(f"{LIST_FILES[split]}: video {vid!r} has no entry in {CAPTIONS_FILE}")
            out.add_video(AnnotatedVideo(vid, split))
            expect(isinstance(captions[vid], (list, tuple)), path, f"captions of {vid!r} are not a list")
            for i, caption in enumerate(captions[vid]):
                out.add_caption(f"{vid}#{i}", vid, _caption_text(caption))
    return out
