"""Scoring a student on a split (each caption and video embedded once, then the student's
similarity of every pair; docs/method.md section 5), the split that selects the epoch, and the metrics table."""

from __future__ import annotations

from typing import Any

import torch

from teachcache.stages.common.data import SplitArrays
from teachcache.stages.common.metrics import retrieval_metrics
from teachcache.stages.student.base import RetrievalStudent, Side


def _rows(arrays: dict[str, torch.Tensor], names: list[str], start: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    return {n: arrays[n][start : start + size].to(device) for n in names}


def _concat(sides: list[Side]) -> Side:
    return tuple(torch.cat(parts) for parts in zip(*sides))


@torch.inference_mode()
def embed_split(student: RetrievalStudent, split: SplitArrays, device: torch.device, batch: int = 1024) -> tuple[Side, Side]:
    """The caption and video sides of every caption and video of a split (computed once each)."""
    student.eval()
    videos = _concat([student.encode_videos(_rows(split.video_arrays, student.video_arrays, i, batch, device))[0] for i in range(0, split.num_videos, batch)])
    captions = _concat([student.encode_captions(_rows(split.caption_arrays, student.caption_arrays, i, batch, device)) for i in range(0, split.num_captions, batch)])
    return captions, videos


def evaluate(student: RetrievalStudent, split: SplitArrays, device: torch.device, batch: int = 1024) -> dict[str, Any]:
    """Retrieval metrics of a split: each caption's similarity with every video."""
    captions, videos = embed_split(student, split, device, batch)
    with torch.inference_mode():
        similarity = student.similarity(captions, videos)
    return retrieval_metrics(similarity.cpu(), split.caption_video.numpy())


def left_out_warnings(splits: dict[str, SplitArrays]) -> list[str]:
    """What failed videos take away from each split, for a reader comparing with published numbers."""
    return [
        f"{split.left_out['videos']} videos of {name} failed in stage one and are left out with their {split.left_out['captions']} captions"
        + (": its metrics are over the rest" if name != "train" else "")
        for name, split in splits.items()
        if split.left_out.get("videos")
    ]


SMALL_SPLIT = 50  # videos below which a split's R@1 moves in steps too coarse to select an epoch by


def selection_warnings(split: SplitArrays, name: str) -> list[str]:
    """Warnings about the split that selects the epoch (too small to mean much)."""
    if split.num_videos >= SMALL_SPLIT:
        return []
    return [
        f"the {name} split that selects the epoch has {split.num_videos} videos: its t2v R@1 moves in steps of "
        f"{100 / max(1, split.num_captions):.0f} points and says little; hold more videos out (`teachcache prepare --val-videos N`)"
    ]


def metrics_table(result: dict[str, Any]) -> str:
    """A readable Markdown table of the best epoch's validation and test metrics."""
    keys = ("R1", "R5", "R10", "R50", "MdR", "MnR", "GeoMean")
    lines = ["| split | direction | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for split in ("val", "test"):
        for direction in ("t2v", "v2t"):
            m = result[split][direction]
            lines.append(f"| {split} | {direction} | " + " | ".join(f"{m[k]:.1f}" for k in keys) + " |")
    note = "v2t with several captions per video takes each video's best caption (optimistic at R@5/R@10)."
    selected = result.get("selected_on", "val")
    caveat = " (the test split: its numbers are optimistic)" if selected == "test" else ""
    warnings = "".join(f"\nwarning: {w}\n" for w in result.get("warnings", []))
    return f"best epoch {result['best_epoch']} (by {selected} t2v R@1{caveat}; the 'val' rows are that split)\n\n" + "\n".join(lines) + f"\n\n{note}\n" + warnings
