"""Verilog export: one file per top, reproducibly (``emit_src=False``), written atomically.

Tops: every block on its own (for unit testbenches and per-block synthesis) and the whole
core. The parameters and derived widths go into a JSON file beside the Verilog, so that the
cocotb runner and the synthesis report read them back instead of repeating them.
"""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog

from ..golden.contract import atomic_write
from .params import RtlParams

__all__ = ["TOPS", "build_top", "export"]

#: Names of the exportable tops, in export order.
TOPS = ("rng", "arbiter", "crossbar", "aac", "comparator", "averaging", "core")
#: Tops that build_top also knows but export/synthesis skip by default (testbench wrappers).
EXTRA_TOPS = ("decoders",)

#: Written by :func:`export` beside the Verilog; read by testbenches and synthesis reports.
PARAMS_JSON = "params.json"


def build_top(name: str, p: RtlParams):
    """A fresh component for top ``name``."""
    if name == "rng":
        from .rng import SotMtjRng
        return SotMtjRng(p.rng_bits)
    if name == "arbiter":
        from .arbiter import Arbiter
        return Arbiter(p.N, p.n_max, p.rng_bits)
    if name == "crossbar":
        from .crossbar import CrossbarMemory
        return CrossbarMemory(p)
    if name == "aac":
        from .aac import AdderAccumulator
        return AdderAccumulator(p)
    if name == "comparator":
        from .comparator import ComparatorBank
        return ComparatorBank(p)
    if name == "averaging":
        from .averaging import AveragingBlock
        return AveragingBlock(p)
    if name == "core":
        from .network import SpinBayesCore
        return SpinBayesCore(p)
    if name == "decoders":
        return _decoders_top(p)
    raise ValueError(f"top must be one of {TOPS + EXTRA_TOPS}, not {name!r}")


def _decoders_top(p: RtlParams):
    """Testbench top: a ReadDecoder (ports ``rd_*``) and a WriteDecoder (``wr_*``) side by
    side, each port renamed with its prefix. Combinational, so the Verilog has no clk/rst."""
    from amaranth import Module
    from amaranth.lib import wiring

    from .decoders import ReadDecoder, WriteDecoder

    class Decoders(wiring.Component):
        def __init__(self):
            self.rdec, self.wdec = ReadDecoder(p), WriteDecoder(p)
            sig = {}
            for prefix, sub in (("rd", self.rdec), ("wr", self.wdec)):
                for pname, member in sub.signature.members.items():
                    sig[f"{prefix}_{pname}"] = member
            super().__init__(sig)

        def elaborate(self, platform):
            m = Module()
            m.submodules.rdec, m.submodules.wdec = self.rdec, self.wdec
            for prefix, sub in (("rd", self.rdec), ("wr", self.wdec)):
                for pname, member in sub.signature.members.items():
                    mine, theirs = getattr(self, f"{prefix}_{pname}"), getattr(sub, pname)
                    m.d.comb += (theirs.eq(mine) if member.flow == wiring.In
                                 else mine.eq(theirs))
            return m

    return Decoders()


def export(p: RtlParams, out_dir, tops=TOPS) -> list[Path]:
    """Write ``<top>.v`` for each top and ``params.json``; returns the written paths."""
    out = Path(out_dir)
    written = []
    for name in tops:
        dut = build_top(name, p)
        text = verilog.convert(dut, name=f"spinbayes_{name}", emit_src=False)
        path = out / f"{name}.v"
        atomic_write(path, text)
        written.append(path)
    atomic_write(out / PARAMS_JSON, json.dumps(p.describe(), indent=2, sort_keys=True))
    written.append(out / PARAMS_JSON)
    return written
