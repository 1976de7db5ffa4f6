import math

import pytest
import torch
import torch.nn.functional as F

from teachcache.stages.common.losses import coarse_teaching, fine_teaching, infonce, max_margin_ranking, mckd, teachtext_distillation


def test_infonce_by_hand():
    sim = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    rows = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.exp(3) / (math.exp(1) + math.exp(3)))) / 2
    cols = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1))) - math.log(math.exp(3) / (1 + math.exp(3)))) / 2
    assert infonce(sim).item() == pytest.approx((rows + cols) / 2, rel=1e-6)


def test_coarse_pear_is_zero_for_an_identical_teacher_and_two_for_an_anti_correlated_one():
    s = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 1.0], [1.0, 0.0, 4.0]])
    assert coarse_teaching(s, [s.clone()]).item() == pytest.approx(0.0, abs=1e-6)
    two = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # row softmaxes of -two are the mirror images: pearson -1 in every row and column -> 2 + 2
    assert coarse_teaching(two, [-two]).item() == pytest.approx(4.0, abs=1e-5)


def test_coarse_ce_averages_over_all_entries_both_directions_and_teachers():
    s, t1, t2 = torch.randn(3, 3), torch.randn(3, 3), torch.randn(3, 3)

    def one(t):
        return (-F.softmax(t, 1) * F.log_softmax(s, 1)).mean() + (-F.softmax(t.T, 1) * F.log_softmax(s.T, 1)).mean()

    assert coarse_teaching(s, [t1, t2], "ce").item() == pytest.approx(((one(t1) + one(t2)) / 2).item(), rel=1e-6)
    assert coarse_teaching(s, [t1], "l1").item() == pytest.approx(F.smooth_l1_loss(s, t1).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown coarse"):
        coarse_teaching(s, [t1], "kl")


def test_fine_ce_teachclip_form_and_masked_form():
    a = torch.tensor([[1.0, 2.0, 0.0]])
    r = torch.tensor([[0.5, 0.1, 0.3]])
    y, log_p = F.softmax(r, -1), F.log_softmax(a, -1)
    assert fine_teaching(a, [r]).item() == pytest.approx((-(y * log_p)).mean().item(), rel=1e-6)  # mean over B*F
    mask = torch.tensor([[True, True, False]])
    y2, log_p2 = F.softmax(r[:, :2], -1), F.log_softmax(a[:, :2], -1)
    assert fine_teaching(a, [r], mask).item() == pytest.approx((-(y2 * log_p2)).sum().item() / 3, rel=1e-6)  # / (B*F)


def test_fine_temperature_sharpens_targets_and_alternatives_run():
    a = torch.zeros(2, 4)
    r = torch.tensor([[0.30, 0.25, 0.20, 0.10], [0.1, 0.2, 0.3, 0.4]])
    # a uniform student is far from a sharp target: lower temperature, larger pear/l1 loss
    assert fine_teaching(a, [r], method="l1", teacher_temperature=0.01) > fine_teaching(a, [r], method="l1")
    assert fine_teaching(r.clone(), [r], method="pear").item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        fine_teaching(a, [r[:, :3]])


def test_fine_masked_padding_never_gives_nan():
    a = torch.randn(2, 3, requires_grad=True)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    for method in ("ce", "pear", "l1"):
        loss = fine_teaching(a, [torch.randn(2, 3)], mask, method=method)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(a.grad).all()


def test_teachtext_is_smooth_l1_to_the_plain_teacher_mean():
    s = torch.zeros(2, 2)
    t1, t2 = torch.full((2, 2), 0.4), torch.full((2, 2), 3.6)  # mean 2.0: the linear part of SmoothL1
    assert teachtext_distillation(s, [t1, t2]).item() == pytest.approx(2.0 - 0.5)


def test_max_margin_ranking_by_hand():
    sim = torch.tensor([[0.5, 0.45], [0.0, 0.3]])
    m = 0.1
    t2v = [max(0, m - (0.5 - 0.45)), max(0, m - (0.3 - 0.0))]  # rows: own vs other video
    v2t = [max(0, m - (0.5 - 0.0)), max(0, m - (0.3 - 0.45))]  # columns: own vs other text
    assert max_margin_ranking(sim, m).item() == pytest.approx(sum(t2v + v2t) / 4)


def test_mckd_is_small_for_an_identical_well_separated_teacher():
    s = torch.eye(4) * 10
    assert mckd(s, s.clone(), margin=0.2).item() == pytest.approx(0.0, abs=1e-4)
    assert mckd(torch.zeros(4, 4), s).item() > 1.0


def test_mckd_relations_add_the_text_and_video_relation_terms():
    torch.manual_seed(0)
    s, t = torch.randn(5, 5), torch.randn(5, 5)

    def relation_kl(a, b):  # KL(softmax(cos(b rows)) || softmax(cos(a rows))), batch mean
        ra, rb = (torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(x, dim=-1).T for x in (a, b))
        return (rb.softmax(-1) * (rb.log_softmax(-1) - ra.log_softmax(-1))).sum(-1).mean()

    plain = mckd(s, t)
    with_relations = mckd(s, t, student_text=s, student_video=s.T, teacher_text=t, teacher_video=t.T)
    expected = plain + relation_kl(s, t) + relation_kl(s.T, t.T)
    assert with_relations.item() == pytest.approx(expected.item(), rel=1e-5)
    assert with_relations.item() > plain.item()
