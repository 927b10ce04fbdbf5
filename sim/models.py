"""Reference models of the RTL blocks, cycle by cycle, in plain Python (no cocotb, no torch).

They follow the port contracts written in rtl/*.py and docs/HARDWARE.md and reuse the golden
twins where those are cheap per transaction (``golden.mtj.xorshift32``); tests/sim
checks each model against the golden model it stands for (``EmulatedRng``, the golden
``Arbiter`` over a ``DeviceBank``, ``HwLayer.activate``, ``HwOutput``), so a tb compares the
RTL with the golden contract through a fast per-transaction model. The models of blocks built
from an :class:`~spinbayes.rtl.params.RtlParams` take that same object, and every width,
bound and pipeline constant is the RTL's own (rtl/params.py, golden/contract.py). Neither
torch nor Amaranth is imported here: they would add seconds to every simulator start.
"""

from __future__ import annotations

import numpy as np

from spinbayes.golden.mtj import xorshift32
from spinbayes.rtl.params import MAC_LATENCY, RtlParams, divide_cycles

__all__ = ["AacModel", "ArbiterModel", "AveragingModel", "CrossbarModel", "RngModel",
           "comparator_act", "comparator_ops", "read_decoder", "wrap", "write_decoder"]


def wrap(x: int, bits: int) -> int:
    """x as a two's-complement ``bits``-bit value."""
    return (int(x) + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))


def _checked(params) -> RtlParams:
    if not isinstance(params, RtlParams):
        raise ValueError(f"params must be an RtlParams (RtlParams.from_describe reads a "
                         f"params.json dict), not {params!r}")
    return params


# --- SOT-MTJ RNG -------------------------------------------------------------------------------

class RngModel:
    """rtl.rng.SotMtjRng: ``bit`` of the current cycle, ``state`` after each edge."""

    def __init__(self, rng_bits: int):
        self.W = rng_bits
        self.state = 1

    def next_state(self) -> int:
        return xorshift32(self.state)

    def bit(self, threshold: int, ext_en: int = 0, ext_bit: int = 0) -> int:
        if ext_en:
            return int(ext_bit)
        return int((self.next_state() >> (32 - self.W)) < threshold)

    def edge(self, load: int, seed: int, step: int):
        if load:
            self.state = seed or 1
        elif step:
            self.state = self.next_state()


# --- arbiter ---------------------------------------------------------------------------------

class ArbiterModel:
    """rtl.arbiter.Arbiter, one selection at a time.

    :meth:`select` returns what the RTL shows at ``done`` for a ``start`` with ``n_way``:
    sorted indices, mask, cycles start -> done (draws + 1), the draws of the pass split into
    out-of-range redraws (code >= N) and repeats (crossbar already held), and updates the
    ``draws`` / ``rejections`` / ``stuck`` counters. ``ext``: None (emulated devices) or a
    callable returning the k external bits of one draw (device 0 first = the code's MSB);
    the emulated states step either way."""

    def __init__(self, N: int, n_max: int, rng_bits: int):
        self.N, self.n_max, self.W = N, n_max, rng_bits
        self.k = (N - 1).bit_length()
        self.max_redraws = 64 << self.k
        self.devices = [RngModel(rng_bits) for _ in range(self.k)]
        self.draws = self.rejections = self.streak = 0
        self.stuck = 0
        self.mask = 0

    def seed_load(self, device: int, seed: int):
        if device < self.k:
            self.devices[device].state = seed or 1

    def clamp(self, n_way: int) -> int:
        return 1 if n_way == 0 else min(n_way, self.n_max)

    def select(self, n_way: int, threshold: int, ext=None, max_draws: int = 100_000) -> dict:
        n = self.clamp(n_way)
        if self.k == 0:
            self.mask = 1
            return {"indices": [0], "mask": 1, "cycles": 1, "draws": 0, "out_of_range": 0,
                    "repeats": 0, "done": True}
        held, oor, rep, d = [], 0, 0, 0
        while len(held) < n:
            if d >= max_draws:
                break
            bits = ext() if ext is not None else None
            code = 0
            for i, dev in enumerate(self.devices):
                b = int(bits[i]) if bits is not None else dev.bit(threshold)
                dev.state = dev.next_state()
                code = (code << 1) | b
            d += 1
            if code >= self.N or code in held:
                oor += code >= self.N
                rep += code < self.N
                if self.streak >= self.max_redraws:
                    self.stuck = 1
                self.streak = min(self.streak + 1, self.max_redraws + 1)
            else:
                held.append(code)
                self.streak = 0
        self.draws = (self.draws + d) % 2 ** 32
        self.rejections = (self.rejections + oor + rep) % 2 ** 32
        self.mask = sum(1 << c for c in held)
        return {"indices": sorted(held), "mask": self.mask, "cycles": d + 1, "draws": d,
                "out_of_range": oor, "repeats": rep, "done": len(held) == n}

    def trace(self, indices: list[int]) -> list[int]:
        """The ``indices`` port: the choices ascending, unused slots 0."""
        return sorted(indices) + [0] * (self.n_max - len(indices))


