"""Stage two: the student (``model.py``), what it learns from (``objectives/``) and the
training recipe (``recipe.py``), all over the store alone.

Students and video heads are kinds; the registries below list them (torch-free, for the
config's help).
"""

from __future__ import annotations

from typing import Any

from teachcache.cache.registry import Registry

VIDEO_HEADS: Registry[Any] = Registry("video head")
VIDEO_HEADS.add("meanP", "teachcache.stages.student.model:MeanPooling", "CLIP4Clip's meanP: the masked mean of the normalised frames")
VIDEO_HEADS.add("seqTransf", "teachcache.stages.student.model:seq_transf", "CLIP4Clip's seqTransf: 4 transformer layers over the frames, then meanP")

STUDENTS: Registry[Any] = Registry("student kind")
STUDENTS.add("clip4clip", "teachcache.stages.student.model:Student", "CLIP4Clip's student over cached frames (meanP or seqTransf, optional AFA): one vector per video")
STUDENTS.add("ce", "teachcache.stages.student.ce:CEStudent", "Collaborative Experts' CE+ (TeachText's student) over video experts: one vector per expert per video")
