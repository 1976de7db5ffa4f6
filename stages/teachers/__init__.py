"""Teachers: cached features plus a scoring head, one file per kind.

The registry below lists every kind; adding one is a file (a ``TeacherHead`` subclass) plus
its line here. Torch-free: configs and the command line read the names without loading a model.
"""

from __future__ import annotations

from typing import Any

from teachcache.cache.registry import Registry

TEACHERS: Registry[Any] = Registry("teacher kind")
TEACHERS.add("dual", "teachcache.stages.teachers.dual:DualTeacher", "a CLIP scored as a dual encoder (no weights)")
TEACHERS.add("xpool", "teachcache.stages.teachers.xpool:XPoolTeacher", "X-Pool's text-conditioned attention pooling")
TEACHERS.add("xclip", "teachcache.stages.teachers.xclip:XClipTeacher", "X-CLIP's four multi-grained logits (needs word features)")
TEACHERS.add("ts2net", "teachcache.stages.teachers.ts2net:TS2NetTeacher", "TS2-Net-like frame-softmax similarity")
TEACHERS.add("teachtext", "teachcache.stages.teachers.teachtext:TextTeacher", "a TeachText text teacher (one per text encoder)")
TEACHERS.add("ce", "teachcache.stages.teachers.ce:CETeacher", "Collaborative Experts' CE+ over several frame encoders (a multi-expert TeachText teacher)")
TEACHERS.add("captions", "teachcache.stages.teachers.captions:CaptionTeacher", "ours: similarity to the video's other captions")
TEACHERS.add("released", "teachcache.stages.teachers.released:ReleasedTeacher", "a released teacher file's embeddings (TeachText's), imported by teachcache import-features")
TEACHERS.add("blackbox", "teachcache.stages.teachers.blackbox:BlackBoxTeacher", "any model's scores from an .npz file")
