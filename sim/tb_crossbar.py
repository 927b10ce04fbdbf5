"""cocotb testbench of the behavioural crossbar memory (rtl.crossbar.CrossbarMemory).

Each cycle may carry a cell write (w_*), a read-back (v_*) and a compute read (rd_*), all
independent ports, or nothing (idle gaps from the stall probability). Writes honour
``w_ready``: a write is held until a cycle in which ``w_ready`` is high, and only then
applied to the model. Every output of every cycle (``w_error``, ``v_level``, ``p``,
``p_valid``, ``w_ready`` wait cycles counted) is checked against
:class:`spinbayes.sim.models.CrossbarModel`. Directed bursts fill one column of a group with
+4 or -4 and read it with all input bits set, so the ADC codes reach +-4R.
"""

import cocotb
import numpy as np

from spinbayes.rtl.params import RtlParams
from spinbayes.sim import common
from spinbayes.sim.models import CrossbarModel


@cocotb.test()
async def test_random_cycles(dut):
    described, s, rng, stalls = common.Setup()
    params = RtlParams.from_describe(described)
    R, G, C = params.R, params.groups_total, params.cols_max
    rows, row_bits, col_bits = G * R, params.row_bits, params.col_bits
    group_bits, adc = params.group_bits, params.adc_bits
    row_kinds = [k for k in common.KINDS if k != "outside" or rows < 1 << row_bits]
    col_kinds = [k for k in common.KINDS if k != "outside" or C < 1 << col_bits]
    cov = common.CoverGroup("crossbar", {
        "w_row": row_kinds, "w_col": col_kinds, "w_level": list(range(-4, 5)),
        "w_error": [0, 1], "v_addr": ["inside", "outside"],
        "read_write_same_cell": [True],
        "rd_group": list(range(1 << group_bits)), "rd_bits": ["none", "all", "some"],
        "p_extreme": [f"+{4 * R}", f"-{4 * R}"], "gap": ["0", "1", "2-3", "4+"],
    }, {"row_x_col": ("w_row", "w_col")})
    sb = common.Scoreboard("crossbar")
    model = CrossbarModel(params)
    c = await common.start(dut, w_en=0, w_row=0, w_col=0, w_level=0, v_row=0, v_col=0,
                           rd_en=0, rd_group=0, rd_bits=0)
    writes, reads = [], []          # directed queues
    pending = None                  # a write waiting for w_ready
    waits = done = 0
    while done < s["transactions"]:
        gap = stalls.gap()
        for _ in range(gap):        # idle cycles: nothing requested, outputs still checked
            dut.w_en.value = dut.rd_en.value = dut.v_row.value = dut.v_col.value = 0
            await c.cycle()
            exp = model.cycle()
            sb.check("p_valid", exp["p_valid"], int(dut.p_valid.value))
            sb.check("p", list(exp["p"]), common.unpack(dut.p.value, adc, C, True))
            sb.check("v_level", exp["v_level"], dut.v_level.value.to_signed())
        if rng.random() < 0.01:     # fill a column of a group with +-4, then read it
            g, col, lvl = int(rng.integers(G)), int(rng.integers(C)), int(rng.choice([-4, 4]))
            writes += [(g * R + r, col, lvl, "inside", "inside", True) for r in range(R)]
            reads.append((g, (1 << R) - 1))
        if pending is None and (writes or rng.random() < 0.7):
            if writes:
                pending = writes.pop(0)
            else:
                rk = row_kinds[rng.integers(len(row_kinds))]
                ck = col_kinds[rng.integers(len(col_kinds))]
                pending = (common.address(rng, rk, rows, row_bits),
                           common.address(rng, ck, C, col_bits), int(rng.integers(-4, 5)),
                           rk, ck, False)
        v_row = common.address(rng, "outside" if rng.random() < 0.1 and rows < 1 << row_bits
                        else "inside", rows, row_bits)
        v_col = int(rng.integers(0, C))
        if pending is not None and rng.random() < 0.1 and pending[0] < rows:
            v_row, v_col = pending[0], pending[1]      # read-back of the cell being written
        rd_en = int(bool(reads) or rng.random() < 0.7)
        directed_done = not writes and not (pending is not None and pending[5])
        rd_group, rd_bits = reads.pop(0) if reads and directed_done else (
            int(rng.integers(0, 1 << group_bits)), int(rng.integers(0, 1 << R)))
        w = pending or (0, 0, 0, None, None, False)
        dut.w_en.value, dut.w_row.value, dut.w_col.value = int(pending is not None), w[0], w[1]
        dut.w_level.value = w[2]
        dut.v_row.value, dut.v_col.value = v_row, v_col
        dut.rd_en.value, dut.rd_group.value, dut.rd_bits.value = rd_en, rd_group, rd_bits
        await c.cycle()
        ready = int(dut.w_ready.value)
        exp = model.cycle(w_en=int(pending is not None), w_row=w[0], w_col=w[1], w_level=w[2],
                          v_row=v_row, v_col=v_col, rd_en=rd_en, rd_group=rd_group,
                          rd_bits=rd_bits, w_accept=bool(ready))
        ctx = {"w": w[:3], "v": (v_row, v_col), "rd": (rd_en, rd_group, rd_bits)}
        got_p = common.unpack(dut.p.value, adc, C, True)
        if pending is not None:
            sb.check("w_error", exp["w_error"], int(dut.w_error.value), **ctx)
        sb.check("v_level", exp["v_level"], dut.v_level.value.to_signed(), **ctx)
        sb.check("p", list(exp["p"]), got_p, **ctx)
        sb.check("p_valid", exp["p_valid"], int(dut.p_valid.value), **ctx)
        sb.transaction()
        done += 1
        sample = {"gap": common.gap_bin(gap), "rd_group": rd_group if rd_en else None,
                  "rd_bits": "none" if rd_bits == 0 else "all" if rd_bits == (1 << R) - 1
                  else "some", "v_addr": "inside" if v_row < rows else "outside"}
        if pending is not None and pending[0] == v_row and pending[1] == v_col:
            sample["read_write_same_cell"] = True
        for e in (4 * R, -4 * R):
            if e in got_p:
                sample["p_extreme"] = f"{e:+d}"
        if not rd_en:
            del sample["rd_group"], sample["rd_bits"]
        if pending is not None and ready:
            sample.update(w_row=pending[3], w_col=pending[4], w_level=pending[2],
                          w_error=exp["w_error"])
            pending = None
        elif pending is not None:
            waits += 1
        cov.sample(**sample)
    common.finish(common.TbReport(), "crossbar", sb, s["coverage_goal"], cycles=c.cycles,
                  w_ready_waits=waits)


