"""The co-verification's results: the harness's logs decoded and compared with the reference.

The harness (sim/harness.py) logs every result beat, arbiter selection and (with the layer
trace) activation vector as packed words; :func:`decode_logs` and :func:`decode_acts` unpack
them with the harness's field layouts (its ``describe()``) and check the stream's structure
(the core's beat order); :func:`compare` turns differences from the reference into
:class:`Mismatch` records; :class:`CoverifyResult` is what
:func:`spinbayes.sim.coverify.run_images` returns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..rtl.regs import OutKind
from .layer_check import compare_layers

__all__ = ["CoverifyResult", "Mismatch", "compare", "decode_acts", "decode_logs",
           "fill_not_run", "layer_mismatches", "reuse_count_mismatches"]


@dataclass
class Mismatch:
    """One difference: image, what (per_pass, averaged, class, stream, trace), where, values."""

    image: int
    output: str
    where: str
    rtl: int | str
    reference: int | str


@dataclass
class CoverifyResult:
    """What :func:`run_images` measured. ``mismatches == 0`` is the only pass."""

    images: int
    mismatches: int
    details: list[Mismatch]
    cycles: np.ndarray                   # (B,) cycles from start to the class beat
    counters: dict[str, np.ndarray]      # name -> (B,) activity per image
    counter_totals: dict[str, int]
    per_pass: np.ndarray                 # (B, T, C) the RTL's outputs
    averaged: np.ndarray                 # (B, C)
    prediction: np.ndarray               # (B,)
    choices: np.ndarray                  # (L, B, T, n) the RTL's arbiter trace (0: not run)
    vfy_errors: int                      # crossbar cells that read back wrong
    vfy_checked: int
    accuracy: float | None = None        # % of the RTL's classes equal to the labels
    float_agreement: float | None = None  # % equal to the float model's eq. 4 class
    simulator: str = ""
    stall: float = 0.0
    timings: dict = field(default_factory=dict)
    driver: dict | None = None           # the CoreDriver-over-CocotbBus images, if asked
    act_beats: np.ndarray | None = None  # (B,) activation-trace beats, with trace_layers
    passes: np.ndarray | None = None     # (B,) passes each image ran (the core's PASSES_RUN)

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and self.vfy_errors == 0

    def summary(self) -> dict:
        """JSON-ready: every figure except the per-image arrays."""
        c = self.cycles
        return {
            "images": self.images, "mismatches": self.mismatches, "passed": self.passed,
            "mismatch_details": [asdict(m) for m in self.details[:100]],
            "vfy_errors": self.vfy_errors, "vfy_checked": self.vfy_checked,
            "accuracy": self.accuracy, "float_agreement": self.float_agreement,
            "simulator": self.simulator, "stall": self.stall,
            "cycles": {"min": int(c.min()), "median": float(np.median(c)), "max": int(c.max()),
                       "mean": float(c.mean())} if c.size else {},
            "counter_totals": self.counter_totals,
            "counters_per_image_mean": {k: float(v.mean()) for k, v in self.counters.items()},
            "timings": self.timings, "driver": self.driver,
            "layer_vectors": None if self.act_beats is None else int(self.act_beats.sum()),
            "passes": None if self.passes is None else {
                "mean": float(self.passes.mean()), "min": int(self.passes.min()),
                "max": int(self.passes.max())},
        }


def fill_not_run(choices: np.ndarray) -> np.ndarray:
    """``choices`` (L, B, T, n) as decoded, usable by ``HwNetwork.run``: the passes an image
    did not run (adaptive T) read 0; with n >= 2 such an all-zero row is not a choice (it
    names crossbar 0 n times) and becomes crossbars 0..n-1. Rows of passes run are kept."""
    n = choices.shape[-1]
    if n == 1:
        return choices
    out = choices.copy()
    out[(out == 0).all(-1)] = np.arange(n)
    return out


def _fields(words: np.ndarray, layout) -> dict[str, np.ndarray]:
    out, shift = {}, 0
    for name, width in layout:
        out[name] = (words >> shift) & ((1 << width) - 1)
        shift += width
    return out


def decode_logs(raw, info: dict, *, T: int, C: int, L: int, n_way: int, index_bits: int,
                total_bits: int, passes=None):
    """Raw harness logs -> (per_pass (B,T,C), averaged (B,C), prediction (B,), choices
    (L,B,T,n), structural mismatches). ``passes`` (B,): the passes each image ran (the core's
    PASSES_RUN; None: T each); the passes not run read 0 in per_pass and choices. Every beat's
    kind, pass and index must follow the core's order (t*C PASS beats pass-major, C AVERAGE,
    1 CLASS); every trace entry its (pass, layer)."""
    B = raw["beats"].shape[0]
    passes = np.full(B, T, dtype=np.int64) if passes is None else np.asarray(passes)
    bad: list[Mismatch] = []
    per_pass = np.zeros((B, T, C), dtype=np.int64)
    averaged = np.zeros((B, C), dtype=np.int64)
    prediction = np.zeros(B, dtype=np.int64)
    choices = np.zeros((L, B, T, n_way), dtype=np.int64)
    for t in np.unique(passes):
        sel = np.nonzero(passes == t)[0]
        if not 1 <= t <= T:
            bad += [Mismatch(int(b), "stream", "passes run", int(t), f"1..{T}") for b in sel]
            continue
        out = _decode_group({k: raw[k][sel] for k in ("beats", "trace", "n_beats", "n_trace")},
                            info, int(t), C, L, n_way, index_bits, total_bits)
        for m in out[4]:
            m.image = int(sel[m.image])
        bad += out[4]
        per_pass[sel, :t], averaged[sel], prediction[sel] = out[0], out[1], out[2]
        choices[:, sel, :t] = out[3]
    return per_pass, averaged, prediction, choices, bad


def _decode_group(raw, info, T, C, L, n_way, index_bits, total_bits):
    """:func:`decode_logs` for images that all ran T passes."""
    beats, trace = raw["beats"], raw["trace"]
    B = beats.shape[0]
    nb = T * C + C + 1
    bad: list[Mismatch] = []
    for b in np.nonzero(raw["n_beats"] != nb)[0]:
        bad.append(Mismatch(int(b), "stream", "beat count", int(raw["n_beats"][b]), nb))
    for b in np.nonzero(raw["n_trace"] != L * T)[0]:
        bad.append(Mismatch(int(b), "trace", "selection count", int(raw["n_trace"][b]), L * T))
    f = _fields(beats[:, :nb], info["beat_fields"])
    want_kind = np.array([OutKind.PASS] * (T * C) + [OutKind.AVERAGE] * C + [OutKind.CLASS])
    want_pass = np.array([t for t in range(T) for _ in range(C)] + [0] * (C + 1))
    want_index = np.array(list(range(C)) * T + list(range(C)) + [0])
    for name, want in (("kind", want_kind), ("pass", want_pass), ("index", want_index)):
        got = f[name]
        if name == "pass":   # out_pass is only meaningful on PASS beats
            got = np.where(want_kind == OutKind.PASS, got, 0)
        if name == "index":
            got = np.where(want_kind == OutKind.CLASS, 0, got)
        for b, j in zip(*np.nonzero(got != want)):
            bad.append(Mismatch(int(b), "stream", f"beat {j} {name}", int(got[b, j]),
                                int(want[j])))
    val = f["data"]
    val = np.where(val >= 1 << (total_bits - 1), val - (1 << total_bits), val)
    per_pass = val[:, :T * C].reshape(B, T, C)
    averaged = val[:, T * C:T * C + C]
    prediction = val[:, T * C + C]
    tf = _fields(trace[:, :L * T], info["trace_fields"])
    want_layer = np.array([i for _ in range(T) for i in range(L)])
    want_tpass = np.array([t for t in range(T) for _ in range(L)])
    for name, want in (("layer", want_layer), ("pass", want_tpass)):
        for b, j in zip(*np.nonzero(tf[name] != want)):
            bad.append(Mismatch(int(b), "trace", f"entry {j} {name}", int(tf[name][b, j]),
                                int(want[j])))
    idx = np.stack([(tf["indices"] >> (index_bits * s)) & ((1 << index_bits) - 1)
                    for s in range(n_way)], axis=-1)                  # (B, T*L, n)
    choices = idx.reshape(B, T, L, n_way).transpose(2, 0, 1, 3)
    return per_pass, averaged, prediction, choices, bad


def compare(name: str, rtl: np.ndarray, ref: np.ndarray) -> list[Mismatch]:
    out = []
    for pos in zip(*np.nonzero(rtl != ref)):
        out.append(Mismatch(int(pos[0]), name, str(tuple(int(p) for p in pos[1:])),
                            int(rtl[pos]), int(ref[pos])))
    return out


def decode_acts(raw, info: dict) -> list[list[tuple]]:
    """The harness's activation-trace logs: per image, the beats (layer, pass, position,
    codes of every channel) in order (``info``: the harness's describe())."""
    A, count = info["act_code_bits"], info["act_codes"]
    out = []
    for b, n in enumerate(raw["n_acts"]):
        beats = []
        for word in raw["acts"][b, :min(int(n), int(info["act_log"]))]:
            v, fields = int(word), {}
            for name, width in info["act_fields"]:
                fields[name], v = v & ((1 << width) - 1), v >> width
            codes = [(fields["codes"] >> (A * j)) & ((1 << A) - 1) for j in range(count)]
            beats.append((fields["layer"], fields["pass"], fields["pos"], codes))
        out.append(beats)
    return out


def layer_mismatches(raw, info, geometry, ref, passes) -> list[Mismatch]:
    """The activation trace against the reference's activations of the ``passes`` each image
    ran, as Mismatches (``"layer"``: where names the layer, pass, position and neuron)."""
    bad = []
    for b, n in enumerate(raw["n_acts"]):
        if int(n) > int(info["act_log"]):
            bad.append(Mismatch(b, "layer", "trace beats", int(n), int(info["act_log"])))
    for m in compare_layers(decode_acts(raw, info), ref.activations, geometry):
        if m.rtl == "missing" and m.pass_ >= int(passes[m.image]):
            continue                           # a pass the image did not run
        bad.append(Mismatch(m.image, "layer", m.place, m.rtl, m.reference))
    return bad


def reuse_count_mismatches(hw, R: int, choices: np.ndarray, passes: np.ndarray,
                           counters: dict) -> list[Mismatch]:
    """First-layer reuse: each image's ``cnt_xbar_reads`` and ``cnt_aac_ops`` against the
    energy model's analytic count with its distinct first-layer crossbars
    (golden/energy_counts.py ``run_counts(..., distinct=D)``; ``choices`` (L, B, T, n) the
    RTL's, ``passes`` (B,) the passes each image ran)."""
    from ..golden.energy_counts import distinct_crossbars, run_counts, shapes_of_hw, totals

    shapes = shapes_of_hw(hw)
    D = distinct_crossbars(choices[0], hw.N, passes)
    want = {k: np.zeros(len(D), dtype=np.int64) for k in ("cnt_xbar_reads", "cnt_aac_ops")}
    for b, (d, t) in enumerate(zip(D, passes)):
        counts = totals(run_counts(shapes, N=hw.N, n_way=hw.n_way, R=R, passes=int(t),
                                   distinct=int(d)))
        for k in want:
            want[k][b] = counts[k]
    return [m for k, v in want.items()
            for m in compare(k, np.asarray(counters[k])[:, None], v[:, None])]
