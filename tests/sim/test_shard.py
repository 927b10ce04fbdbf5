"""Sharded co-verification: sim/shard.py (shard plan, the arbiters' state at a shard's first
image, merging) and spinbayes/shard.py (shards on Ray actors).

Default run: the units, and 4 images of a 64-8-10 network (T = 4) on Icarus in 2 shards on
2 Ray actors (a local Ray with 2 CPUs, started and shut down by ``coverify_sharded``), one
actor killed while it runs its shard: the merged result equals, image for image, one
simulation of the 4 images (per-pass outputs, averages, classes, the arbiter trace, cycles,
every counter). The two-node cluster case is in tests/test_sweep.py. Slow: the ``spinbayes
sim --workers 2`` command end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinbayes.sim.runner import simulator_available
from spinbayes.sim.shard import arbiter_states, merge_results, plan_shards, program_from_image


def test_plan_shards_tiles_the_images():
    assert plan_shards(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert plan_shards(2, 5) == [(0, 1), (1, 2)]
    assert plan_shards(4, 1) == [(0, 4)]
    for images, shards in ((0, 2), (3, 0), (2.0, 1), (True, 1)):
        with pytest.raises(ValueError, match="must be a positive integer"):
            plan_shards(images, shards)


@pytest.fixture(scope="module")
def program(tiny_trained):
    from spinbayes import workflow_hw as wh
    from spinbayes.firmware.compiler import compile_network

    trained, mapped = tiny_trained
    params = wh.hw_params(mapped, trained.cfg)
    return compile_network(mapped.hw(1), params, T=4, seed=9), params


def test_arbiter_states_are_where_the_golden_draws_leave_the_rngs(program):
    """The state after image s is the device seed stepped once per draw of images 0..s-1,
    the draws counted by the golden replay the energy check uses."""
    from spinbayes.golden.arbiter import device_seed
    from spinbayes.golden.energy_counts import arbiter_draws
    from spinbayes.golden.mtj import EmulatedRng

    _, params = program
    thr = EmulatedRng.from_current(1, 230e-6, threshold_bits=params.rng_bits).threshold
    for first in (0, 1, 7):
        got = arbiter_states(params, layers=2, n_way=1, T=4, seed=9, threshold=thr,
                             first_image=first)
        draws = arbiter_draws(2, first, 4, params.N, 1, seed=9).sum(axis=1)
        for layer in range(2):
            for d in range(params.code_bits):
                rng = EmulatedRng(device_seed(9, layer, d, params.code_bits), thr)
                want = int(rng.states(int(draws[layer]))[-1]) if draws[layer] else rng.state
                assert got[layer][d] == want


def test_program_from_image_reseeds_the_arbiters_only(program):
    from spinbayes.rtl.regs import Reg

    prog, params = program
    assert program_from_image(prog, params, seed=9, first_image=0) is prog
    moved = program_from_image(prog, params, seed=9, first_image=3)
    assert np.array_equal(moved.cells, prog.cells)
    changed = [(a, b) for a, b in zip(prog.descriptor, moved.descriptor) if a != b]
    assert len(changed) == 2 * params.code_bits
    assert all(a.sel == b.sel == Reg.RNG_SEED and (a.a, a.c) == (b.a, b.c) for a, b in changed)
    with pytest.raises(ValueError, match="does not hold the device seed of seed 8"):
        program_from_image(prog, params, seed=8, first_image=3)


def _result(images: int, first: int, *, bad_image: int | None = None):
    from spinbayes.sim.coverify import CoverifyResult, Mismatch

    ramp = np.arange(first, first + images)
    details = [Mismatch(bad_image, "class", "()", 1, 2)] if bad_image is not None else []
    return CoverifyResult(
        images=images, mismatches=len(details), details=details, cycles=100 + ramp,
        counters={"cnt_cycles": 90 + ramp}, counter_totals={}, per_pass=ramp[:, None, None],
        averaged=ramp[:, None], prediction=ramp % 10, choices=ramp[None, :, None, None],
        vfy_errors=0, vfy_checked=50, accuracy=50.0, float_agreement=100.0,
        simulator="icarus", timings={"images_s": 1.0, "check_s": 0.5, "writes": 9})


def test_merge_puts_images_in_order_and_refuses_gaps_and_overlaps():
    m = merge_results([(3, _result(2, 3, bad_image=1)), (0, _result(3, 0))])
    assert m.images == 5 and m.prediction.tolist() == [0, 1, 2, 3, 4]
    assert m.choices.shape == (1, 5, 1, 1) and m.counter_totals == {"cnt_cycles": 460}
    assert [d.image for d in m.details] == [4] and m.mismatches == 1
    assert m.vfy_checked == 100 and m.timings["images_s"] == 2.0 and m.timings["writes"] == 9
    assert len(m.timings["shards"]) == 2
    with pytest.raises(ValueError, match="starts at image 4, expected 3"):
        merge_results([(0, _result(3, 0)), (4, _result(2, 4))])
    with pytest.raises(ValueError, match="starts at image 2, expected 3"):
        merge_results([(0, _result(3, 0)), (2, _result(2, 2))])


@pytest.mark.skipif(not simulator_available("icarus"), reason="icarus not installed")
def test_two_actors_equal_one_simulation_when_an_actor_dies(tiny_trained, ray_killer,
                                                            monkeypatch, ray_lock):
    from spinbayes import workflow_hw as wh
    from spinbayes.shard import coverify_sharded

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    trained, mapped = tiny_trained
    one, _ = wh.coverify(trained, mapped, images=4, simulator="icarus", progress=False)
    killer = ray_killer("_Worker.run")
    two, _, info = coverify_sharded(trained, mapped, images=4, simulator="icarus", workers=2,
                                    progress=False)
    killer.stop()
    assert len(killer.killed) == 1 and info["actors_died"] == 1
    assert info["shards"] == [[0, 2], [2, 4]]
    assert one.mismatches == two.mismatches == 0 and two.images == 4
    for name in ("per_pass", "averaged", "prediction", "cycles"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert np.array_equal(one.choices, two.choices)
    assert all(np.array_equal(one.counters[k], two.counters[k]) for k in one.counters)
    assert (one.accuracy, one.float_agreement) == pytest.approx(
        (two.accuracy, two.float_agreement))
    # each shard programmed and read back every cell: twice the cells of one simulation
    assert two.vfy_checked == 2 * one.vfy_checked and two.vfy_errors == 0


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "--workers and --shards must be positive integers"),
    (["--workers", "2", "--waves"], "--waves and --driver-images run in one simulation"),
    (["--address", "127.0.0.1:1", "--driver-images", "1"], "--waves and --driver-images"),
])
def test_sim_refuses_bad_sharding_flags_before_any_work(tmp_path, capsys, flags, message):
    from spinbayes.cli import main

    assert main(["sim", "--images", "2", "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not simulator_available("icarus"), reason="icarus not installed")
def test_sim_command_with_workers_writes_one_merged_result(tmp_path, capsys, monkeypatch):
    """`spinbayes sim --workers 2` end to end: training, a local Ray, 6 images in 3 shards."""
    import json

    from spinbayes.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rc = main(["sim", "--images", "6", "--workers", "2", "--shards", "3", "--hidden", "8",
               "--epochs", "1", "--T", "4", "--recal-batches", "1", "--threads", "1",
               "--simulator", "icarus", "--quiet", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    assert "3 shards on 2 Ray actors" in capsys.readouterr().out
    summary = json.loads((tmp_path / "sim.json").read_text())
    assert summary["images"] == 6 and summary["mismatches"] == 0
    assert [s["first_image"] for s in summary["timings"]["shards"]] == [0, 2, 4]
    assert len(summary["cycles_per_image"]) == 6
