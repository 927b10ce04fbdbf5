"""Hand-computed checks of spinbayes.golden.metrics (see docs/METRICS.md)."""

import math
import re

import numpy as np
import pytest
import torch

from spinbayes.golden.metrics import (
    OodResult,
    OperatingPoint,
    UncertaintyRatios,
    accuracy,
    choose_ood_threshold,
    expected_entropy,
    mutual_information,
    normalized_entropy,
    ood_detection,
    ood_rejected,
    ood_score,
    pass_variance,
    predictive_entropy,
    uncertainty_ratios,
)

LN2 = math.log(2.0)


def _h(*p):
    return -sum(x * math.log(x) for x in p if x > 0)


# Two inputs, T = 2 passes, C = 2 classes.
# Input 0: passes (1, 0) and (0, 1) -> mean (0.5, 0.5).
#   predictive H = ln 2; each pass is one-hot so expected H = 0; MI = ln 2.
#   variance over passes: class 0 {1, 0} -> mean 0.5, var 0.25; class 1 likewise -> sum 0.5.
# Input 1: passes (0.8, 0.2) and (0.6, 0.4) -> mean (0.7, 0.3).
#   predictive H = H(0.7, 0.3) = 0.610864; expected = (H(.8,.2) + H(.6,.4)) / 2
#   = (0.500402 + 0.673012) / 2 = 0.586707; MI = 0.024157.
#   variance: class 0 {0.8, 0.6} -> var 0.01; class 1 {0.2, 0.4} -> var 0.01 -> sum 0.02.
HAND = [[[1.0, 0.0], [0.0, 1.0]], [[0.8, 0.2], [0.6, 0.4]]]


def test_predictive_entropy_hand():
    got = predictive_entropy(np.array(HAND))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, [LN2, _h(0.7, 0.3)])
    np.testing.assert_allclose(got[1], 0.610864, atol=1e-6)


def test_expected_entropy_hand():
    got = expected_entropy(np.array(HAND))
    np.testing.assert_allclose(got, [0.0, (_h(0.8, 0.2) + _h(0.6, 0.4)) / 2])
    np.testing.assert_allclose(got[1], 0.586707, atol=1e-6)


def test_mutual_information_hand():
    got = mutual_information(np.array(HAND))
    np.testing.assert_allclose(got, [LN2, 0.024157], atol=1e-6)


def test_mutual_information_clipped_at_zero():
    # identical passes: MI is 0 up to rounding and must never come out negative
    p = np.tile(np.array([0.3, 0.3, 0.4])[None, None], (4, 7, 1)) + 0.0
    assert (mutual_information(p) >= 0).all()
    np.testing.assert_allclose(mutual_information(p), 0.0, atol=1e-15)


def test_pass_variance_hand():
    np.testing.assert_allclose(pass_variance(np.array(HAND)), [0.5, 0.02])


def test_normalized_entropy_hand():
    np.testing.assert_allclose(normalized_entropy(np.array(HAND)), [1.0, _h(0.7, 0.3) / LN2])
    uniform = np.full((1, 3, 10), 0.1)
    np.testing.assert_allclose(normalized_entropy(uniform), [1.0])
    np.testing.assert_allclose(normalized_entropy(np.eye(10)[None, :1]), [0.0])


def test_normalized_entropy_needs_two_classes():
    with pytest.raises(ValueError, match=r"normalized_entropy needs at least 2 classes, got C=1"):
        normalized_entropy(np.ones((2, 3, 1)))


def test_torch_and_numpy_agree():
    t = torch.tensor(HAND, dtype=torch.float64)
    for f in (predictive_entropy, expected_entropy, mutual_information, pass_variance,
              normalized_entropy, ood_score):
        out = f(t)
        assert isinstance(out, np.ndarray)
        np.testing.assert_allclose(out, f(np.array(HAND)))


@pytest.mark.parametrize("f", [predictive_entropy, expected_entropy, mutual_information,
                               pass_variance, normalized_entropy, ood_score, ood_rejected])
