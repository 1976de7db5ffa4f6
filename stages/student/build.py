"""The one factory of students: ``train.student.kind`` over the arrays of a store."""

from __future__ import annotations

import torch

from teachcache.cache.store import Store
from teachcache.stages.student import STUDENTS
from teachcache.stages.student.base import RetrievalStudent
from teachcache.stages.student.config import TrainConfig


def build_student(cfg: TrainConfig, store: Store) -> RetrievalStudent:
    """A fresh student of ``cfg.student.kind`` sized for the store's arrays (seeded by the
    caller's generator). Refuses arrays the store lacks, naming them."""
    student: RetrievalStudent = STUDENTS.get(cfg.student.kind).for_train_config(cfg, store)
    return student


def check_student(cfg: TrainConfig, store: Store) -> None:
    """Build the student once, without touching the caller's random state: it refuses what does not fit."""
    with torch.random.fork_rng(devices=[]):
        build_student(cfg, store)
