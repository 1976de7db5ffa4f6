"""Scoring a student on a split (one vector per video, one per caption, dot products;
docs/method.md section 5), the split that selects the epoch, and the metrics table."""

from __future__ import annotations

from typing import Any

import torch

from teachcache.stages.common.data import SplitArrays
from teachcache.stages.common.metrics import retrieval_metrics
from teachcache.stages.student.model import Student


@torch.inference_mode()
def evaluate(student: Student, split: SplitArrays, arrays: tuple[str, str, str], device: torch.device, batch: int = 1024) -> dict[str, Any]:
    """Retrieval metrics of a split. ``arrays`` names the (text, frames, mask) arrays the student reads."""
    student.eval()
    text_array, frames_array, mask_array = arrays
    frames, mask, text = split.video_arrays[frames_array], split.video_arrays[mask_array], split.caption_arrays[text_array]
    videos = torch.cat([student.encode_video(frames[i : i + batch].to(device), mask[i : i + batch].to(device))[0] for i in range(0, split.num_videos, batch)])
    texts = torch.cat([student.encode_text(text[i : i + batch].to(device)) for i in range(0, split.num_captions, batch)])
    return retrieval_metrics((texts @ videos.T).cpu(), split.caption_video.numpy())


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