def test_shape_and_nan_errors(f):
    with pytest.raises(ValueError, match=r"probs must have shape \(B, T, C\), got \(2, 3\)"):
        f(np.zeros((2, 3)))
    bad = np.array(HAND)
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"probs contains NaN"):
        f(bad)
    with pytest.raises(ValueError, match=r"probs needs at least one pass and one class"):
        f(np.zeros((2, 0, 3)))


# --- R_cc, R_iu, UA ---------------------------------------------------------------------------

def test_uncertainty_ratios_hand_10():
    # 6 correct: 0.05 0.10 0.15 0.20 (= threshold: certain, the rule is strict >) -> 4 cc;
    #            0.25 0.60 -> 2 cu.
    # 4 incorrect: 0.10 -> 1 ic; 0.30 0.70 0.95 -> 3 iu.
    # R_cc = 4 / (4 + 1) = 80 %; R_iu = 3 / (3 + 1) = 75 %; UA = (4 + 3) / 10 = 70 %.
    correct = np.array([True] * 6 + [False] * 4)
    unc = np.array([0.05, 0.10, 0.15, 0.20, 0.25, 0.60, 0.10, 0.30, 0.70, 0.95])
    r = uncertainty_ratios(correct, unc, 0.2)
    assert r == UncertaintyRatios(n_cc=4, n_cu=2, n_ic=1, n_iu=3, R_cc=80.0, R_iu=75.0,
                                  UA=70.0, threshold=0.2)
    assert r == uncertainty_ratios(torch.tensor(correct), torch.tensor(unc), 0.2)
    assert r == uncertainty_ratios(correct.astype(int), unc, 0.2)


def test_uncertainty_ratios_threshold_in_input_precision():
    # float32 0.2 equals float32(threshold) and so is certain, as with float64 inputs
    r = uncertainty_ratios([True], np.array([0.2], dtype=np.float32), 0.2)
    assert (r.n_cc, r.n_cu) == (1, 0)


def test_uncertainty_ratios_empty_denominators_are_nan():
    r = uncertainty_ratios([True, True], [0.9, 0.1], 0.5)  # nothing incorrect
    assert math.isnan(r.R_iu) and r.R_cc == 100.0 and r.UA == 50.0
    r = uncertainty_ratios([True, False], [0.9, 0.8], 0.5)  # nothing certain
    assert math.isnan(r.R_cc) and r.R_iu == 100.0
    r = uncertainty_ratios([], np.zeros(0), 0.5)
    assert (r.n_cc, r.n_cu, r.n_ic, r.n_iu) == (0, 0, 0, 0)
    assert math.isnan(r.R_cc) and math.isnan(r.R_iu) and math.isnan(r.UA)


def test_uncertainty_ratios_errors():
    with pytest.raises(ValueError, match=r"correct and uncertainty must have the same length, "
                                         r"got 3 and 2"):
        uncertainty_ratios([True, False, True], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match=r"correct and uncertainty must be 1-D, got shapes "
                                         r"\(1, 2\) and \(2,\)"):
        uncertainty_ratios([[True, False]], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match=r"uncertainty contains NaN"):
        uncertainty_ratios([True, False], [0.1, np.nan], 0.5)
    with pytest.raises(ValueError, match=r"correct must hold booleans \(or 0/1\)"):
        uncertainty_ratios([2, 0], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match=r"threshold must be finite, got nan"):
        uncertainty_ratios([True], [0.1], float("nan"))


# SpinBayes Table 1, MNIST / LeNet-5 / proposed: error 0.77, R_iu 96.81, R_cc 99.96, UA 85.10.
# Counts: N = 12208 inputs, 94 incorrect (91 uncertain, 3 certain), 10298 correct-certain,
# 1816 correct-uncertain.
#   error = 94 / 12208          = 0.770 %   -> 0.77
#   R_iu  = 91 / (91 + 3)       = 96.809 %  -> 96.81
#   UA    = (10298 + 91)/12208  = 85.100 %  -> 85.10
#   R_cc  = 10298 / (10298 + 3) = 99.971 %  -> 99.97 (table 99.96: 0.01 pp, see next test)
# whereas the other reading P(certain | correct) = 10298 / (10298 + 1816) = 85.01 %.
PAPER_COUNTS = {"n_cc": 10298, "n_cu": 1816, "n_ic": 3, "n_iu": 91}


