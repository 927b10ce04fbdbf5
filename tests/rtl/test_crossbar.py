"""Decoders and the behavioural crossbar memory against the golden cells and bit-serial read."""

import numpy as np
import pytest
import torch
from amaranth.back import verilog

from spinbayes.golden.cells import cells_per_weight, encode_weights
from spinbayes.golden.hardware import crossbar_mvm_bitserial
from spinbayes.rtl.crossbar import CrossbarMemory
from spinbayes.rtl.decoders import ReadDecoder, WriteDecoder
from spinbayes.rtl.params import RtlParams

P4 = RtlParams(N=2, n_max=1, Q=4, R=4, rows_max=12, outputs_max=5, groups_total=4)
P3 = RtlParams(N=2, n_max=1, Q=3, R=3, rows_max=12, outputs_max=5, groups_total=5)
P5 = RtlParams(N=2, n_max=1, Q=5, R=2, rows_max=6, outputs_max=3, groups_total=3)
#: rows 9..15 are addressable; row // R of rows 12..15 (4, 5) would alias groups 0, 1 in
#: group_bits = 2 bits if the write were not suppressed
P6 = RtlParams(N=2, n_max=1, Q=4, R=3, rows_max=9, outputs_max=2, groups_total=3)


@pytest.mark.parametrize("cls", [ReadDecoder, WriteDecoder, CrossbarMemory])
def test_params_checked(cls):
    with pytest.raises(ValueError, match="params must be an RtlParams"):
        cls({"R": 4})


@pytest.mark.parametrize("params", [P4, P3])
def test_read_decoder(params, run_sim):
    dut = ReadDecoder(params)

    async def tb(ctx):
        for g in range(2 ** params.group_bits):
            for en in (0, 1):
                ctx.set(dut.en, en)
                ctx.set(dut.group, g)
                assert ctx.get(dut.active) == en
                assert ctx.get(dut.wl) == (2 ** params.R - 1) * en
                assert ctx.get(dut.row_base) == (g * params.R) % 2 ** params.row_bits

    run_sim(dut, tb, clock=False)


@pytest.mark.parametrize("params", [P4, P3, P5, P6])
def test_write_decoder_exhaustive(params, run_sim):
    dut = WriteDecoder(params)
    n_rows = params.groups_total * params.R

    async def tb(ctx):
        for en in (0, 1):
            ctx.set(dut.en, en)
            for row in range(2 ** params.row_bits):
                ctx.set(dut.row, row)
                for col in range(2 ** params.col_bits):
                    ctx.set(dut.col, col)
                    bad = row >= n_rows or col >= params.cols_max
                    assert ctx.get(dut.error) == (en and bad)
                    assert ctx.get(dut.we) == (en and not bad)
                    assert ctx.get(dut.col_sel) == col
                    if not bad:
                        assert ctx.get(dut.group) == row // params.R
                        assert ctx.get(dut.lane) == row % params.R

    run_sim(dut, tb, clock=False)


def _cell_columns(codes, Q):
    """(rows, out * k) signed levels of weight codes (out, rows): cells.py geometry."""
    lv = encode_weights(codes, Q)                      # (out, rows, k)
    out, rows, k = lv.shape
    return lv.transpose(1, 0, 2).reshape(rows, out * k).astype(np.int64)


async def program(ctx, dut, levels):
    """Write every cell, one per cycle, checking the handshake."""
    rows, cols = levels.shape
    for r in range(rows):
        for c in range(cols):
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_row, r)
            ctx.set(dut.w_col, c)
            ctx.set(dut.w_level, int(levels[r, c]))
            assert ctx.get(dut.w_ready) == 1
            assert ctx.get(dut.w_error) == 0
            await ctx.tick()
    ctx.set(dut.w_en, 0)


async def read_back(ctx, dut, rows, cols):
    got = np.zeros((rows, cols), dtype=np.int64)
    for r in range(rows):
        for c in range(cols):
            ctx.set(dut.v_row, r)
            ctx.set(dut.v_col, c)
            await ctx.tick()
            got[r, c] = ctx.get(dut.v_level)
    return got


