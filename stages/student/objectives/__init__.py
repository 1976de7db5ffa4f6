"""What a student learns from, one file per objective (an ``Objective`` of ``base.py``).

Adding an objective is its file plus its line below. Torch-free: the config lists them.
"""

from __future__ import annotations

from typing import Any

from teachcache.cache.registry import Registry

OBJECTIVES: Registry[Any] = Registry("objective")
OBJECTIVES.add("infonce", "teachcache.stages.student.objectives.infonce:InfoNCE", "symmetric InfoNCE alone (no teacher)")
OBJECTIVES.add("teachclip", "teachcache.stages.student.objectives.teachclip:TeachCLIP", "TeachCLIP: InfoNCE + coarse (batch) + fine (frame) teaching")
OBJECTIVES.add("teachtext", "teachcache.stages.student.objectives.teachtext:TeachText", "TeachText: max-margin ranking + SmoothL1 to the mean teacher")
OBJECTIVES.add("mckd", "teachcache.stages.student.objectives.mckd:MCKD", "MCKD, our reading: relation KL + hardest-negative hinge")