@cocotb.test()
async def test_program_stream(dut):
    """Program a random image through the write port as a valid/ready stream (StreamDriver
    with random stalls, honouring w_ready; a StreamMonitor records the accepted writes),
    then read every cell back: the monitored writes equal the sent ones, in order, and every
    read-back level equals the image."""
    described, config = common.tb_env()
    params = RtlParams.from_describe(described)
    s = common.tb_settings(config)
    rng = np.random.default_rng(s["seed"] + 5)
    R, G, C = params.R, params.groups_total, params.cols_max
    image = rng.integers(-4, 5, size=(G * R, C))
    c = await common.start(dut, w_en=0, w_row=0, w_col=0, w_level=0, v_row=0, v_col=0,
                           rd_en=0, rd_group=0, rd_bits=0)
    fields = {"row": dut.w_row, "col": dut.w_col, "level": dut.w_level}
    drv = common.StreamDriver(c, dut.w_en, fields, ready=dut.w_ready,
                              stalls=common.Stalls(s["stall_prob"], s["seed"] + 6, max_gap=3))
    mon = common.StreamMonitor(dut.w_en, fields, ready=dut.w_ready)
    c.hooks.append(mon.sample)
    sent = [{"row": r, "col": col, "level": int(image[r, col])}
            for r in range(G * R) for col in range(C)]
    for txn in sent:
        await drv.send(txn)
    await c.cycle()
    c.hooks.clear()
    sb = common.Scoreboard("crossbar_program")
    got = [{**t, "level": t["level"] - 16 if t["level"] >= 8 else t["level"]} for t in mon.items]
    sb.check("monitored writes", sent, got)
    for r in range(G * R):
        for col in range(C):
            dut.v_row.value, dut.v_col.value = r, col
            await c.cycle()                      # the address cycle
            await c.cycle()                      # v_level of the previous cycle's address
            sb.check("v_level", int(image[r, col]), dut.v_level.value.to_signed(),
                     row=r, col=col)
            sb.transaction()
    report = common.TbReport()
    report["crossbar_program"] = {**sb.summary(), "writes": drv.sent, "idle_cycles": drv.idles,
                                  "ready_waits": drv.waits}
    report.write()
    sb.assert_ok()
