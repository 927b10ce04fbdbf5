"""The input address generator against torch's im2col (``F.unfold``) in Amaranth's simulator."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from amaranth.back import verilog

from spinbayes.golden.geometry import LayerGeometry
from spinbayes.rtl.window import WindowAddressGenerator

GEO = ("C_in", "H", "W", "k", "stride", "padding")


def im2col_addresses(C, H, W, k, stride, padding):
    """(positions, rows) addresses and zero flags: F.unfold of the address map (address + 1,
    so that the padding's 0 marks a zero row), columns = raster positions."""
    amap = torch.arange(1, C * H * W + 1, dtype=torch.float64).reshape(1, C, H, W)
    cols = F.unfold(amap, k, padding=padding, stride=stride)[0].T.long().numpy()
    return np.maximum(cols - 1, 0), cols == 0


def run_layers(run_sim, dut, layers, *, ready_p=1.0, seed=0, skip_p=0.0):
    """Run ``layers`` (dicts of the GEO ports) back to back; per layer the taken rows as
    (addr, zero, row, last_row, last, skip) arrays and the cycles from start to the last row
    (``skip`` high with probability ``skip_p`` in each cycle)."""
    rng = np.random.default_rng(seed)
    got = []

    async def tb(ctx):
        for g in layers:
            for name in GEO:
                ctx.set(getattr(dut, name), g[name])
            assert not ctx.get(dut.busy)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for name in GEO:                    # latched: the ports may change now
                ctx.set(getattr(dut, name), 0)
            rows, cycles, done = [], 1, False
            while not done:
                ready = int(rng.random() < ready_p)
                skip = int(rng.random() < skip_p)
                ctx.set(dut.ready, ready)
                ctx.set(dut.skip, skip)
                if ready and ctx.get(dut.valid):
                    rows.append([ctx.get(dut.addr), ctx.get(dut.zero), ctx.get(dut.row),
                                 ctx.get(dut.last_row), ctx.get(dut.last), skip])
                    done = bool(rows[-1][4])
                assert ctx.get(dut.busy)
                await ctx.tick()
                cycles += 1
                assert cycles < 20000, "the generator never ended the layer"
            ctx.set(dut.ready, 0)
            ctx.set(dut.skip, 0)
            assert not ctx.get(dut.busy) and not ctx.get(dut.valid)
            got.append((np.array(rows), cycles))

    run_sim(dut, tb)
    return got


def check(layer, rows):
    """The taken rows of one layer equal im2col, position by position."""
    C, k = layer["C_in"], layer["k"]
    addr, zero = im2col_addresses(*(layer[n] for n in GEO))
    P, Rw = addr.shape
    assert rows.shape == (P * Rw, 6), layer
    rows = rows.reshape(P, Rw, 6)[..., :5]
    assert np.array_equal(rows[..., 1], zero), layer
    assert np.array_equal(rows[..., 0], addr), layer
    assert np.array_equal(rows[..., 2], np.broadcast_to(np.arange(C * k * k), (P, Rw)))
    assert np.array_equal(rows[..., 3], np.broadcast_to(np.arange(Rw) == Rw - 1, (P, Rw)))
    assert rows[..., 4].sum() == 1 and rows[-1, -1, 4] == 1


def random_layers(rng, count, budget):
    """``count`` random in-contract geometries (kernel 1-5, stride 1-2, padding 0-2, C_in
    1-4, H and W 1-12), each of at most ``budget`` rows over all positions."""
    out = []
    while len(out) < count:
        g = dict(C_in=int(rng.integers(1, 5)), H=int(rng.integers(1, 13)),
                 W=int(rng.integers(1, 13)), k=int(rng.integers(1, 6)),
                 stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 3)))
        if g["k"] > min(g["H"], g["W"]) + 2 * g["padding"]:
            continue
        geo = LayerGeometry("conv2d", **g, pool=0, outputs=1, in_bits=1, out_bits=1,
                            is_output=False)
        if geo.positions * geo.rows <= budget:
            out.append(g)
    return out


DUT_KW = dict(channels_max=4, size_max=12, kernel_max=5, stride_max=2, padding_max=2,
              depth=4 * 12 * 12)


