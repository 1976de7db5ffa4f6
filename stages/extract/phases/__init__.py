"""Stage one's phases, in the order they run: each writes its arrays shard by shard and marks
them done, so a re-run skips finished work."""

from __future__ import annotations

from teachcache.stages.extract.phases.base import Phase, PhaseContext, PhaseResult
from teachcache.stages.extract.phases.denoise import DenoisePhase
from teachcache.stages.extract.phases.frames import FramesPhase
from teachcache.stages.extract.phases.teachers import TeacherPhase
from teachcache.stages.extract.phases.text import TextPhase

PHASES: tuple[type[Phase], ...] = (TextPhase, FramesPhase, TeacherPhase, DenoisePhase)

__all__ = ["PHASES", "Phase", "PhaseContext", "PhaseResult"]
