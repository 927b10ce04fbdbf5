"""Energy that charges what ran: adaptive T (the passes run) and first-layer reuse (once per
distinct crossbar, analytic only), and the energy/accuracy/UA/AUROC study."""

import math

import numpy as np
import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.adaptive import AdaptiveT, adaptive_passes
from spinbayes.golden.energy import (
    PAPER_TABLE4,
    LayerShape,
    count_operations,
    distinct_crossbars,
    energy_of_counts,
    image_energies,
    lenet5_shapes,
    run_counts,
    shapes_of_hw,
)
from spinbayes.golden.energy_pareto import (
    pareto_flags,
    pareto_markdown,
    pareto_study,
    plot_pareto,
    subsample,
)

SHAPES = [LayerShape("fc0", "linear", 10, 3, 3, 2), LayerShape("fc1", "linear", 3, 2, 1, 1,
                                                              last=True)]


def test_distinct_crossbars_hand_made():
    ch = np.array([[[0], [0], [0], [0]], [[0], [1], [2], [1]], [[4], [3], [2], [1]]])
    assert distinct_crossbars(ch, 5).tolist() == [1, 3, 4]
    assert distinct_crossbars(ch, 5, [4, 1, 2]).tolist() == [1, 1, 2]
    two = np.array([[[0, 1], [1, 2], [0, 2]], [[3, 4], [3, 4], [3, 4]]])   # n-way: the union
    assert distinct_crossbars(two, 5).tolist() == [3, 2]
    assert distinct_crossbars(two, 5, [1, 3]).tolist() == [2, 2]


@pytest.mark.parametrize("bad, match", [
    (dict(choices=np.zeros((2, 3))), "non-empty"), (dict(choices=np.full((1, 2, 1), 5)), "0..4"),
    (dict(passes=[0]), "1..2"), (dict(passes=[3]), "1..2"), (dict(passes=[1, 1]), r"\(1,\)")])
def test_distinct_crossbars_refuses(bad, match):
    kw = {"choices": np.zeros((1, 2, 1), dtype=int), "passes": None, **bad}
    with pytest.raises(ValueError, match=match):
        distinct_crossbars(kw["choices"], 5, kw["passes"])


def test_run_counts_hand_computed():
    """fc0: 3 positions x ceil(10/4) = 3 groups x 2 bits = 18 reads per crossbar."""
    c = run_counts(SHAPES, N=5, n_way=1, R=4, passes=4, distinct=2)
    assert (c[0].cnt_xbar_reads, c[0].cnt_aac_ops, c[0].mvms) == (36, 36, 6)
    plain = count_operations(SHAPES, N=5, n_way=1, T=4, R=4)
    assert c[0].cnt_cmp_ops == plain[0].cnt_cmp_ops and c[1] == plain[1]
    # n = 2: reads once per distinct crossbar, plus one add of the two kept sums per pass
    c2 = run_counts(SHAPES, N=5, n_way=2, R=4, passes=3, distinct=3)
    assert (c2[0].cnt_xbar_reads, c2[0].cnt_aac_ops, c2[0].mvms) == (54, 54 + 3 * 3, 9)
    with pytest.raises(ValueError, match="distinct must be an integer in 1..4"):
        run_counts(SHAPES, N=5, n_way=1, R=4, passes=4, distinct=5)
    with pytest.raises(ValueError, match="distinct must be an integer in 2..5"):
        run_counts(SHAPES, N=5, n_way=2, R=4, passes=4, distinct=1)


