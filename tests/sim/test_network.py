"""Network co-verification under cocotb: the exported RTL (in CoverifyHarness) against the
integer reference on the RTL's own arbiter trace, every per-pass output, average and class.

Default run: a few digits images on Icarus with random stalls, plus one image through the
unchanged CoreDriver over CocotbBus. Slow: Verilator, 200 images on both simulators, and a
stuck cell caught by the harness's read-back.
"""

import numpy as np
import pytest
import torch

from spinbayes.firmware.compiler import compile_network
from spinbayes.golden.mapping import map_model
from spinbayes.rtl.regs import OutKind
from spinbayes.sim.coverify import decode_logs, params_for, run_images
from spinbayes.sim.harness import CoverifyHarness
from spinbayes.sim.runner import simulator_available

SIMS = [pytest.param("icarus"), pytest.param("verilator", marks=pytest.mark.slow)]


def _need(sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")


@pytest.fixture(scope="module")
def small_hw(small_mapped):
    return small_mapped.net(1), small_mapped.hw(1)


@pytest.mark.parametrize("sim", SIMS)
def test_images_equal_reference_with_stalls(small_hw, digits, sim):
    _need(sim)
    net, hw = small_hw
    T, B = 10, 4
    x, y = digits.x_test[:B], digits.y_test[:B].numpy()
    params = params_for(hw, T)
    res = run_images(hw, x, params=params, T=T, seed=3, simulator=sim, stall=0.25,
                     progress=False, float_net=net, labels=y, driver_images=1)
    # every written (non-zero) cell was read back through vfy_* and equal
    cells = np.count_nonzero(compile_network(hw, params, T=T, seed=3).cells)
    assert res.vfy_errors == 0 and res.vfy_checked == cells > 0
    assert res.mismatches == 0, res.details[:5]
    assert res.passed
    # the harness's log covers every pass: T x C per-pass outputs, and the trace (L, B, T, n)
    assert res.per_pass.shape == (B, T, 10) and res.choices.shape == (2, B, T, 1)
    # 64 rows x 4 planes + 16 rows x 1 plane, / R = 4, per pass; one crossbar read each
    assert (res.counters["cnt_xbar_reads"] == T * (16 * 4 + 4 * 1)).all()
    # stalls lengthen an image: busy cycles < cycles from start to the class beat
    assert (res.counters["cnt_cycles"] < res.cycles).all()
    assert res.float_agreement is not None and res.accuracy is not None
    # the per-cycle firmware driver on the same build agrees with the reference too
    assert res.driver["mismatches"] == 0 and res.driver["images"] == 1
    print(f"\n{sim}: {B} images, 0 mismatches, cycles {res.cycles.tolist()}, "
          f"{res.timings['images_per_min']:.1f} images/min, programming "
          f"{res.timings['programming_s']:.1f} s; driver {res.driver['images_per_min']:.1f} "
          f"images/min")


def _encode(h, per_pass, averaged, cls, choices):
    """Harness log words of a correct run (the inverse of decode_logs), for one image."""
    p = h.params
    T, C = per_pass.shape
    beats = []
    for kind, t, c, v in ([(OutKind.PASS, t, c, per_pass[t, c]) for t in range(T)
                           for c in range(C)]
                          + [(OutKind.AVERAGE, 0, c, averaged[c]) for c in range(C)]
                          + [(OutKind.CLASS, 0, 0, cls)]):
        beats.append((int(v) & (2 ** p.total_bits - 1)) | c << p.total_bits
                     | t << (p.total_bits + p.output_bits_index)
                     | int(kind) << (p.total_bits + p.output_bits_index + p.t_bits))
    trace = [int(choices[i, t, 0]) | t << p.n_max * p.index_bits
             | i << (p.n_max * p.index_bits + p.t_bits)
             for t in range(T) for i in range(choices.shape[0])]
    return beats, trace


def test_decode_finds_every_kind_of_mismatch(small_hw, digits):
    """The batch checker (no simulator): a correct log decodes to the reference; a corrupted
    value, a reordered beat and a lost beat are each reported."""
    _, hw = small_hw
    T = 3
    x = digits.x_test[:2]
    choices = torch.randint(0, 5, (2, 2, T, 1), generator=torch.Generator().manual_seed(0))
    ref = hw.run(x, choices)
    h = CoverifyHarness(params_for(hw, T), wlist_depth=2)
    h._MustUse__silence = True
    raw = {k: np.zeros((2, d), dtype=np.int64) for k, d in (("beats", h.beat_depth),
                                                            ("trace", h.trace_depth))}
    raw["n_beats"], raw["n_trace"] = np.zeros(2, np.int64), np.zeros(2, np.int64)
    for b in range(2):
        beats, trace = _encode(h, ref.per_pass[b].numpy(), ref.averaged[b].numpy(),
                               int(ref.prediction[b]), choices[:, b].numpy())
        raw["beats"][b, :len(beats)], raw["trace"][b, :len(trace)] = beats, trace
        raw["n_beats"][b], raw["n_trace"][b] = len(beats), len(trace)
    kw = dict(T=T, C=10, L=2, n_way=1, index_bits=h.params.index_bits,
              total_bits=h.params.total_bits)
    per_pass, averaged, cls, got_choices, bad = decode_logs(raw, h.describe(), **kw)
    assert bad == []
    assert np.array_equal(per_pass, ref.per_pass.numpy())
    assert np.array_equal(averaged, ref.averaged.numpy())
    assert np.array_equal(cls, ref.prediction.numpy())
    assert np.array_equal(got_choices, choices.numpy())
    bad_raw = {k: v.copy() for k, v in raw.items()}
    bad_raw["beats"][1, 5] ^= 1                                   # value of (t=0, c=5)
    bad_raw["beats"][0, [2, 3]] = bad_raw["beats"][0, [3, 2]]     # two beats swapped
    bad_raw["n_beats"][0] -= 1                                    # the class beat lost
    per_pass, *_, bad = decode_logs(bad_raw, h.describe(), **kw)
    assert per_pass[1, 0, 5] != ref.per_pass[1, 0, 5]
    where = {(m.image, m.output, m.where) for m in bad}
    assert (0, "stream", "beat count") in where
    assert (0, "stream", "beat 2 index") in where and (0, "stream", "beat 3 index") in where


def test_bad_arguments_are_refused(small_hw, digits):
    _, hw = small_hw
    p = params_for(hw, 4)
    with pytest.raises(ValueError, match="stall must be a probability"):
        run_images(hw, digits.x_test[:1], params=p, T=4, seed=0, stall=1.5, progress=False)
    with pytest.raises(ValueError, match="labels has 3 entries for 1 images"):
        run_images(hw, digits.x_test[:1], params=p, T=4, seed=0, labels=[1, 2, 3],
                   progress=False)
    with pytest.raises(ValueError, match="load must be"):
        run_images(hw, digits.x_test[:1], params=p, T=4, seed=0, load="mmap", progress=False)


def test_cli_refuses_bad_image_count(capsys):
    from spinbayes.cli import main

    assert main(["sim", "--images", "0", "--quiet", "--out", "unused"]) == 2
    assert "--images must be at least 1, not 0" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_32(mlp32_model, digits):
    mapped = map_model(mlp32_model, digits.x_train, N=5, Q=4, seed=0, recal_batches=20)
    return mapped.net(1), mapped.hw(1)


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_two_hundred_digits_images(trained_32, digits, sim):
    """Definition of done: >= 200 digits test images, T = 10, N = 5, 0 mismatches."""
    _need(sim)
    net, hw = trained_32
    B, T = 200, 10
    x, y = digits.x_test[:B], digits.y_test[:B].numpy()
    res = run_images(hw, x, params=params_for(hw, T), T=T, seed=1, simulator=sim, stall=0.1,
                     progress=True, float_net=net, labels=y)
    assert res.vfy_errors == 0
    assert res.mismatches == 0, res.details[:5]
    print(f"\n{sim}: {B} images at T={T}, 0 mismatches; hw accuracy {res.accuracy:.1f} %, "
          f"class agreement with float {res.float_agreement:.1f} %; cycles min/median/max "
          f"{res.cycles.min()}/{np.median(res.cycles):.0f}/{res.cycles.max()}; "
          f"{res.timings['images_per_min']:.0f} images/min; programming "
          f"{res.timings['programming_s']:.1f} s")


@pytest.mark.slow
def test_stuck_cell_is_caught_by_read_back(small_hw, digits):
    _, hw = small_hw
    T = 2
    prog = compile_network(hw, params_for(hw, T), T=T, seed=0)
    k, r, c = (int(v[0]) for v in np.nonzero(prog.cells))     # a cell that must change
    res = run_images(hw, digits.x_test[:1], params=params_for(hw, T), T=T, seed=0,
                     progress=False, stuck_cells=[(k, r, c)])
    assert res.vfy_errors == 1
    assert len(res.timings["vfy_bad_entries"]) == 1