def test_random_shapes_against_unfold(run_sim):
    """Random geometries back to back (the generator restarts each time), the consumer
    taking a row in 70 % of the cycles."""
    rng = np.random.default_rng(14)
    layers = random_layers(rng, 50, 300)
    layers += [dict(C_in=4, H=12, W=12, k=5, stride=2, padding=2),     # the extremes
               dict(C_in=1, H=1, W=1, k=5, stride=1, padding=2),
               dict(C_in=2, H=3, W=12, k=3, stride=2, padding=0)]
    dut = WindowAddressGenerator(**DUT_KW)
    for layer, (rows, _) in zip(layers, run_layers(run_sim, dut, layers, ready_p=0.7, seed=1),
                                strict=True):
        check(layer, rows)


def test_one_address_per_cycle_and_dense_identity(run_sim):
    """With ``ready`` held: rows*positions cycles after the set-up cycle; a dense layer
    (C_in = fan-in, 1 x 1) reads rows 0 .. fan-in - 1 in order."""
    dense = dict(C_in=64, H=1, W=1, k=1, stride=1, padding=0)
    conv = dict(C_in=3, H=7, W=6, k=3, stride=1, padding=1)
    dut = WindowAddressGenerator(channels_max=64, size_max=8, kernel_max=3, stride_max=1,
                                 padding_max=1, depth=3 * 7 * 6)
    (d_rows, d_cyc), (c_rows, c_cyc) = run_layers(run_sim, dut, [dense, conv])
    assert d_rows[:, 0].tolist() == list(range(64)) and not d_rows[:, 1].any()
    assert d_cyc == 2 + 64             # the start cycle, the set-up cycle, one row a cycle
    check(dense, d_rows)
    check(conv, c_rows)
    assert c_cyc == 2 + 7 * 6 * 27


def test_for_layers_and_ports():
    geo = [LayerGeometry("conv2d", 1, 28, 28, 5, 1, 2, 2, 6, 4, 1, False),
           LayerGeometry("conv2d", 6, 14, 14, 5, 1, 0, 2, 16, 1, 1, False, True),
           LayerGeometry("linear", 400, 1, 1, 1, 1, 0, 0, 10, 1, 0, True)]
    dut = WindowAddressGenerator.for_layers(geo)
    assert (dut.channels_max, dut.size_max, dut.kernel_max, dut.stride_max,
            dut.padding_max, dut.depth) == (400, 28, 5, 1, 2, 1176)
    assert len(dut.C_in) == 9 and len(dut.H) == 5 and len(dut.padding) == 2
    assert len(dut.addr) == 11 and len(dut.row) == 14
    text = verilog.convert(dut, emit_src=False)
    assert "module top" in text and "addr" in text


@pytest.mark.parametrize("kw, match", [
    (dict(channels_max=0), "channels_max must be a positive integer, not 0"),
    (dict(depth=2.5), "depth must be a positive integer, not 2.5"),
    (dict(padding_max=-1), "padding_max must be a non-negative integer, not -1"),
    (dict(stride_max=True), "stride_max must be a positive integer, not True"),
])
def test_parameters_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        WindowAddressGenerator(**{**DUT_KW, **kw})


def test_skip_ends_the_window(run_sim):
    """``skip`` (first-layer reuse: a window not needed): the row taken with it is its
    window's last, and the next position's first row follows; the other rows are im2col's."""
    rng = np.random.default_rng(3)
    layers = [*random_layers(rng, 12, 300), dict(C_in=1, H=12, W=12, k=5, stride=1, padding=2)]
    dut = WindowAddressGenerator(**DUT_KW)
    for layer, (rows, _) in zip(layers, run_layers(run_sim, dut, layers, ready_p=0.8, seed=2,
                                                   skip_p=0.4), strict=True):
        addr, zero = im2col_addresses(*(layer[n] for n in GEO))
        P, Rw = addr.shape
        want, i = [], 0
        for q in range(P):
            for r in range(Rw):
                end = r == Rw - 1 or bool(rows[i, 5])
                want.append([addr[q, r], zero[q, r], r, end, end and q == P - 1, rows[i, 5]])
                i += 1
                if end:
                    break
        assert rows.tolist() == want, layer
        assert rows[:, 5].any() and (rows[:, 3] == 1).sum() == P
