"""Device faults as data: seeded fault maps, and the integer reference under a fault map.

A :class:`FaultSpec` names the fault kinds, each with a rate or magnitude, and one seed:

=============== ====================================================================
stuck_mtj       fraction of the MTJs of the 4-MTJ multi-level cells that are stuck, each
                in P (with probability ``stuck_p_fraction``) or in AP
write_failure   probability that an MTJ which a write pulse should switch (RESET P -> AP,
                or the level's RWL pulse AP -> P) does not; every write is verified by
                reading the cell back and retried up to ``max_retries`` times
variation       device-to-device sigma of ln R: every MTJ gets independent lognormal
                factors on its R_P and on its R_AP (median = nominal, 2.5 / 5.5 MOhm,
                TMR 120 %); seen as the level the flash ADC reads
rng_stuck       fraction of the arbiters' RNG devices stuck, at 0 or at 1 (even odds)
rng_bias        sigma (amperes) of each RNG device's drive-current offset from 230 uA;
                p = p_sw(230 uA + offset) by eq. 5
=============== ====================================================================

:func:`build_fault_map` turns a spec and the intended weight codes into a :class:`FaultMap`,
a concrete, deterministic array-level object. **The contract** (what the RTL loads to
reproduce the reference bit for bit):

* ``levels[l]``: int8 (N, rows, cols), the signed level d in -4..4 of every differential cell
  of every crossbar of layer l, in the layout of :mod:`.cells` (row i, cell column
  j * k + c). It is the level the flash ADC reads from the cell alone after programming
  (the read-back verify's read), i.e. what the behavioural crossbar must hold. The integer
  reference computes acc_j = sum_i a_i sum_c d_(i, j*k+c): ideal reads of these levels.
* ``rng_threshold``: int (L, k), the :class:`~.mtj.EmulatedRng` threshold of device d of
  layer l's arbiter (threshold_bits W; 0 is stuck at 0, 2^W stuck at 1, otherwise
  ``threshold_for(p_sw(230 uA + offset), W)``). The device seeds are the firmware's
  :func:`~.arbiter.device_seed`, unchanged.

Everything is drawn from numpy generators seeded with (seed, kind, layer), so a map is a
function of (spec, codes) alone, changing one kind's rate leaves the other kinds' draws
alone, and at a fixed seed the faults are nested: every MTJ stuck at rate r is stuck at any
rate above r (one uniform per MTJ against the rate). Zero rates give exactly the intended
levels and the healthy thresholds.

Modelling choices, stated: the array starts all-AP (fresh); a write is a RESET then the
level's RWL pulse on both cells of the pair, MTJs failing independently; verify reads the
pair alone through the flash ADC (:class:`~.crossbar.FlashADC`, one row) and compares with
the target. Variation is **device-to-device only**: it is static, so verify sees the same
level on every read and retries cannot fix it (nor a stuck MTJ). Cycle-to-cycle variation is
not modelled: the level read would then change from read to read, which a behavioural
crossbar loaded with fixed levels cannot reproduce. The ADC error is modelled per cell: the
sum of R analog currents in one read is taken as the sum of the per-cell levels read back.
An effective weight code is sum_c d_c, which faults can push to 4k (8 for Q = 4), beyond
q_max; the reference computes in int64, while the RTL's accumulators are sized for
|code| <= q_max (layer_widths): the co-verification path (sim/faults.py) refuses a map whose
worst-case sums exceed the design's bound, so the two cannot diverge through an overflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .arbiter import Arbiter, DeviceBank, code_bits, device_seed
from .cells import MAX_LEVEL, decode_cells, differential_pair, encode_weights, pair_to_level
from .crossbar import RWL_VOLTAGE_FOR_LEVEL, DeviceParams, FlashADC, switched_mtjs
from .mtj import EmulatedRng, p_sw, threshold_for

__all__ = ["KINDS", "RNG_CURRENT", "FaultSpec", "FaultMap", "ArbiterStuck", "build_fault_map",
           "faulted_network", "fault_choices", "health_alarms"]

#: The fault kinds, in the order of :class:`FaultSpec` (also the stream index of each kind).
KINDS = ("stuck_mtj", "write_failure", "variation", "rng_stuck", "rng_bias")
#: Nominal RNG drive current (p_sw = 0.5, Fig. 4), amperes.
RNG_CURRENT = 230e-6
#: Largest drive-current sigma accepted, amperes (p_sw saturates within about 30 uA).
MAX_RNG_BIAS = 100e-6
#: Largest lognormal sigma accepted (exp(3 sigma) = 20x at the limit).
MAX_VARIATION = 1.0

# _P_STATE[l, i]: MTJ M(i+1) is in P after a fault-free write of level l (M4 first).
_P_STATE = np.array([[f"M{i + 1}" in switched_mtjs(RWL_VOLTAGE_FOR_LEVEL[lv])
                      for i in range(MAX_LEVEL)] for lv in range(MAX_LEVEL + 1)])


def _number(name, value, hi, what):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and 0 <= value <= hi):
        raise ValueError(f"{name} must be {what}, not {value!r}")
    return float(value)


def _integer(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class FaultSpec:
    """Fault rates and magnitudes (module docstring), all 0 by default, and the seed."""

    stuck_mtj: float = 0.0
    stuck_p_fraction: float = 0.5
    write_failure: float = 0.0
    max_retries: int = 3
    variation: float = 0.0
    rng_stuck: float = 0.0
    rng_bias: float = 0.0
    seed: int = 0
    device: DeviceParams = field(default_factory=DeviceParams)

    def __post_init__(self):
        prob = "a probability in [0, 1] (a finite number)"
        for name in ("stuck_mtj", "stuck_p_fraction", "write_failure", "rng_stuck"):
            _number(name, getattr(self, name), 1.0, prob)
        _number("variation", self.variation, MAX_VARIATION,
                f"a lognormal sigma in [0, {MAX_VARIATION:g}] (a finite number)")
        _number("rng_bias", self.rng_bias, MAX_RNG_BIAS,
                f"a current sigma in [0, {MAX_RNG_BIAS:g}] amperes (a finite number)")
        _integer("max_retries", self.max_retries, 0, 1000)
        _integer("seed", self.seed, 0, 2 ** 32 - 1)
        if not isinstance(self.device, DeviceParams):
            raise ValueError(f"device must be a DeviceParams, not {self.device!r}")


class ArbiterStuck(RuntimeError):
    """An arbiter never completes a selection under a fault map (stuck RNG devices)."""

    def __init__(self, layer: int, thresholds, message: str):
        self.layer, self.thresholds = layer, [int(t) for t in thresholds]
        super().__init__(f"layer {layer}'s arbiter hangs (device thresholds "
                         f"{self.thresholds}): {message}")


@dataclass
class FaultMap:
    """A concrete fault map (module docstring: ``levels`` and ``rng_threshold`` are the
    contract). ``targets``: the intended levels; ``shapes``: each layer's code shape;
    ``stats``: per layer, what programming and read-back verify did."""

    spec: FaultSpec
    Q: int
    levels: list[np.ndarray]
    targets: list[np.ndarray]
    shapes: list[tuple[int, ...]]
    rng_threshold: np.ndarray
    threshold_bits: int
    rng_p: np.ndarray
    stats: list[dict]

    def codes(self) -> list[np.ndarray]:
        """The effective weight codes of every layer (int64, each layer's code shape):
        ``decode_cells`` of the levels, cell column j * k + c -> output j, part c."""
        k = self.levels[0].shape[2] // self.shapes[0][1]
        out = []
        for lv, shape in zip(self.levels, self.shapes):
            n, rows, cols = lv.shape
            parts = lv.reshape(n, rows, cols // k, k).transpose(0, 2, 1, 3)
            out.append(decode_cells(parts).reshape(shape))
        return out

    def summary(self) -> dict:
        """Totals over layers (the campaign's per-point figures)."""
        tot = {key: sum(s[key] for s in self.stats) for key in self.stats[0]
               if key != "max_retries_cell"}
        tot["max_retries_cell"] = max(s["max_retries_cell"] for s in self.stats)
        healthy = threshold_for(float(p_sw(RNG_CURRENT)), self.threshold_bits)
        w = 2 ** self.threshold_bits
        tot["rng_devices"] = int(self.rng_threshold.size)
        tot["rng_stuck"] = int(np.isin(self.rng_threshold, (0, w)).sum())
        tot["rng_off_nominal"] = int((self.rng_threshold != healthy).sum())
        tot["rng_max_p_error"] = float(np.abs(self.rng_p - 0.5).max(initial=0.0))
        return tot


def _read_levels(state, g_p, g_ap, adc):
    """Signed level each pair reads alone: the flash ADC of dI = V (G+ - G-)."""
    g = np.where(state, g_p, g_ap).sum(-1)                     # (..., 2)
    return adc.convert(adc.device.v_read * (g[..., 0] - g[..., 1]))


def _program_layer(target, spec: FaultSpec, layer: int):
    """Write ``target`` (N, rows, cols) signed levels through the fault model; returns the
    levels read back and the layer's statistics."""
    shape = (*target.shape, 2, MAX_LEVEL)
    rng = {kind: np.random.default_rng([spec.seed, i, layer]) for i, kind in enumerate(KINDS)}
    stuck = rng["stuck_mtj"].random(shape) < spec.stuck_mtj
    stuck_p = stuck & (rng["stuck_mtj"].random(shape) < spec.stuck_p_fraction)
    stuck_ap = stuck & ~stuck_p
    dev = spec.device
    z = rng["variation"].standard_normal((2, *shape))
    g_p = 1.0 / (dev.r_p * np.exp(spec.variation * z[0]))
    g_ap = 1.0 / (dev.r_ap * np.exp(spec.variation * z[1]))
    adc = FlashADC(1, dev)
    lp, ln = differential_pair(target)
    want = _P_STATE[np.stack([lp, ln], axis=-1)]               # (..., 2, 4)
    state = stuck_p.copy()                                      # fresh: all AP, then stuck
    todo = np.ones(target.shape, bool)
    attempts = np.zeros(target.shape, np.int64)
    read = _read_levels(state, g_p, g_ap, adc)
    first_wrong = 0
    for attempt in range(spec.max_retries + 1):
        u_reset, u_set = rng["write_failure"].random((2, *shape))   # drawn for every cell
        sel = todo[..., None, None]
        new = state & (u_reset < spec.write_failure)                 # RESET: P -> AP
        new |= want & (u_set >= spec.write_failure)                  # RWL pulse: AP -> P
        new = (new | stuck_p) & ~stuck_ap
        state = np.where(sel, new, state)
        attempts += todo
        read = _read_levels(state, g_p, g_ap, adc)
        todo = read != target
        if attempt == 0:
            first_wrong = int(todo.sum())
        if not todo.any():
            break
    retries = attempts - 1
    stored = pair_to_level(state[..., 0, :].sum(-1), state[..., 1, :].sum(-1))
    stats = {"cells": int(target.size), "mtjs": int(state.size),
             "stuck_mtjs": int(stuck.sum()),
             "cells_wrong_stored": int((stored != target).sum()),
             "verify_caught": first_wrong, "verify_failed": int(todo.sum()),
             "verify_fixed": first_wrong - int(todo.sum()),
             "retries": int(retries.sum()), "max_retries_cell": int(retries.max(initial=0)),
             "cells_wrong": int((read != target).sum())}
    return read.astype(np.int8), stats


def build_fault_map(codes, Q: int, spec: FaultSpec, *, threshold_bits: int = 16) -> FaultMap:
    """The fault map of ``spec`` for intended weight codes ``codes``: one int array per layer,
    (N, out, ...) as in ``HwLayer.codes`` (torch tensors are accepted)."""
    if not isinstance(spec, FaultSpec):
        raise ValueError(f"spec must be a FaultSpec, not {spec!r}")
    threshold_bits = _integer("threshold_bits", threshold_bits, 1, 32)
    codes = [np.asarray(c) for c in codes]
    if not codes or any(c.ndim < 3 for c in codes):
        raise ValueError("codes must be a non-empty list of (N, out, in...) integer arrays")
    N = int(codes[0].shape[0])
    levels, targets, stats = [], [], []
    for layer, c in enumerate(codes):
        n, out = c.shape[:2]
        d = encode_weights(c.reshape(n, out, -1), Q)                # (N, out, rows, k)
        target = d.transpose(0, 2, 1, 3).reshape(n, d.shape[2], -1)  # (N, rows, out*k)
        lv, st = _program_layer(target.astype(np.int64), spec, layer)
        levels.append(lv)
        targets.append(target.astype(np.int8))
        stats.append(st)
    k = code_bits(N)
    L = len(codes)
    rng_s = np.random.default_rng([spec.seed, KINDS.index("rng_stuck")])
    rng_b = np.random.default_rng([spec.seed, KINDS.index("rng_bias")])
    stuck = rng_s.random((L, k)) < spec.rng_stuck
    stuck_at = rng_s.random((L, k)) < 0.5
    current = RNG_CURRENT + spec.rng_bias * rng_b.standard_normal((L, k))
    p = p_sw(np.maximum(current, 0.0))
    thr = np.array([[threshold_for(float(pi), threshold_bits) for pi in row] for row in p],
                   dtype=np.int64).reshape(L, k)
    thr = np.where(stuck, np.where(stuck_at, 2 ** threshold_bits, 0), thr)
    p = np.where(stuck, stuck_at.astype(float), p)
    return FaultMap(spec, Q, levels, targets, [tuple(c.shape) for c in codes], thr,
                    threshold_bits, p, stats)


def faulted_network(hw, fmap: FaultMap):
    """A copy of the integer network ``hw`` (HwNetwork) whose codes are ``fmap``'s effective
    codes: :meth:`HwNetwork.run` of it is the reference under the fault map."""
    import torch

    if [tuple(layer.codes.shape) for layer in hw.layers] != fmap.shapes:
        raise ValueError(f"the fault map is for codes of shapes {fmap.shapes}, the network's "
                         f"are {[tuple(layer.codes.shape) for layer in hw.layers]}")
    return hw.with_codes([torch.from_numpy(c) for c in fmap.codes()])


def _banks(fmap: FaultMap, seed: int):
    L, k = fmap.rng_threshold.shape
    return [[EmulatedRng(device_seed(seed, layer, d, k), int(fmap.rng_threshold[layer, d]),
                         fmap.threshold_bits) for d in range(k)] for layer in range(L)]


class _Buffered:
    """A bit source that draws its device's bits in chunks: the same stream, in order, with
    fewer calls (EmulatedRng steps its first 4096 states of every call in Python)."""

    def __init__(self, source, chunk: int = 2 ** 17):
        self.source, self.chunk = source, chunk
        self.buf, self.pos = np.zeros(0, np.uint8), 0

    def bits(self, n: int) -> np.ndarray:
        if self.pos + n > self.buf.size:
            more = self.source.bits(max(self.chunk, n))
            self.buf, self.pos = np.concatenate([self.buf[self.pos:], more]), 0
        self.pos += n
        return self.buf[self.pos - n:self.pos]


def fault_choices(fmap: FaultMap, B: int, T: int, n_way: int, *, seed: int):
    """Crossbar choices (L, B, T, n) of the emulated arbiters under the map's RNG thresholds
    (device seeds :func:`~.arbiter.device_seed` of ``seed``); with healthy thresholds equal
    to :func:`~.arbiter.arbiter_choices`. Raises :class:`ArbiterStuck` when an arbiter
    never completes a selection."""
    import torch

    N = fmap.shapes[0][0]
    L = fmap.rng_threshold.shape[0]
    out = np.zeros((L, B, T, n_way), dtype=np.int64)
    for layer, devices in enumerate(_banks(fmap, seed)):
        try:
            bank = DeviceBank([_Buffered(d) for d in devices])
            out[layer] = Arbiter(N, n_way, bank).choose(B * T).reshape(
                B, T, n_way)
        except RuntimeError as e:
            raise ArbiterStuck(layer, fmap.rng_threshold[layer], str(e)) from None
    return torch.from_numpy(out)


def health_alarms(fmap: FaultMap, *, seed: int, samples: int = 2 ** 16, cutoffs=None):
    """Sample (1-based) of each device's first health-test alarm over its first ``samples``
    bits from reset, (L, k) int64, 0 for none; the RCT, APT and bias monitor of
    :mod:`.health` at ``cutoffs`` (default: derived from H = 1, alpha = 2^-20)."""
    from .health import Cutoffs, apt_events, bias_events, first_event, rct_events

    samples = _integer("samples", samples, 1, 2 ** 26)
    c = cutoffs if cutoffs is not None else Cutoffs.derive()
    L, k = fmap.rng_threshold.shape
    first = np.zeros((L, k), dtype=np.int64)
    for layer, devices in enumerate(_banks(fmap, seed)):
        for d, dev in enumerate(devices):
            bits = dev.bits(samples)
            hits = [first_event(rct_events(bits, c.rct)[1]),
                    first_event(apt_events(bits, c.apt)[1]),
                    *(first_event(e) for e in bias_events(bits, c.bias_low, c.bias_high))]
            hits = [h for h in hits if h is not None]
            first[layer, d] = min(hits) if hits else 0
    return first
