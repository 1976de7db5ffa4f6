"""Retrieval metrics with CLIP4Clip's semantics (docs/method.md section 5).

Ranks are 0-based positions of the ground truth in its row sorted descending, ties
counting the ground truth first (rank = number of strictly higher scores).
R@K = 100 * mean(rank < K), MdR = median(rank) + 1, MnR = mean(rank) + 1, plus R@50 and
the geometric mean of R@1, R@5, R@10.
"""

from __future__ import annotations

import numpy as np

RECALLS = (1, 5, 10, 50)


def _as_numpy(sim) -> np.ndarray:
    if hasattr(sim, "detach"):
        sim = sim.detach().float().cpu().numpy()
    return np.asarray(sim, dtype=np.float64)


def ranks_of(sim: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """0-based rank of column ``truth[i]`` in row i; ties put the ground truth first."""
    gt = sim[np.arange(len(sim)), truth][:, None]
    return (sim > gt).sum(axis=1)


def summarize(ranks: np.ndarray, lower_median: bool = False) -> dict[str, float]:
    """R@1/5/10/50, MdR, MnR and GeoMean from 0-based ranks. ``lower_median`` takes the
    lower of the two middle ranks (torch.median), else numpy's median."""
    out = {f"R{k}": 100.0 * float(np.mean(ranks < k)) for k in RECALLS}
    median = np.sort(ranks)[(len(ranks) - 1) // 2] if lower_median else np.median(ranks)
    out["MdR"] = float(median) + 1.0
    out["MnR"] = float(np.mean(ranks)) + 1.0
    out["GeoMean"] = float((out["R1"] * out["R5"] * out["R10"]) ** (1.0 / 3.0))
    return out


def group_max(sim: np.ndarray, video_of_caption: np.ndarray, n_videos: int) -> np.ndarray:
    """Video-to-text matrix [V, V]: entry (j, k) is the best score of any caption of video k
    for video j (CLIP4Clip's multi-sentence video-to-text)."""
    out = np.full((n_videos, n_videos), -np.inf)
    for k in range(n_videos):
        rows = np.flatnonzero(video_of_caption == k)
        if len(rows):
            out[:, k] = sim[rows].max(axis=0)
    return out


def retrieval_metrics(sim, video_of_caption=None) -> dict[str, dict[str, float]]:
    """Text-to-video and video-to-text metrics of a [n_captions, n_videos] similarity.

    ``video_of_caption=None``: square, ground truth on the diagonal (numpy median).
    Otherwise caption i belongs to video ``video_of_caption[i]``: text-to-video ranks each
    caption's own video (lower median); video-to-text ranks on the group-max matrix.
    """
    sim = _as_numpy(sim)
    if video_of_caption is None:
        if sim.shape[0] != sim.shape[1]:
            raise ValueError(f"a square similarity is needed without video_of_caption; got {sim.shape}")
        truth = np.arange(len(sim))
        return {"t2v": summarize(ranks_of(sim, truth)), "v2t": summarize(ranks_of(sim.T, truth))}
    video_of_caption = np.asarray(video_of_caption, dtype=np.int64)
    if len(video_of_caption) != sim.shape[0] or video_of_caption.min() < 0 or video_of_caption.max() >= sim.shape[1]:
        raise ValueError(f"video_of_caption must give, for each of {sim.shape[0]} captions, a column below {sim.shape[1]}")
    t2v = summarize(ranks_of(sim, video_of_caption), lower_median=True)
    v2t_sim = group_max(sim, video_of_caption, sim.shape[1])
    v2t = summarize(ranks_of(v2t_sim, np.arange(sim.shape[1])))
    return {"t2v": t2v, "v2t": v2t}
