"""First-layer reuse: each crossbar's first-layer sums computed once per image and kept.

The first layer's input is the same image in every pass, so its pre-activation sums for
crossbar k are the same in every pass that picks k. With the ``REUSE`` register set, the core
reads the first layer of crossbar k only in the first pass of an image that picks it, keeps its
sums per output position in the cache (a block RAM), and forms every pass's n-way sums by adding
the n kept vectors of the pass's choice (docs/HARDWARE.md, "First-layer reuse"). The outputs
are bit-identical to those without reuse (the same integers added; every partial sum stays
within the adder-accumulator's sum_bits); the reads, the accumulations and the cycles change.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import RtlParams, check_params

__all__ = ["REUSE_DRAIN", "ReuseCache", "cache_bits", "reuse_stage"]

#: Cycles from a crossbar's last read to its sums in the adder-accumulator (the core's DRAIN).
REUSE_DRAIN = 3


class ReuseCache(wiring.Component):
    """The first-layer cache and its controller: one output position of layer 0 per ``start``.

    The cache is a memory of N * reuse_positions words (crossbar k, position q at address
    k * reuse_positions + q), each the reuse_outputs sums of one crossbar at one position
    (signed sum_bits each). Valid bits, one per crossbar, are cleared by ``image_start``; in a
    pass's first position (``layer_start`` sets the position to 0) the crossbars of ``mask``
    not yet valid become the pass's *fresh* crossbars and every crossbar of ``mask`` valid.

    Per ``start`` (one output position, the window already in the core's buffer):

    * PLAN, one cycle per slot s < ``n_way`` (``idx[s]``), and one more: a fresh crossbar k is
      read alone: RUN issues its ceil(rows / R) * A reads (``issue``, ``group``, ``plane``,
      crossbar ``k``; the adder-accumulator cleared in RUN's first cycle, ``clear``), DRAIN
      waits 3 cycles and writes the adder-accumulator's sums ``aac_S`` to the cache in the last;
    * COMB, ``n_way`` cycles: the cache words of ``idx[0 .. n_way - 1]`` at this position are
      read (latency 1) and added into ``S``, the last in SUM;
    * DONE, one cycle: ``done``, ``S`` final (it holds until the next ``start``); ``ops`` +=
      n_way - 1 (the additions of the kept sums).

    Latency, ``start`` to ``done``: 2 n + 4 + f (ceil(rows / R) * A + 3) cycles for f fresh
    crossbars in the choice. ``S`` is zero beyond reuse_outputs. ``skip``: the pass has no fresh
    crossbar (from ``layer_start`` on, with ``mask`` the pass's choice once the arbiter is
    done): its windows need not be fetched.

    Every control the read path and the adder-accumulator take (``issue``, ``clear``,
    ``plane``, ``group``, ``k``) is a register, set on the FSM's transitions: no combinational
    path from the FSM's state, ``slot`` or ``fresh`` reaches the crossbars' read enables or the
    accumulators' enable.
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        if not p.reuse:
            self._MustUse__silence = True
            raise ValueError(f"ReuseCache needs reuse_positions > 0, not {p.reuse_positions!r}")
        sums = data.ArrayLayout(signed(p.sum_bits), p.outputs_max)
        super().__init__({
            "image_start": In(1), "layer_start": In(1), "start": In(1),
            "mask": In(p.N), "idx": In(data.ArrayLayout(unsigned(p.index_bits), p.n_max)),
            "n_way": In(range(p.n_max + 1)),
            "last_group": In(range(p.groups_total + 1)), "last_plane": In(range(p.A_max + 1)),
            "aac_S": In(sums),
            "issue": Out(1), "plane": Out(range(p.A_max)), "group": Out(range(p.groups_total)),
            "clear": Out(1), "k": Out(p.index_bits), "done": Out(1), "S": Out(sums),
            "ops": Out(32), "skip": Out(1),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        P, W = p.reuse_positions, p.reuse_outputs
        m.submodules.cache = mem = Memory(shape=data.ArrayLayout(signed(p.sum_bits), W),
                                          depth=p.N * P, init=[])
        wp, rp = mem.write_port(), mem.read_port()
        valid, fresh = Signal(p.N), Signal(p.N)
        pos = Signal(range(P + 1))
        slot = Signal(range(p.n_max + 1))
        cs = Signal(range(p.n_max))
        drain = Signal(2)
        got = Signal()                      # a cache word read in the last cycle: add it
        # registered controls: high exactly in RUN (issue) and in RUN's first cycle (clear)
        run, clr = Signal(), Signal()
        m.d.comb += [self.issue.eq(run), self.clear.eq(clr)]
        m.d.sync += clr.eq(0)
        first = Signal()                    # layer 0 of this pass begun, no position yet
        with m.If(self.layer_start):
            m.d.sync += first.eq(1)
        with m.Elif(self.start):
            m.d.sync += first.eq(0)
        # no crossbar of this pass to read: the windows are not needed
        m.d.comb += self.skip.eq(Mux(first, (self.mask & ~valid) == 0, fresh == 0))
        cur = Array(self.idx[s] for s in range(p.n_max))[slot]
        with m.If(self.image_start):
            m.d.sync += valid.eq(0)
        with m.If(self.layer_start):
            m.d.sync += pos.eq(0)
        m.d.comb += [wp.addr.eq(self.k * P + pos), rp.addr.eq(self.idx[cs] * P + pos),
                     *(wp.data[j].eq(self.aac_S[j]) for j in range(W))]
        with m.If(got):
            m.d.sync += [self.S[j].eq(self.S[j] + rp.data[j]) for j in range(W)]
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += slot.eq(0)
                    with m.If(pos == 0):
                        m.d.sync += [fresh.eq(self.mask & ~valid),
                                     valid.eq(valid | self.mask)]
                    m.next = "PLAN"
            with m.State("PLAN"):
                with m.If(slot == self.n_way):
                    m.d.sync += [cs.eq(0), *(self.S[j].eq(0) for j in range(W))]
                    m.next = "COMB"
                with m.Elif(fresh.bit_select(cur, 1)):
                    m.d.sync += [self.k.eq(cur), run.eq(1), clr.eq(1)]
                    m.next = "RUN"
                with m.Else():
                    m.d.sync += slot.eq(slot + 1)
            with m.State("RUN"):
                with m.If(self.group == self.last_group):
                    m.d.sync += self.group.eq(0)
                    with m.If(self.plane == self.last_plane):
                        m.d.sync += [drain.eq(0), self.plane.eq(0), run.eq(0)]
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += self.plane.eq(self.plane + 1)
                with m.Else():
                    m.d.sync += self.group.eq(self.group + 1)
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == REUSE_DRAIN - 1):      # the sums are in aac_S
                    m.d.comb += wp.en.eq(1)
                    m.d.sync += slot.eq(slot + 1)
                    m.next = "PLAN"
            with m.State("COMB"):
                with m.If(cs == self.n_way - 1):
                    m.next = "SUM"
                with m.Else():
                    m.d.sync += cs.eq(cs + 1)
            with m.State("SUM"):
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.d.sync += [pos.eq(pos + 1), self.ops.eq(self.ops + self.n_way - 1)]
                m.next = "IDLE"
        m.d.sync += got.eq(fsm.ongoing("COMB"))
        return m


def reuse_stage(m, p, *, enable, layer, image_start, arb_start, start, arb_mask, arb_idx,
                n_way, plane, group, last_group, last_plane, aac) -> SimpleNamespace:
    """Add the :class:`ReuseCache` of a design with ``p.reuse`` to module ``m``. Returns
    ``on`` (``enable``, the REUSE register, and ``layer`` 0) and what the core's read path,
    adder-accumulator, comparators and averaging take: ``issue`` (the cache's reads, to OR
    with READ's), ``plane``, ``group``, ``mask``, ``idx``, ``n_way`` (while ``on``: crossbar
    k alone), ``clear`` (to OR with the core's), ``S`` (while ``on`` the kept sums' total,
    else the adder-accumulator's), ``done``, ``ops`` (accumulations to add to the
    adder-accumulator's) and ``skip`` (no window needed: the ConvUnit's ``skip``).
    ``start``: the first cycle of a position's READ state in layer 0 (the core's registered
    AAC clear); ``arb_start``: the core's ARB state; ``image_start``: a new image. Without
    the cache: ``on`` 0, the core's own signals and constant zeros."""
    if not p.reuse:
        return SimpleNamespace(on=C(0), issue=C(0), plane=plane, group=group, mask=arb_mask,
                               idx=arb_idx, n_way=n_way, clear=C(0), S=aac.S, done=C(0),
                               ops=C(0, 32), skip=C(0))
    m.submodules.reuse = ru = ReuseCache(p)
    on = Signal(name="reuse_on")
    m.d.comb += [on.eq(enable & (layer == 0)),
                 ru.image_start.eq(image_start), ru.layer_start.eq(arb_start & (layer == 0)),
                 ru.start.eq(start & on), ru.mask.eq(arb_mask), ru.idx.eq(arb_idx),
                 ru.n_way.eq(n_way), ru.last_group.eq(last_group),
                 ru.last_plane.eq(last_plane), ru.aac_S.eq(aac.S)]
    idx = Signal.like(arb_idx)
    S = Signal.like(aac.S)
    m.d.comb += [idx.eq(Mux(on, ru.k, arb_idx.as_value())),
                 S.eq(Mux(on, ru.S.as_value(), aac.S.as_value()))]
    return SimpleNamespace(on=on, issue=ru.issue, plane=Mux(on, ru.plane, plane),
                           group=Mux(on, ru.group, group),
                           mask=Mux(on, C(1, p.N) << ru.k, arb_mask), idx=idx,
                           n_way=Mux(on, 1, n_way), clear=ru.clear, S=S, done=ru.done,
                           ops=ru.ops, skip=on & ru.skip)


def cache_bits(p: RtlParams) -> int:
    """Bits of the design's reuse cache: N * reuse_positions * reuse_outputs * sum_bits."""
    return p.N * p.reuse_positions * p.reuse_outputs * p.sum_bits

