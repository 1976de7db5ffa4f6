"""A trained student's vectors: one per video (its video head over the cached frames) and one per
caption (its text head over the cached sentence vector), read from a store in batches: what
search and ``teachcache encode`` index, and exactly what training scored."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from teachcache.cache import schema
from teachcache.cache.errors import ConfigError
from teachcache.cache.schema import CAPTIONS, VIDEOS
from teachcache.cache.store import Store
from teachcache.stages.student.config import TrainConfig
from teachcache.stages.student.model import Student


def student_widths(cfg: TrainConfig, store: Store) -> tuple[int, int]:
    """The (text, frame) widths of the arrays a student of ``cfg`` reads in ``store``."""
    dims = {a.name: a.tail for a in store.arrays}
    return dims[schema.text(cfg.text)][-1], dims[schema.frames(cfg.frames)][-1]


def check_indexable(cfg: TrainConfig) -> None:
    """Refuse a run whose student search and encode cannot index yet (one line)."""
    if cfg.student.kind != "clip4clip":
        raise ConfigError(f"this run's student is a {cfg.student.kind!r}: search and encode index clip4clip students (one vector per video) so far")


def load_student(cfg: TrainConfig, widths: tuple[int, int], weights: Path, device: torch.device) -> Student:
    """The run's student (its ``best.safetensors``) for the given (text, frame) widths, in eval mode."""
    check_indexable(cfg)
    with torch.random.fork_rng(devices=[]):
        student = Student(cfg.student, *widths)
    student.load_state_dict(load_file(weights))
    return student.to(device).eval()


@torch.inference_mode()
def embed_videos(student: Student, store: Store, frames: str, device: torch.device, batch: int = 4096) -> torch.Tensor:
    """[V, D] normalised video vectors of every video of the store (float32, on the CPU)."""
    parts, total = [], store.num_rows(VIDEOS)
    for lo in range(0, total, batch):
        rows = slice(lo, min(lo + batch, total))
        feats = torch.from_numpy(store.read(schema.frames(frames), rows)).to(device)
        mask = torch.from_numpy(store.read(schema.frame_mask(frames), rows)).to(device)
        parts.append(student.encode_video(feats, mask)[0].float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, student.text_projection.out_features)


@torch.inference_mode()
def embed_captions(student: Student, store: Store, text: str, device: torch.device, batch: int = 4096) -> torch.Tensor:
    """[T, D] normalised caption vectors of every caption of the store (float32, on the CPU)."""
    parts, total = [], store.num_rows(CAPTIONS)
    for lo in range(0, total, batch):
        sentences = torch.from_numpy(store.read(schema.text(text), slice(lo, min(lo + batch, total)))).to(device)
        parts.append(student.encode_text(sentences).float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, student.text_projection.out_features)