@pytest.mark.parametrize("params", [P4, P3, P5])
def test_crossbar_program_readback_and_compute(params, run_sim):
    rng = np.random.default_rng(params.Q * 10 + params.R)
    q_max = 2 ** (params.Q - 1) - 1
    rows = params.groups_total * params.R
    codes = rng.integers(-q_max, q_max + 1, size=(params.outputs_max, rows))
    levels = _cell_columns(codes, params.Q)
    assert levels.shape == (rows, params.cols_max)
    assert params.k_cells == cells_per_weight(params.Q)
    # the golden bit-serial read: every (plane, group) ADC vector of two input vectors
    A = 3
    a = rng.integers(0, 2 ** A, size=(2, rows))
    _, p_gold = crossbar_mvm_bitserial(torch.from_numpy(a), torch.from_numpy(codes), A,
                                       params.Q, params.R)
    p_gold = p_gold.numpy()                            # (B, A, groups, cols)
    dut = CrossbarMemory(params)

    async def tb(ctx):
        await program(ctx, dut, levels)
        assert (await read_back(ctx, dut, rows, params.cols_max) == levels).all()
        # golden reads, back to back: read issued in cycle t is in p at t + 1
        reads = [(bi, b, g) for bi in range(2) for b in range(A)
                 for g in range(params.groups_total)]
        expect = None
        for read in [*reads, None]:
            if expect is not None:      # the previous cycle's read
                assert ctx.get(dut.p_valid) == 1
                assert [ctx.get(dut.p[c]) for c in range(params.cols_max)] == expect
            if read is None:
                break
            bi, b, g = read
            bits = (a[bi, g * params.R:(g + 1) * params.R] >> b) & 1
            ctx.set(dut.rd_en, 1)
            ctx.set(dut.rd_group, g)
            ctx.set(dut.rd_bits, int(sum(int(x) << r for r, x in enumerate(bits))))
            expect = p_gold[bi, b, g].tolist()
            await ctx.tick()
        # random bit vectors with idle cycles in between
        for _ in range(40):
            en = int(rng.integers(0, 4) > 0)
            g = int(rng.integers(0, params.groups_total))
            bits = rng.integers(0, 2, size=params.R)
            ctx.set(dut.rd_en, en)
            ctx.set(dut.rd_group, g)
            ctx.set(dut.rd_bits, int(sum(int(x) << r for r, x in enumerate(bits))))
            await ctx.tick()
            assert ctx.get(dut.p_valid) == en
            want = bits @ levels[g * params.R:(g + 1) * params.R] if en else 0 * levels[0]
            got = [ctx.get(dut.p[c]) for c in range(params.cols_max)]
            assert got == want.tolist()
            assert max(abs(x) for x in got) <= 4 * params.R

    run_sim(dut, tb)


@pytest.mark.parametrize("params", [P4, P3, P5, P6])
def test_out_of_range_writes_flag_error_and_do_not_corrupt(params, run_sim):
    rng = np.random.default_rng(7)
    rows = params.groups_total * params.R
    levels = rng.integers(-4, 5, size=(rows, params.cols_max))
    bad = [(r, c) for r in range(2 ** params.row_bits) for c in range(2 ** params.col_bits)
           if r >= rows or c >= params.cols_max]
    assert bad
    dut = CrossbarMemory(params)

    async def tb(ctx):
        await program(ctx, dut, levels)
        for r, c in bad:
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_row, r)
            ctx.set(dut.w_col, c)
            ctx.set(dut.w_level, int(rng.integers(-4, 5)) or 1)
            assert ctx.get(dut.w_error) == 1
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        assert ctx.get(dut.w_error) == 0
        assert (await read_back(ctx, dut, rows, params.cols_max) == levels).all()
        for r, c in bad:                    # read-back outside the array reads 0
            ctx.set(dut.v_row, r)
            ctx.set(dut.v_col, c)
            await ctx.tick()
            assert ctx.get(dut.v_level) == 0
        # reads of nonexistent groups (when group_bits can address them) return p = 0
        for g in range(params.groups_total, 2 ** params.group_bits):
            ctx.set(dut.rd_en, 1)
            ctx.set(dut.rd_group, g)
            ctx.set(dut.rd_bits, 2 ** params.R - 1)
            await ctx.tick()
            assert ctx.get(dut.p_valid) == 1
            assert all(ctx.get(dut.p[c]) == 0 for c in range(params.cols_max))

    run_sim(dut, tb)


