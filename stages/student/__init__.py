"""Stage two: the student (``model.py``), what it learns from (``objectives/``) and the
training recipe (``recipe.py``), all over the store alone.

Video heads are a kind; the registry below lists them (torch-free, for the config's help).
"""

from __future__ import annotations

from typing import Any

from teachcache.cache.registry import Registry

VIDEO_HEADS: Registry[Any] = Registry("video head")
VIDEO_HEADS.add("meanP", "teachcache.stages.student.model:MeanPooling", "CLIP4Clip's meanP: the masked mean of the normalised frames")
VIDEO_HEADS.add("seqTransf", "teachcache.stages.student.model:seq_transf", "CLIP4Clip's seqTransf: 4 transformer layers over the frames, then meanP")