def test_spinbayes_mnist_row_consistency():
    c = PAPER_COUNTS
    correct = np.repeat([True, True, False, False], [c["n_cc"], c["n_cu"], c["n_ic"], c["n_iu"]])
    unc = np.repeat([0.0, 1.0, 0.0, 1.0], [c["n_cc"], c["n_cu"], c["n_ic"], c["n_iu"]])
    r = uncertainty_ratios(correct, unc, 0.5)
    assert (r.n_cc, r.n_cu, r.n_ic, r.n_iu) == tuple(c.values())
    assert round(100 * (~correct).mean(), 2) == 0.77
    assert round(r.R_iu, 2) == 96.81
    assert round(r.UA, 2) == 85.10
    assert abs(r.R_cc - 99.96) < 0.015
    p_certain_given_correct = 100 * r.n_cc / (r.n_cc + r.n_cu)
    assert round(p_certain_given_correct, 2) == 85.01  # ~15 pp away from the table's 99.96


def test_spinbayes_mnist_row_bound():
    # No single count table rounds to all four entries: even at the rounding extremes that
    # maximise n_ic / (n_cc + n_ic) (error 0.775, R_iu 96.805, UA 85.095), R_cc >= 99.9706,
    # so the table's 99.96 is off by >= 0.006 pp (e.g. averaging ratios over runs).
    err, riu, ua = 0.00775, 0.96805, 0.85095
    n_ic, n_iu = err * (1 - riu), err * riu
    n_cc = ua - n_iu
    assert 99.9705 < 100 * n_cc / (n_cc + n_ic) < 99.9710


# --- OoD rule -----------------------------------------------------------------------------------

def _passes(p_top, top=0):
    """(T, 2) passes whose class ``top`` has the probabilities ``p_top``."""
    p = np.asarray(p_top, dtype=float)
    out = np.stack([p, 1 - p], axis=1)
    return out if top == 0 else out[:, ::-1]


def test_ood_rejected_t10_all_passes_below():
    x = np.stack([
        _passes([0.85] * 10),          # all 10 passes < 0.9 -> rejected
        _passes([0.6] * 9 + [0.95]),   # one pass >= 0.9 -> kept
        _passes([0.6] * 9 + [0.9]),    # max exactly 0.9 -> kept (rule is strict <)
        _passes([0.2] * 10, top=0),    # y_hat = class 1 with 0.8 -> rejected
        _passes([0.05] * 10),          # y_hat = class 1 with 0.95 -> kept
    ])
    np.testing.assert_array_equal(ood_rejected(x), [True, False, False, True, False])
    # float32 tensors: 0.9 in float32 equals float32(threshold), still not rejected
    np.testing.assert_array_equal(ood_rejected(torch.tensor(x, dtype=torch.float32)),
                                  [True, False, False, True, False])


def test_ood_rejected_quantile_higher():
    # T = 4 sorted p_t[y_hat] = 0.55 0.6 0.7 0.95; 'higher' at q = 0.5 -> position 1.5 -> 0.7
    x = _passes([0.6, 0.95, 0.55, 0.7])[None]
    assert ood_rejected(x, quantile=0.5, threshold=0.75).tolist() == [True]
    assert ood_rejected(x, quantile=0.5, threshold=0.7).tolist() == [False]
    assert ood_rejected(x, quantile=0.0, threshold=0.56).tolist() == [True]  # min = 0.55
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=(50, 7))
    for q in (0.0, 0.3, 0.5, 0.99, 1.0):
        y_hat = p.mean(1).argmax(1)
        s = np.quantile(p[np.arange(50), :, y_hat], q, axis=1, method="higher")
        np.testing.assert_array_equal(ood_rejected(p, q, 0.6), s < 0.6)


