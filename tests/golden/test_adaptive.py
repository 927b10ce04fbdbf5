"""Adaptive T in the integer reference (golden/adaptive.py, docs/HARDWARE.md "Adaptive T"):
the exact rule keeps the T_max-pass class on a trained network, on random outputs and against
adversarial continuations; the bound is tight for the argmax's tie rule; the confidence rule
on a hand-made vote sequence; the outputs divide by the passes run."""

import pytest
import torch

from spinbayes.golden.adaptive import (
    AdaptiveOutput,
    AdaptiveT,
    adaptive_passes,
    exact_stop,
    output_span,
)
from spinbayes.golden.arbiter import arbiter_choices
from spinbayes.golden.inference import sample_choices


def _full_class(per_pass):
    return per_pass.sum(1).argmax(-1)


@pytest.mark.parametrize("n_way", [1, 2])
def test_exact_rule_keeps_the_class_on_the_digits_test_set(small_mapped, digits, n_way):
    hw = small_mapped.hw(n_way)
    T = 10
    ch = sample_choices(2, len(digits.x_test), T, 5, n_way, torch.Generator().manual_seed(1))
    out = hw.run(digits.x_test, ch)
    span = output_span(hw)
    # every per-pass output lies in [lo, hi]: the span bounds what was observed
    assert int(out.per_pass.max() - out.per_pass.min()) <= span
    for t_min in (1, 5):
        passes = adaptive_passes(out.per_pass, AdaptiveT("exact", t_min, 0, span))
        ad = AdaptiveOutput(out.per_pass, passes, out.frac_bits)
        assert torch.equal(ad.prediction, out.prediction), f"T_min={t_min}"
        assert (passes >= t_min).all() and (passes < T).any()


def test_output_span_is_reached_by_the_extreme_inputs(small_mapped):
    """The span is the range of y over inputs at 0 / 2^A - 1 and crossbar choices: some input
    reaches lo and some hi (computed by brute force over the sign pattern of one class)."""
    hw = small_mapped.hw(1)
    layer = hw.layers[-1]
    span = output_span(hw)
    amax = 2 ** layer.in_bits - 1
    best = []
    for k in range(hw.N):
        w = layer.codes[k]                                     # (C, rows)
        for c in range(w.shape[0]):
            for sign in (1, -1):
                a = ((sign * w[c]) > 0).long() * amax
                best.append(layer.activate((a @ w.T)[None])[0, c].item())
    assert max(best) - min(best) == span


def test_exact_rule_on_random_outputs_against_adversarial_continuations():
    g = torch.Generator().manual_seed(0)
    for trial in range(80):
        C = int(torch.randint(1, 6, (1,), generator=g))
        T = int(torch.randint(1, 9, (1,), generator=g))
        lo = int(torch.randint(-5, 3, (1,), generator=g))
        hi = lo + int(torch.randint(0, 4, (1,), generator=g))   # small ranges: many ties
        y = torch.randint(lo, hi + 1, (64, T, C), generator=g)
        adapt = AdaptiveT("exact", 1, 0, hi - lo)
        passes = adaptive_passes(y, adapt)
        assert torch.equal(AdaptiveOutput(y, passes, 0).prediction, _full_class(y))
        # every continuation that gives one rival hi and the leader lo keeps the class
        for b in torch.nonzero(passes < T)[:, 0].tolist():
            t = int(passes[b])
            lead = int(y[b, :t].sum(0).argmax())
            for c in range(C):
                z = y[b].clone()
                z[t:] = lo
                z[t:, c] = hi
                assert int(z.sum(0).argmax()) == lead, (trial, b, c)


@pytest.mark.parametrize("sums, stops", [
    ([20, 0], True),     # margin 20 = 2 * 10 over a higher index: a final tie goes to 0
    ([19, 0], False),    # one less: the rival can win
    ([0, 21], True),     # over a lower index the margin must exceed the bound
    ([0, 20], False),    # a final tie would go to class 0
    ([5, 5], False),     # a tie now
])
def test_exact_rule_at_the_bound(sums, stops):
    Y = torch.tensor([sums])
    assert bool(exact_stop(Y, 2, 10)[0]) == stops
    # two remaining passes in [0, 10]: the worst case for the leader
    lead = int(Y.argmax())
    worst = Y.clone()
    worst[0, 1 - lead] += 20
    assert (int(worst.argmax()) == lead) == stops


