import numpy as np
import pytest
import torch

from teachcache.stages.common.metrics import retrieval_metrics


def test_square_ranks_recalls_and_medians_by_hand():
    # ranks of the diagonal: row0 -> 0, row1 -> 2 (0.9 and 0.8 beat 0.5), row2 -> 1, row3 -> 0
    sim = np.array(
        [
            [0.9, 0.1, 0.2, 0.0],
            [0.9, 0.5, 0.8, 0.1],
            [0.1, 0.7, 0.6, 0.0],
            [0.0, 0.1, 0.2, 0.3],
        ]
    )
    t2v = retrieval_metrics(sim)["t2v"]
    assert t2v["R1"] == 50.0 and t2v["R5"] == 100.0 and t2v["R10"] == 100.0 and t2v["R50"] == 100.0
    assert t2v["MdR"] == np.median([0, 2, 1, 0]) + 1 == 1.5  # numpy median on the square protocol
    assert t2v["MnR"] == pytest.approx(np.mean([0, 2, 1, 0]) + 1)
    assert t2v["GeoMean"] == pytest.approx((50.0 * 100 * 100) ** (1 / 3))
    # video-to-text is the same on the transpose: column 0's own 0.9 ties row 1's 0.9 (the
    # ground truth counts first: rank 0), columns 1 and 2 rank 1, column 3 ranks 0
    v2t = retrieval_metrics(sim)["v2t"]
    assert v2t["R1"] == 50.0 and v2t["MnR"] == pytest.approx(1.5)


def test_ties_count_the_ground_truth_first():
    sim = np.ones((3, 3))
    m = retrieval_metrics(sim)
    assert m["t2v"]["R1"] == 100.0 and m["v2t"]["MdR"] == 1.0


def test_several_captions_per_video_lower_median_and_group_max():
    # 2 videos; captions 0, 1 of video 0; captions 2, 3 of video 1
    sim = np.array(
        [
            [0.9, 0.1],  # caption 0 ranks its video 0
            [0.2, 0.8],  # caption 1 ranks video 0 second
            [0.3, 0.7],  # caption 2 ranks video 1 first
            [0.6, 0.5],  # caption 3 ranks video 1 second
        ]
    )
    m = retrieval_metrics(sim, video_of_caption=[0, 0, 1, 1])
    assert m["t2v"]["R1"] == 50.0
    assert m["t2v"]["MdR"] == 1.0  # ranks [0, 1, 0, 1]: lower median 0 (+1), numpy's would be 1.5
    # video 0: best caption of video 0 scores 0.9, of video 1 scores 0.6 -> rank 0
    # video 1: best of video 0 scores 0.8, of video 1 scores 0.7 -> rank 1
    assert m["v2t"]["R1"] == 50.0 and m["v2t"]["MnR"] == 1.5


def test_torch_input_and_bad_shapes():
    assert retrieval_metrics(torch.eye(3))["t2v"]["R1"] == 100.0
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="video_of_caption"):
        retrieval_metrics(np.zeros((2, 3)), video_of_caption=[0, 3])


def test_matches_a_sort_based_rank_on_random_scores():
    # without ties, the rank is the position of the ground truth in the row sorted descending
    sim = np.random.default_rng(0).standard_normal((50, 50))
    positions = np.array([np.flatnonzero(np.argsort(-row) == i)[0] for i, row in enumerate(sim)])
    t2v = retrieval_metrics(sim)["t2v"]
    assert t2v["R1"] == 100.0 * np.mean(positions == 0)
    assert t2v["R10"] == 100.0 * np.mean(positions < 10)
    assert t2v["MdR"] == np.median(positions) + 1 and t2v["MnR"] == np.mean(positions) + 1
    # multi-caption t2v: lower median, as torch.median
    truth = np.random.default_rng(1).integers(0, 50, 50)
    ranks = np.array([np.flatnonzero(np.argsort(-row) == truth[i])[0] for i, row in enumerate(sim)])
    assert retrieval_metrics(sim, truth)["t2v"]["MdR"] == torch.median(torch.from_numpy(ranks)).item() + 1