def test_image_energies_plain_is_todays_count_and_off_is_plain():
    shapes = lenet5_shapes()
    ch = torch.randint(5, (40, 10, 1), generator=torch.Generator().manual_seed(3)).numpy()
    today = energy_of_counts(count_operations(shapes, N=5, n_way=1, T=10, R=4))["total_pj"]
    off = adaptive_passes(torch.randint(-50, 50, (40, 10, 10)), AdaptiveT("off"))
    e = image_energies(shapes, ch, N=5, n_way=1, R=4, passes=off.numpy())
    assert (e["plain"] == today).all()
    assert np.array_equal(e["adaptive"], e["plain"]) and np.array_equal(e["both"], e["reuse"])
    # reuse saves exactly the first convolution's reads and accumulates of T - D crossbars
    d = distinct_crossbars(ch, 5)
    per_xbar = 784 * math.ceil(25 / 4) * 4
    saved = (10 - d) * per_xbar * (PAPER_TABLE4["memory"] + PAPER_TABLE4["aac"])
    np.testing.assert_allclose(e["plain"] - e["reuse"], saved, rtol=1e-12)


def test_image_energies_adaptive_charges_passes_run():
    ch = np.array([[[0], [1], [2], [3]], [[2], [2], [2], [2]], [[4], [3], [4], [0]]])
    e = image_energies(SHAPES, ch, N=5, n_way=1, R=4, passes=[1, 3, 4])
    for b, t in enumerate([1, 3, 4]):
        assert e["adaptive"][b] == energy_of_counts(
            count_operations(SHAPES, N=5, n_way=1, T=t, R=4))["total_pj"]
    # all four passes on distinct crossbars: nothing to reuse
    assert e["reuse"][0] == e["plain"][0] and e["reuse"][1] < e["plain"][1]
    d = [1, 1, 3]   # distinct crossbars over the passes run
    for b, t in enumerate([1, 3, 4]):
        assert e["both"][b] == energy_of_counts(
            run_counts(SHAPES, N=5, n_way=1, R=4, passes=t, distinct=d[b]))["total_pj"]


def test_pareto_flags():
    f = pareto_flags([1, 2, 3, 2, 1], [50, 60, 55, 60, 40])
    assert f.tolist() == [True, True, False, True, False]


def test_pareto_study_small_mlp(small_mapped, digits, tmp_path):
    cfg = Config(hidden=(16,), seed=0, T=10)
    hw = small_mapped.hw(1)
    ood = {"noise": torch.rand(60, *digits.image_shape, generator=torch.Generator()
                               .manual_seed(1))}
    sets, y, sizes = subsample(digits, ood, max_test=150)
    assert len(sets["test"]) == len(y) == 150 and sizes["test"] == len(digits.x_test)
    study = pareto_study(hw, sets, y, cfg, T_max=10, thresholds=(0.6, 1.0), t_mins=(2,),
                         seed=1, image_shape=digits.image_shape, sizes=sizes,
                         run_rule=AdaptiveT("confidence", 1, AdaptiveT.threshold_for(0.9)))
    rows = {r["setting"]: r for r in study["rows"]}
    full, exact = rows["full T"], rows["exact"]
    assert full["passes_id"] == 10 and exact["passes_id"] <= 10
    assert exact["hw_accuracy"] == full["hw_accuracy"]          # the exact rule's class
    today = energy_of_counts(count_operations(shapes_of_hw(hw, digits.image_shape), N=5,
                                              n_way=1, T=10, R=hw.R))["total_pj"]
    assert full["energy_pj"] == pytest.approx(today, rel=1e-12)
    for r in study["rows"]:
        assert r["energy_reuse_pj"] <= r["energy_pj"] <= full["energy_pj"] + 1e-9
        assert 0 <= r["auroc"]["noise"] <= 100 and 0 <= r["ua"] <= 100
    c = rows["confidence 0.60, T_min 2"]
    assert 2 <= c["passes_id"] < 10 and c["energy_pj"] < full["energy_pj"]
    assert any(r["front"]["reuse"] for r in study["rows"])
    # the run's own rule: T_min 1, any share is met after one pass
    assert rows["--adaptive confidence (this run)"]["passes_id"] == 1
    assert len(study["rows"]) == 2 + 2 + 1
    text = pareto_markdown(study, "pareto.png")
    assert "| confidence 1.00, T_min 2 |" in text and "counters give with REUSE on" in text
    assert "test 150 of" in text
    assert plot_pareto(study, tmp_path / "p.png").stat().st_size > 10_000
