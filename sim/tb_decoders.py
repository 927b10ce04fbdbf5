"""cocotb testbench of the read and write decoders (rtl.decoders, top "decoders").

The top (rtl.export ``decoders``) holds a ReadDecoder (ports ``rd_*``) and a WriteDecoder
(``wr_*``); both are combinational, so there is no clock: each transaction drives both
decoders' inputs, waits 1 ns and checks every output against
:func:`spinbayes.sim.models.read_decoder` / :func:`~spinbayes.sim.models.write_decoder`.
Addresses are drawn at the corners (first, last row/column), inside and outside the array
(out-of-range rows/columns must give ``error`` and no ``we``).
"""

import cocotb
from cocotb.triggers import Timer

from spinbayes.rtl.params import RtlParams
from spinbayes.sim import common
from spinbayes.sim.common import KINDS, address
from spinbayes.sim.models import read_decoder, write_decoder


@cocotb.test()
async def test_random_addresses(dut):
    described, s, rng, _ = common.Setup()
    params = RtlParams.from_describe(described)
    R, G, C = params.R, params.groups_total, params.cols_max
    rows, row_bits = G * R, params.row_bits
    col_bits, group_bits = params.col_bits, params.group_bits
    row_kinds = [k for k in KINDS if k != "outside" or rows < 1 << row_bits]
    col_kinds = [k for k in KINDS if k != "outside" or C < 1 << col_bits]
    cov = common.CoverGroup("decoders", {
        "rd_en": [0, 1],
        "rd_group": list(range(1 << group_bits)),
        "wr_en": [0, 1],
        "wr_row": row_kinds,
        "wr_col": col_kinds,
        "wr_lane": list(range(R)),
        "wr_group": list(range(G)),
        "wr_error": [0, 1],
    }, {"row_x_col_x_en": ("wr_row", "wr_col", "wr_en")})
    sb = common.Scoreboard("decoders")
    for _ in range(s["transactions"]):
        rd_en = int(rng.random() >= s["stall_prob"])
        wr_en = int(rng.random() >= s["stall_prob"])
        group = int(rng.integers(0, 1 << group_bits))
        rk, ck = row_kinds[rng.integers(len(row_kinds))], col_kinds[rng.integers(len(col_kinds))]
        row, col = address(rng, rk, rows, row_bits), address(rng, ck, C, col_bits)
        dut.rd_en.value, dut.rd_group.value = rd_en, group
        dut.wr_en.value, dut.wr_row.value, dut.wr_col.value = wr_en, row, col
        await Timer(1, unit="ns")
        ctx = {"rd_en": rd_en, "group": group, "wr_en": wr_en, "row": row, "col": col}
        for name, exp in read_decoder(params, rd_en, group).items():
            sb.check(f"rd_{name}", exp, int(getattr(dut, f"rd_{name}").value), **ctx)
        wexp = write_decoder(params, wr_en, row, col)
        for name, exp in wexp.items():
            sb.check(f"wr_{name}", exp, int(getattr(dut, f"wr_{name}").value), **ctx)
        sb.transaction()
        sample = {"rd_en": rd_en, "rd_group": group, "wr_en": wr_en, "wr_row": rk,
                  "wr_col": ck, "wr_error": wexp["error"]}
        if row < rows:
            sample.update(wr_lane=wexp["lane"], wr_group=wexp["group"])
        cov.sample(**sample)
    common.finish(common.TbReport(), "decoders", sb, s["coverage_goal"])