def test_ood_rejected_argument_errors():
    x = _passes([0.5] * 3)[None]
    with pytest.raises(ValueError, match=r"quantile must lie in \[0, 1\], got 1.5"):
        ood_rejected(x, quantile=1.5)
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\], got 0"):
        ood_rejected(x, threshold=0)
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\], got 1.1"):
        ood_rejected(x, threshold=1.1)
    assert ood_rejected(np.zeros((0, 10, 2))).shape == (0,)


def test_ood_detection_separable():
    probs_in = np.tile([0.99, 0.01], (20, 10, 1))   # H ~ 0.056, max 0.99 -> kept
    probs_out = np.full((30, 10, 2), 0.5)           # H = ln 2, max 0.5 -> rejected
    r = ood_detection(probs_in, probs_out)
    assert r == OodResult(detection=100.0, id_rejection=0.0, auroc=100.0, fpr_at_95_tpr=0.0)
    assert all(type(v) is float for k, v in vars(r).items() if not k.startswith("score_"))
    assert r.score_detection == {} and r.score_id_rejection == {}


def test_ood_detection_identical_distributions():
    rng = np.random.default_rng(1)
    same = rng.dirichlet(np.ones(10), size=(50, 10))
    assert ood_detection(same, same).auroc == 50.0   # identical scores: all ties
    r = ood_detection(rng.dirichlet(np.ones(10), size=(2000, 10)),
                      rng.dirichlet(np.ones(10), size=(2000, 10)))
    assert 45.0 < r.auroc < 55.0
    assert abs(r.detection - r.id_rejection) < 5.0


def test_ood_detection_hand_auroc_and_fpr95():
    # T = 1, C = 2; entropy decreases in the top probability a (a >= 0.5).
    # OoD a: 0.50 0.55 0.60 0.90; in-dist a: 0.52 0.70 0.95 0.99.
    # Descending score: out.50 in.52 out.55 out.60 in.70 out.90 in.95 in.99.
    # TPR >= 0.95 needs all 4 OoD (3/4 = 0.75), i.e. cutting below out.90, which passes in.52
    # and in.70: FPR = 2/4 = 50 %. AUROC: (out, in) pairs ranked right = 4 + 3 + 3 + 2 = 12 of
    # 16 = 75 %. Rule (T=1, q=0.99 -> the single pass): rejected iff a < 0.9 -> OoD 3/4 = 75 %,
    # in-dist 2/4 = 50 %.
    out = _passes([0.50, 0.55, 0.60, 0.90])[:, None]
    inn = _passes([0.52, 0.70, 0.95, 0.99])[:, None]
    r = ood_detection(inn, out)
    assert r.auroc == pytest.approx(75.0)
    assert r.fpr_at_95_tpr == pytest.approx(50.0)
    assert (r.detection, r.id_rejection) == (75.0, 50.0)


