"""Teachers over cached features: fitting a head on the training split (symmetric InfoNCE,
seeded, best epoch on validation), scoring whole splits, and the ensemble's rank of each
caption's own video (TeachText's denoising, docs/method.md section 6)."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from teachcache.cache.errors import NumericalError
from teachcache.cache.store import Store
from teachcache.stages.common.data import RamLoader, SplitArrays, load_split
from teachcache.stages.common.losses import infonce
from teachcache.stages.common.metrics import retrieval_metrics
from teachcache.stages.teachers.base import TeacherHead

PAIRS_PER_CALL = 1 << 16  # caption-video pairs scored per head call when scoring a split


def split_for(store: Store, split: str, heads: list[TeacherHead]) -> SplitArrays:
    """A split with every array the given heads read."""
    return load_split(store, split, [a for h in heads for a in h.inputs()])


@torch.no_grad()
def score_matrix(head: TeacherHead, split: SplitArrays, device: torch.device, captions: slice | None = None) -> torch.Tensor:
    """Teacher logits of the split's captions (or a slice of them) against all its videos, [T, V] on the CPU."""
    was_training = head.training
    head.eval()
    texts = {k: v[captions] if captions is not None else v for k, v in split.caption_arrays.items()}
    n_text = next(iter(texts.values())).shape[0]
    video_step = max(1, min(split.num_videos, 1024))
    text_step = max(1, PAIRS_PER_CALL // video_step)
    out = torch.empty(n_text, split.num_videos)
    for v0 in range(0, split.num_videos, video_step):
        prepared = head.prepare_video({k: v[v0 : v0 + video_step].to(device) for k, v in split.video_arrays.items()})
        for t0 in range(0, n_text, text_step):
            text = {k: v[t0 : t0 + text_step].to(device) for k, v in texts.items()}
            out[t0 : t0 + text_step, v0 : v0 + video_step] = head.score(text, prepared).float().cpu()
    head.train(was_training)
    return out


def teacher_metrics(head: TeacherHead, split: SplitArrays, device: torch.device) -> dict:
    """The head's own retrieval metrics on a split (t2v, v2t; docs/method.md section 5)."""
    return retrieval_metrics(score_matrix(head, split, device), split.caption_video.numpy())


def fit_head(head: TeacherHead, train: SplitArrays, val: SplitArrays | None, device: torch.device, progress: bool = True) -> dict:
    """Fit a head with symmetric InfoNCE on the cached training split; keep the epoch with the
    best validation t2v R@1 (the last epoch when there is no validation split). Returns the record."""
    cfg = head.config
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    head.to(device).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.fit_lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    loader = RamLoader(train, cfg.fit_batch_size)
    best_state: dict[str, torch.Tensor] = copy.deepcopy(head.state_dict())
    best: dict[str, float] = {"epoch": 0, "val_t2v_R1": -1.0}
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    for epoch in range(1, cfg.fit_epochs + 1):
        head.train()
        total, steps = 0.0, 0
        for batch in tqdm(loader.epoch(generator), total=len(loader), desc=f"fit {cfg.name} {epoch}/{cfg.fit_epochs}", leave=False, disable=not progress):
            arrays = {k: v.to(device) for k, v in batch.arrays.items()}
            loss = infonce(head.logits(arrays, arrays))
            if not torch.isfinite(loss):
                raise NumericalError(f"teacher {cfg.name!r}: non-finite fitting loss at epoch {epoch}; lower fit_lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            head.clamp_scale()
            total, steps = total + loss.item(), steps + 1
        r1 = teacher_metrics(head, val, device)["t2v"]["R1"] if val is not None else float(epoch)
        history.append({"epoch": epoch, "loss": total / max(1, steps), "val_t2v_R1": r1 if val is not None else None})
        if r1 > best["val_t2v_R1"]:
            best, best_state = {"epoch": epoch, "val_t2v_R1": r1}, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    head.eval()
    return {"fitted": True, "best_epoch": best["epoch"], "history": history, "fit_seconds": time.perf_counter() - start, "selected_on": "val" if val is not None else "last epoch"}


@torch.no_grad()
def ensemble_ranks(heads: list[TeacherHead], split: SplitArrays, device: torch.device, step: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per caption, the 0-based rank of its own video among the split's videos under the
    plain mean of the heads' logits (ties: the own video first), and that mean score."""
    ranks = np.zeros(split.num_captions, dtype=np.int32)
    scores = np.zeros(split.num_captions, dtype=np.float32)
    for start in range(0, split.num_captions, step):
        part = slice(start, start + step)
        mean = torch.stack([score_matrix(h, split, device, part) for h in heads]).mean(0)
        own_video = split.caption_video[part]
        own = mean[torch.arange(len(own_video)), own_video]
        ranks[part] = (mean > own[:, None]).sum(1).numpy()
        scores[part] = own.numpy()
    return ranks, scores