def test_exact_rule_stops_at_once_for_one_class_and_never_before_t_min():
    y = torch.zeros(1, 5, 1, dtype=torch.long)
    assert adaptive_passes(y, AdaptiveT("exact", 1, 0, 100)).tolist() == [1]
    assert adaptive_passes(y, AdaptiveT("exact", 3, 0, 100)).tolist() == [3]


def test_confidence_rule_on_a_vote_sequence():
    # votes per pass: 0, 0, 1, 0, 0, 0 (C = 2, T = 6); shares 1, 1, 2/3, 3/4, 4/5, 5/6
    votes = [0, 0, 1, 0, 0, 0]
    y = torch.zeros(2, 6, 2, dtype=torch.long)
    for t, v in enumerate(votes):
        y[0, t, v] = 5
    y[1] = y[0].flip(-1)                                   # the mirror: same shares
    y[1, :, :] = torch.where(y[1] == 5, 5, 0)
    def run(t_min, threshold):
        return adaptive_passes(y, AdaptiveT("confidence", t_min, threshold)).tolist()
    assert run(1, 256) == [1, 1]
    assert run(3, 256) == [6, 6]                           # pass 3 broke unanimity
    assert run(3, 192) == [4, 4]                           # 3/4 * 256 = 192 at t = 4
    assert run(3, 193) == [5, 5]                           # 4/5 * 256 = 204.8 >= 193
    assert run(3, 0) == [3, 3]
    # a tie in a pass votes for the lower index
    tie = torch.zeros(1, 3, 3, dtype=torch.long)
    tie[0, :, 1:] = 7
    assert adaptive_passes(tie, AdaptiveT("confidence", 2, 256)).tolist() == [2]


def test_outputs_divide_by_the_passes_run():
    y = torch.tensor([[[3, -7], [4, -8], [100, 100]]])
    ad = AdaptiveOutput(y, torch.tensor([2]), 0)
    assert ad.total.tolist() == [[7, -15]]
    assert ad.averaged.tolist() == [[4, -7]]             # floor((7 + 1) / 2), floor(-14 / 2)
    assert ad.prediction.tolist() == [0]
    p = torch.softmax(y[0, :2].double(), -1).mean(0)
    assert torch.allclose(ad.mean_probs[0], p)


def test_rule_off_runs_every_pass(small_mapped, digits):
    hw = small_mapped.hw(1)
    out = hw.run(digits.x_test[:8], arbiter_choices(2, 8, 4, 5, 1, seed=2))
    ad = AdaptiveOutput(out.per_pass, adaptive_passes(out.per_pass, AdaptiveT()), 0)
    assert ad.passes.tolist() == [4] * 8
    assert torch.equal(ad.averaged, out.averaged) and torch.equal(ad.total, out.total)


def test_t_min_above_t_max_is_refused():
    with pytest.raises(ValueError, match=r"T_min must lie in 1\.\.T=3, not 4"):
        adaptive_passes(torch.zeros(1, 3, 2, dtype=torch.long), AdaptiveT("exact", 4))


def test_adaptive_study_reports_passes_and_agreement(small_mapped, digits):
    from spinbayes.golden.adaptive import adaptive_study, study_markdown

    hw = small_mapped.hw(1)
    x, y = digits.x_test[:60], digits.y_test[:60]
    noise = torch.rand(60, *x.shape[1:], generator=torch.Generator().manual_seed(0))
    adapt = AdaptiveT("exact", 1, 0, output_span(hw))
    study = adaptive_study(hw, {"test": x, "noise": noise}, y, 10, adapt, seed=1)
    assert study["test"]["full_t_agreement"] == 100.0
    assert 1 <= study["noise"]["passes_min"] <= study["noise"]["passes_mean"] <= 10
    assert "| test | 60 |" in study_markdown(study, adapt, 10)
