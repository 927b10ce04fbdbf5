"""SOT-MTJ random bit source: the synthesizable emulation of docs/HARDWARE.md (section 3.5.1).

One :class:`SotMtjRng` stands for one SOT-MTJ device. The physical device (SET pulse at the
bias current, sense, RESET) is not synthesizable, so it is **emulated**: a 32-bit xorshift32
(shift triple 13, 17, 5) whose top W = ``rng_bits`` state bits are compared with a W + 1 bit
threshold ``thr = threshold_for(p_sw(I), W)`` computed on the host. It is bit-exact with the
golden twin :class:`spinbayes.golden.mtj.EmulatedRng`. An external entropy bit (``ext_en``,
``ext_bit``) replaces the emulated bit, so a testbench can drive the device from the
behavioural :class:`~spinbayes.golden.mtj.MTJRng` (or a stuck-at fault) instead.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.mtj import xorshift32

__all__ = ["SotMtjRng", "xorshift32_next"]

_MASK = 0xFFFFFFFF


def _silence(component):
    """A half-built block whose ``__init__`` raises must not also warn "created but never
    used" when it is garbage-collected."""
    component._MustUse__silence = True


def xorshift32_next(m: Module, state, name: str = "next"):
    """Combinational xorshift32 step of a 32-bit ``state`` (exactly golden.mtj.xorshift32):
    s ^= s << 13; s ^= s >> 17; s ^= s << 5, logical shifts, mod 2^32. Returns the new state
    (a 32-bit Signal driven in ``m.d.comb``)."""
    s1 = Signal(32, name=f"{name}_a")
    s2 = Signal(32, name=f"{name}_b")
    s3 = Signal(32, name=f"{name}_c")
    m.d.comb += [
        s1.eq(state ^ (state << 13)[:32]),
        s2.eq(s1 ^ (s1 >> 17)),
        s3.eq(s2 ^ (s2 << 5)[:32]),
    ]
    return s3


class SotMtjRng(wiring.Component):
    """Emulated SOT-MTJ device: xorshift32 state and a W-bit threshold compare.

    Per step, with s the 32-bit state::

        next = xorshift32(s)                          # s ^= s<<13; s ^= s>>17; s ^= s<<5
        bit  = next[32-W : 32] < threshold            # unsigned; threshold in 0 .. 2^W

    ``bit`` is the bit that the twin ``EmulatedRng(seed, threshold, W).bits()`` yields for
    the **next** step: it is combinational from the current state, so a consumer samples it in
    the same cycle in which it asserts ``step``. After ``load`` of ``seed``, stepping n times
    and sampling ``bit`` in the cycle of each step gives exactly
    ``EmulatedRng(seed, threshold, W).bits(n)``, and ``state`` then equals the twin's
    ``state``. threshold = 0 gives all zeros, threshold = 2^W all ones.

    The emulated state keeps stepping while ``ext_en`` is set (only the output is replaced),
    so switching the external source off resumes the emulated stream where it stands.

    Parameters
    ----------
    rng_bits : int
        W, the word width compared with the threshold, 1 .. 32 (default 16).

    Ports
    -----
    seed : In(32)
        Seed loaded by ``load``. Seed 0 (the xorshift's fixed point, which the golden model
        refuses and firmware never writes) is loaded as 1, so the device can never lock up.
    load : In(1)
        On the clock edge: ``state <= seed`` (or 1 if seed == 0). Takes priority over ``step``.
    step : In(1)
        On the clock edge (without ``load``): ``state <= next``, i.e. the bit on ``bit`` in
        this cycle has been consumed.
    threshold : In(W + 1)
        Unsigned threshold thr in 0 .. 2^W (``threshold_for(p_sw(I), W)``; 2^(W-1) for 230 µA).
    ext_en : In(1)
        Replace the emulated bit by ``ext_bit`` (external entropy, e.g. the behavioural
        device model of a testbench, or a forced stuck-at fault).
    ext_bit : In(1)
        The external bit used when ``ext_en`` is set.
    bit : Out(1)
        ``ext_bit`` if ``ext_en`` else ``next[32-W:32] < threshold``. Combinational.
    state : Out(32)
        The current xorshift32 state (debug; equals the twin's ``EmulatedRng.state``).

    Latency: ``bit`` is combinational (0 cycles) from ``state``, ``threshold`` and the
    external inputs (the next state is held in a register beside ``state``, so the path to
    ``bit`` is only the threshold compare); ``state`` updates on the clock edge after
    ``load`` / ``step`` (1 cycle). One bit per cycle. Reset value of ``state``: 1.
    """

    def __init__(self, rng_bits: int = 16):
        if isinstance(rng_bits, bool) or not isinstance(rng_bits, int) or rng_bits < 1:
            _silence(self)
            raise ValueError(f"rng_bits must be a positive integer, not {rng_bits!r}")
        if rng_bits > 32:
            _silence(self)
            raise ValueError(f"rng_bits must be at most 32 (the xorshift32 state), "
                             f"not {rng_bits!r}")
        self.rng_bits = rng_bits
        super().__init__({
            "seed": In(32),
            "load": In(1),
            "step": In(1),
            "threshold": In(unsigned(rng_bits + 1)),
            "ext_en": In(1),
            "ext_bit": In(1),
            "bit": Out(1),
            "state": Out(32, init=1),
        })

    def elaborate(self, platform):
        W = self.rng_bits
        m = Module()
        # ``ahead`` = xorshift32(state), kept in a register one step ahead of ``state``, so
        # the bit is only the threshold compare of a register (no xorshift in front of the
        # consumer's decision logic); the xorshift runs from ``ahead`` into ``ahead``.
        ahead = Signal(32, init=xorshift32(1))
        seed = Signal(32)
        m.d.comb += seed.eq(Mux(self.seed == 0, 1, self.seed))
        seed_next = xorshift32_next(m, seed, "seed_next")
        ahead_next = xorshift32_next(m, ahead, "ahead_next")
        word = ahead[32 - W:32]
        m.d.comb += self.bit.eq(Mux(self.ext_en, self.ext_bit, word < self.threshold))
        with m.If(self.load):
            m.d.sync += [self.state.eq(seed), ahead.eq(seed_next)]
        with m.Elif(self.step):
            m.d.sync += [self.state.eq(ahead), ahead.eq(ahead_next)]
        return m