# --- decoders ---------------------------------------------------------------------------------

def read_decoder(p: RtlParams, en: int, group: int) -> dict:
    """rtl.decoders.ReadDecoder outputs."""
    p = _checked(p)
    return {"row_base": (group * p.R) % (1 << p.row_bits), "active": en,
            "wl": ((1 << p.R) - 1) if en else 0}


def write_decoder(p: RtlParams, en: int, row: int, col: int) -> dict:
    """rtl.decoders.WriteDecoder outputs."""
    p = _checked(p)
    R, rows = p.R, p.groups_total * p.R
    bad = row >= rows or col >= p.cols_max
    return {"group": (row // R) % (1 << p.group_bits), "lane": row % R,
            "col_sel": col, "we": int(en and not bad), "error": int(en and bad)}


# --- crossbar ----------------------------------------------------------------------------------

class CrossbarModel:
    """rtl.crossbar.CrossbarMemory: levels (rows, cols_max), writes, read-back, compute reads.

    Call :meth:`cycle` with one cycle's inputs; it returns the outputs the RTL shows in that
    cycle (combinational ``w_error``; ``v_level``, ``p``, ``p_valid`` of the previous cycle's
    requests), then applies the cycle's write (reads never see a write of the same cycle)."""

    def __init__(self, p: RtlParams):
        self.p = p = _checked(p)
        self.R, self.G, self.C = p.R, p.groups_total, p.cols_max
        self.levels = np.zeros((self.G * self.R, self.C), dtype=np.int64)
        self.v_next = 0
        self.p_next = np.zeros(self.C, dtype=np.int64)
        self.p_valid_next = 0

    def in_array(self, row: int, col: int) -> bool:
        return row < self.G * self.R and col < self.C

    def compute(self, group: int, bits: int) -> np.ndarray:
        if group >= self.G:
            return np.zeros(self.C, dtype=np.int64)
        rows = [r for r in range(self.R) if bits >> r & 1]
        return self.levels[[group * self.R + r for r in rows]].sum(0) if rows else \
            np.zeros(self.C, dtype=np.int64)

    def cycle(self, *, w_en=0, w_row=0, w_col=0, w_level=0, v_row=0, v_col=0, rd_en=0,
              rd_group=0, rd_bits=0, w_accept=True) -> dict:
        out = {"w_error": int(bool(w_en) and not self.in_array(w_row, w_col)),
               "v_level": self.v_next, "p": self.p_next, "p_valid": self.p_valid_next}
        self.v_next = int(self.levels[v_row, v_col]) if self.in_array(v_row, v_col) else 0
        self.p_next = self.compute(rd_group, rd_bits) if rd_en else \
            np.zeros(self.C, dtype=np.int64)
        self.p_valid_next = int(bool(rd_en))
        if w_en and w_accept and self.in_array(w_row, w_col):
            self.levels[w_row, w_col] = w_level
        return out


# --- adder-accumulator ------------------------------------------------------------------------

class AacModel:
    """rtl.aac.AdderAccumulator: ``S`` (sum_bits, wrapping) and ``ops`` after each edge."""

    def __init__(self, p: RtlParams):
        self.p = p = _checked(p)
        self.S = [0] * p.outputs_max
        self.ops = 0

    def edge(self, clear: int, valid: int, plane: int, codes, p_mask: int):
        """codes: (n_max, cols_max) ADC codes of the read."""
        p, k = self.p, self.p.k_cells
        for j in range(p.outputs_max):
            add = 0
            if valid:
                t = sum(codes[x][j * k + c] for x in range(p.n_max) if p_mask >> x & 1
                        for c in range(k))
                add = t << plane
            base = 0 if clear else self.S[j]
            self.S[j] = wrap(base + add, p.sum_bits)
        if valid:
            self.ops = (self.ops + 1) % 2 ** 32


# --- comparators -------------------------------------------------------------------------------

def comparator_act(S, theta, sign) -> list[int]:
    """rtl.comparator.ComparatorBank ``act``: sum_m [sigma_j S_j >= theta_jm], sigma = -1 where
    ``sign`` bit j is 1. S: (outputs,), theta: (outputs, levels), sign: int bit mask."""
    return [sum(int((-s if sign >> j & 1 else s) >= t) for t in theta[j])
            for j, s in enumerate(S)]


def comparator_ops(n_out: int, outputs_max: int, levels: int) -> int:
    return min(n_out, outputs_max) * levels


# --- averaging ------------------------------------------------------------------------------

class AveragingModel:
    """rtl.averaging.AveragingBlock, cycle by cycle: one pipelined multiply-add per class in
    use (``y_c = M_c S_c + B_c`` at out_bits written MAC_LATENCY - 1 edges + c after the
    ``pass_valid`` edge, ``Y_c += y_c`` at total_bits one edge later), the per-image floor
    average, argmax and divider latency (DIV_BITS quotient bits per cycle); the constants
    and :func:`~spinbayes.rtl.params.divide_cycles` are the RTL's (rtl/params.py)."""

    def __init__(self, p: RtlParams):
        self.p = p = _checked(p)
        C = p.classes_max
        self.y = [0] * C
        self.Y = [0] * C
        self.y_count = 0
        self.mult_ops = self.avg_ops = 0
        self._events = []              # [edges to go, "y" | "Y", class, y value]

    @property
    def busy(self) -> bool:
        """Multiply-adds in flight (the block's busy outside a division)."""
        return bool(self._events)

    def edge(self, clear: int, pass_valid: int, S, M, B, n_out: int):
        """The clock edge ending a cycle with these inputs."""
        p, C = self.p, self.p.classes_max
        due = []
        for e in self._events:
            e[0] -= 1
            if e[0] == 0:
                due.append(e)
        self._events = [e for e in self._events if e[0] > 0]
        for _, kind, c, y in due:
            if kind == "y":
                self.y[c] = y
                self.y_count += 1
            else:
                self.Y[c] = wrap(self.Y[c] + y, p.total_bits)
        if clear:
            self.Y = [0] * C
            self.y_count = 0
            self._events = []
        if pass_valid:
            n = min(n_out, C)
            for c in range(n):
                y = wrap(M[c] * S[c] + B[c], p.out_bits)
                self._events += [[MAC_LATENCY - 1 + c, "y", c, y],
                                 [MAC_LATENCY + c, "Y", c, y]]
            self.y_count = 0
            self.mult_ops = (self.mult_ops + n) % 2 ** 32

    def finish(self, T: int, n_out: int) -> dict:
        """averaged (all classes_max, 0 for unused), cls and cycles finish -> done."""
        C = self.p.classes_max
        n = min(n_out, C)
        avg = [(self.Y[c] + T // 2) // T if c < n else 0 for c in range(C)]
        used = self.Y[:n]
        cls = used.index(max(used)) if n else 0
        self.avg_ops = (self.avg_ops + n) % 2 ** 32
        return {"averaged": avg, "cls": cls,
                "cycles": n * divide_cycles(self.p) + 4 if n else 1}