def test_write_then_overwrite_and_extremes(run_sim):
    """Every level -4..4 round-trips; a rewrite replaces only its cell; |p| reaches 4R."""
    params = P4
    dut = CrossbarMemory(params)
    rows = params.groups_total * params.R

    async def tb(ctx):
        full = np.full((rows, params.cols_max), 4)
        full[:, 1::2] = -4
        await program(ctx, dut, full)
        ctx.set(dut.rd_en, 1)
        ctx.set(dut.rd_bits, 2 ** params.R - 1)
        for g in range(params.groups_total):
            ctx.set(dut.rd_group, g)
            await ctx.tick()
            got = [ctx.get(dut.p[c]) for c in range(params.cols_max)]
            assert got == [4 * params.R, -4 * params.R] * (params.cols_max // 2)
        ctx.set(dut.rd_en, 0)
        for lv in range(-4, 5):
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_row, 5)
            ctx.set(dut.w_col, 3)
            ctx.set(dut.w_level, lv)
            ctx.set(dut.v_row, 5)
            ctx.set(dut.v_col, 3)
            await ctx.tick()
            ctx.set(dut.w_en, 0)
            await ctx.tick()
            assert ctx.get(dut.v_level) == lv
        full[5, 3] = 4
        assert (await read_back(ctx, dut, rows, params.cols_max) == full).all()

    run_sim(dut, tb)


@pytest.mark.parametrize("cls", [ReadDecoder, WriteDecoder, CrossbarMemory])
@pytest.mark.parametrize("params", [P3, RtlParams()])
def test_converts_to_verilog(cls, params):
    text = verilog.convert(cls(params), emit_src=False)
    assert "module" in text


@pytest.mark.parametrize("params", [P4, P3, P5])
def test_random_interleaving_against_cycle_model(params, run_sim):
    """Writes, compute reads and read-backs in random cycles, often at the same cell or word,
    against a cycle model of the documented timing: a write of cycle t is seen by a compute
    read or a read-back address of cycle t + 1 on, not by one of cycle t; p and v_level
    show the previous cycle's read."""
    rng = np.random.default_rng(100 + params.R)
    rows = params.groups_total * params.R
    levels = rng.integers(-4, 5, size=(rows, params.cols_max))
    dut = CrossbarMemory(params, levels)

    async def tb(ctx):
        lv = levels.copy()
        for _ in range(400):
            w = int(rng.integers(0, 2))
            # a narrow address range, so writes, reads and read-backs often meet
            w_row, w_col = int(rng.integers(0, min(rows, 2 * params.R))), int(rng.integers(0, 3))
            w_level = int(rng.integers(-4, 5))
            rd, g = int(rng.integers(0, 2)), int(rng.integers(0, 2 ** params.group_bits))
            bits = rng.integers(0, 2, size=params.R)
            v_row = w_row if rng.integers(0, 2) else int(rng.integers(0, 2 ** params.row_bits))
            v_col = w_col if rng.integers(0, 2) else int(rng.integers(0, params.cols_max))
            for name, val in (("w_en", w), ("w_row", w_row), ("w_col", w_col),
                              ("w_level", w_level), ("rd_en", rd), ("rd_group", g),
                              ("rd_bits", int(sum(int(b) << r for r, b in enumerate(bits)))),
                              ("v_row", v_row), ("v_col", v_col)):
                ctx.set(getattr(dut, name), val)
            if rd and g < params.groups_total:
                want_p = (bits @ lv[g * params.R:(g + 1) * params.R]).tolist()
            else:
                want_p = [0] * params.cols_max
            want_v = int(lv[v_row, v_col]) if v_row < rows else 0
            if w:
                lv[w_row, w_col] = w_level
            await ctx.tick()
            assert ctx.get(dut.p_valid) == rd
            assert [ctx.get(dut.p[c]) for c in range(params.cols_max)] == want_p
            assert ctx.get(dut.v_level) == want_v
        ctx.set(dut.w_en, 0)
        assert (await read_back(ctx, dut, rows, params.cols_max) == lv).all()

    run_sim(dut, tb)


def test_default_size_simulates_in_amaranth(run_sim):
    """The default design's crossbar (512 cells a word) elaborates and runs in Amaranth's
    simulator: one write, its read-back and a compute read."""
    params = RtlParams()
    dut = CrossbarMemory(params)
    row, col = params.R + 1, params.cols_max - 1

    async def tb(ctx):
        ctx.set(dut.w_en, 1)
        ctx.set(dut.w_row, row)
        ctx.set(dut.w_col, col)
        ctx.set(dut.w_level, -3)
        await ctx.tick()
        ctx.set(dut.w_en, 0)
        ctx.set(dut.v_row, row)
        ctx.set(dut.v_col, col)
        ctx.set(dut.rd_en, 1)
        ctx.set(dut.rd_group, 1)
        ctx.set(dut.rd_bits, 0b0010)
        await ctx.tick()
        assert ctx.get(dut.v_level) == -3
        assert ctx.get(dut.p[col]) == -3 and ctx.get(dut.p[col - 1]) == 0

    run_sim(dut, tb)