def test_ood_detection_errors():
    ok = np.full((2, 3, 2), 0.5)
    with pytest.raises(ValueError, match=r"probs_in and probs_out must have the same number of "
                                         r"classes, got 2 and 3"):
        ood_detection(ok, np.full((2, 3, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"probs_in and probs_out must each hold at least one"):
        ood_detection(ok, np.zeros((0, 3, 2)))
    with pytest.raises(ValueError, match=r"probs_out must have shape \(B, T, C\), got \(2, 2\)"):
        ood_detection(ok, np.zeros((2, 2)))
    bad = ok.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"probs_in contains NaN"):
        ood_detection(bad, ok)


def test_ood_score_is_predictive_entropy():
    np.testing.assert_allclose(ood_score(np.array(HAND)), predictive_entropy(np.array(HAND)))


# --- accuracy -----------------------------------------------------------------------------------

def test_accuracy_uses_argmax_of_mean():
    # input 0: passes (.9,.1) (.4,.6) (.4,.6): mean (.567,.433) -> class 0, though 2 of 3 passes
    # vote class 1. Inputs 1..3 predict 1, 0, 1. Labels 0 1 1 1 -> 3 of 4 correct = 75 %.
    x = np.array([
        [[0.9, 0.1], [0.4, 0.6], [0.4, 0.6]],
        [[0.2, 0.8]] * 3,
        [[0.7, 0.3]] * 3,
        [[0.1, 0.9]] * 3,
    ])
    assert accuracy(x, np.array([0, 1, 1, 1])) == 75.0
    assert accuracy(torch.tensor(x), torch.tensor([0, 1, 0, 1])) == 100.0
    assert type(accuracy(x, [0, 1, 0, 1])) is float
    assert math.isnan(accuracy(np.zeros((0, 3, 2)), np.zeros(0, dtype=int)))


def test_accuracy_errors():
    x = np.full((4, 2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"labels must have shape \(B,\) = \(4,\), got \(3,\)"):
        accuracy(x, [0, 1, 2])
    with pytest.raises(ValueError, match=r"labels must be integers, got dtype float64"):
        accuracy(x, [0.0, 1.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"probs must have shape \(B, T, C\), got \(4, 3\)"):
        accuracy(np.zeros((4, 3)), [0, 1, 2, 1])


def _two_pass(scores):
    """Inputs of T = 2 passes, C = 2 classes whose rule score (the higher pass probability of
    the predicted class 0) is the given value; the other pass gives class 0 a bit less."""
    return np.array([[[s, 1 - s], [s - 0.01, 1.01 - s]] for s in scores], dtype=np.float32)


def test_choose_ood_threshold_hand_case():
    # scores 0.55 .. 1.00 of ten in-distribution inputs; a 20 % target may reject k = 2 of
    # them, so the threshold is the third-smallest score, 0.65: rejects 0.55 and 0.60.
    scores = [0.85, 0.55, 0.9, 0.6, 0.65, 0.7, 0.75, 0.8, 0.95, 1.0]
    op = choose_ood_threshold(_two_pass(scores), 0.99, 0.2)
    assert op == OperatingPoint(target=20.0, threshold=float(np.float32(0.65)), rejection=20.0,
                                images=10)
    assert choose_ood_threshold(_two_pass(scores), 0.99, 0.29).threshold == op.threshold
    # 5 % of ten inputs is none: the lowest score, which rejects nothing
    low = choose_ood_threshold(_two_pass(scores), 0.99, 0.05)
    assert low.threshold == float(np.float32(0.55)) and low.rejection == 0.0
    # quantile 0: the lower pass decides, 0.01 below each score
    assert choose_ood_threshold(_two_pass(scores), 0.0, 0.2).threshold == \
        float(np.float32(0.64))
    # detection at that operating point beside the paper's rule (threshold 0.9)
    out = _two_pass([0.5, 0.58, 0.62, 0.7, 0.99])
    r = ood_detection(_two_pass(scores), out, 0.99, 0.9, op.threshold)
    assert (r.op_detection, r.op_id_rejection) == (60.0, 20.0)
    assert (r.detection, r.id_rejection) == (80.0, 70.0)
    assert math.isnan(ood_detection(_two_pass(scores), out).op_detection)


def test_choose_ood_threshold_never_exceeds_the_target_on_ties():
    # three inputs tie at the lowest score: rejecting two would reject all three, so none is
    tied = [0.6, 0.6, 0.6, 0.9, 0.9, 0.95, 0.95, 0.97, 0.98, 0.99]
    op = choose_ood_threshold(_two_pass(tied), 0.99, 0.2)
    assert op.threshold == float(np.float32(0.6)) and op.rejection == 0.0
    op = choose_ood_threshold(_two_pass(tied), 0.99, 0.3)     # k = 3: all three go
    assert op.threshold == float(np.float32(0.9)) and op.rejection == 30.0


def _one_pass(top):
    """Inputs of T = 1 pass, C = 2 classes: probabilities (top, 1 - top)."""
    return np.array([[[t, 1 - t]] for t in top], dtype=np.float64)


def test_choose_score_threshold_entropy_hand_case():
    from spinbayes.golden.metrics import choose_score_threshold, score_rejected

    # entropy falls as the top probability rises from 0.5: ten inputs, a 20 % target may
    # reject k = 2, so the threshold is the third-highest entropy, that of top = 0.6
    top = [0.9, 0.5, 0.99, 0.55, 0.6, 0.7, 0.8, 0.95, 0.97, 0.98]
    op = choose_score_threshold(_one_pass(top), "entropy", 0.99, 0.2)
    h = -(0.6 * np.log(0.6) + 0.4 * np.log(0.4))
    assert op.score == "entropy" and op.images == 10 and op.rejection == 20.0
    assert op.threshold == pytest.approx(h, abs=0)
    assert score_rejected(_one_pass(top), op).tolist() == [t < 0.6 for t in top]
    # OoD inputs of top 0.52 and 0.58 exceed it, 0.6 (equal) and 0.9 do not
    r = ood_detection(_one_pass(top), _one_pass([0.52, 0.58, 0.6, 0.9]), 0.99, 0.9,
                      score_ops=(op,))
    assert r.score_detection == {"entropy": 50.0} and r.score_id_rejection == {"entropy": 20.0}
    # one pass has no disagreement: mutual information 0 everywhere, a tie rejects nothing
    mi = choose_score_threshold(_one_pass(top), "mutual_information", 0.99, 0.2)
    assert mi.threshold == 0.0 and mi.rejection == 0.0
    # the rule through the same entry point is choose_ood_threshold
    assert choose_score_threshold(_two_pass([0.85, 0.55, 0.9]), "rule", 0.99, 0.4) == \
        choose_ood_threshold(_two_pass([0.85, 0.55, 0.9]), 0.99, 0.4)
    with pytest.raises(ValueError, match="score must be one of"):
        choose_score_threshold(_one_pass(top), "variance", 0.99, 0.2)
    with pytest.raises(ValueError, match=re.escape("target must be a fraction in (0, 1), "
                                                   "not 0")):
        choose_score_threshold(_one_pass(top), "entropy", 0.99, 0)


@pytest.mark.parametrize("target", [0, 1, -0.1, 1.5, True, "0.05"])
def test_choose_ood_threshold_refuses_bad_targets(target):
    with pytest.raises(ValueError, match=re.escape(f"target must be a fraction in (0, 1), "
                                                   f"not {target!r}")):
        choose_ood_threshold(_two_pass([0.7]), 0.99, target)


@pytest.mark.parametrize("dataset, topology, paper", [("mnist", "lenet5", True),
                                                       ("digits28 (8x8 digits resized)",
                                                        "lenet5", False),
                                                       ("mnist", "mlp", False)])
def test_the_papers_mnist_rows_stand_beside_the_mnist_lenet5_tables(dataset, topology, paper):
    from spinbayes.config import Config
    from spinbayes.golden.evaluate import MethodResult, tables_markdown
    from spinbayes.golden.metrics import OodResult, uncertainty_ratios

    ratios = uncertainty_ratios(np.array([True, False, True]), np.array([0.1, 0.9, 0.2]), 0.5)
    ood = {"gaussian": OodResult(80.0, 1.0, 99.0, 2.0), "noisy": OodResult(60.0, 1.0, 97.0,
                                                                             9.0)}
    res = MethodResult("SpinBayes n=2", 66.7, 33.3, ratios, ood)
    text = tables_markdown([res], Config(topology=topology), dataset)
    assert ("| paper, Proposed (SpinBayes) | 0.77 | 96.81 | 99.96 | 85.10 |" in text) == paper
    assert ("| paper, BB-BackProp | 0.75 | 94.94 | 99.95 | 91.99 |" in text) == paper
    assert ("| paper, Proposed (SpinBayes) | not reported | 100.00 | 99.21 |" in text) == paper
