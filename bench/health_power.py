"""Detection power and false alarms of the RNG health tests (a measurement, not a test).

Detection power: for each P(one) = p (default 0.55, 0.60, 0.70) and each of ``--seeds``
seeds, a biased stream from reset, and the sample number at which each test first fires
(bias monitor, APT, RCT; default cutoffs, α = 2^-20, H = 1): median and 95th percentile over
the seeds. Two sources: numpy Bernoulli(p) (``default_rng(seed)``) and the project's emulated
device (``EmulatedRng`` at ``threshold_for(p, 16)``, seed :func:`device_seed`), whose p is
set in the hardware by the drive current (eq. 5; the current is reported). A stream that has
not fired by ``--max-samples`` is censored: a percentile that falls among censored streams
is reported as None (JSON) and "> max" (table). For the windowed tests, the fraction of
streams caught in their first window is given beside its exact value.

False alarms: ``--fa-samples`` healthy samples per source (p = 1/2; the emulated device at
230 µA) at the default cutoffs, at cutoffs from larger α (so that hundreds of alarms are
expected) and at α = 2^-40; observed counts beside the exact expectations of
:mod:`spinbayes.golden.health`.

Run::

    .venv/bin/python bench/health_power.py                  # 200 seeds, 10^7 healthy samples
    .venv/bin/python bench/health_power.py --seeds 50 --fa-samples 1000000

Writes ``bench/results/health_power.json`` (``--out``) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from spinbayes.golden import health as h
from spinbayes.golden.mtj import EmulatedRng, current_for_probability, p_sw, threshold_for

HERE = Path(__file__).resolve().parent
TESTS = ("bias", "apt", "rct")


def device_seed(seed: int) -> int:
    """A well-mixed 32-bit seed for seed number ``seed``. xorshift32 is linear over GF(2):
    the streams of seeds 1, 2, 3, ... are XORs of a few base streams and start alike, so
    consecutive small integers would not give independent devices."""
    return int(np.random.SeedSequence(seed).generate_state(1)[0]) or 1


def source_bits(source: str, p: float, seed: int):
    """A function n -> the next n bits of one biased stream."""
    if source == "bernoulli":
        gen = np.random.default_rng(seed)
        return lambda n: (gen.random(n) < p).astype(np.uint8)
    return EmulatedRng(device_seed(seed), threshold_for(p, 16), 16).bits


def first_alarms(more, cut: h.Cutoffs, max_samples: int, start: int = 1 << 14) -> dict:
    """Sample number of each test's first event (None: none within ``max_samples``). The
    stream is drawn and evaluated in prefixes of doubling length (events are causal: an
    event in a prefix is the stream's)."""
    out: dict = {t: None for t in TESTS}
    bits = more(min(start, max_samples))
    while True:
        if out["bias"] is None:
            lo, hi = h.bias_events(bits, cut.bias_low, cut.bias_high)
            out["bias"] = h.first_event(lo | hi)
        if out["apt"] is None:
            out["apt"] = h.first_event(h.apt_events(bits, cut.apt)[1])
        if out["rct"] is None:
            out["rct"] = h.first_event(h.rct_events(bits, cut.rct)[1])
        if bits.size >= max_samples or all(v is not None for v in out.values()):
            return out
        bits = np.concatenate([bits, more(min(bits.size, max_samples - bits.size))])


def percentile(values: list, q: float):
    """The ceil(q n)-th smallest of the n values (numpy's 'inverted_cdf' quantile), censored
    streams (None) counted as larger than every alarm; None if it falls among them."""
    fired = sorted(v for v in values if v is not None)
    k = int(np.ceil(q * len(values))) - 1
    return fired[max(k, 0)] if k < len(fired) else None


def power(ps, seeds: int, max_samples: int, sources) -> list[dict]:
    cut = h.Cutoffs.derive()
    rows = []
    for p in ps:
        for source in sources:
            t0 = time.perf_counter()
            firsts = [first_alarms(source_bits(source, p, s), cut, max_samples)
                      for s in range(seeds)]
            row = {"p": p, "source": source, "seeds": seeds, "max_samples": max_samples,
                   "current_uA": current_for_probability(p) * 1e6,
                   "seconds": round(time.perf_counter() - t0, 1)}
            for t in TESTS:
                v = [f[t] for f in firsts]
                row[t] = {"median": percentile(v, 0.5), "p95": percentile(v, 0.95),
                          "censored": sum(x is None for x in v)}
            # fraction caught in the first window, measured and exact (i.i.d. Bernoulli(p))
            for t, w, exact in (
                    ("bias", h.BIAS_WINDOW,
                     h.bias_window_fail_probability(cut.bias_low, cut.bias_high, p=p)),
                    ("apt", h.APT_WINDOW, h.apt_window_fail_probability(cut.apt, p=p))):
                caught = sum(f[t] is not None and f[t] <= w for f in firsts) / seeds
                row[t]["first_window"] = {"measured": caught, "exact": exact}
            rows.append(row)
            print(f"p = {p}, {source}: {row['seconds']} s", flush=True)
    return rows


def false_alarms(n: int, sources) -> list[dict]:
    settings = {"default (2^-20)": (2 ** -20,) * 3,
                "rate check (RCT 2^-10, APT 2^-3, bias 2^-2)": (2 ** -10, 2 ** -3, 2 ** -2),
                "2^-40": (2 ** -40,) * 3}
    thr = threshold_for(float(p_sw(230e-6)), 16)
    rows = []
    for source in sources:
        bits = ((np.random.default_rng(2024).random(n) < 0.5).astype(np.uint8)
                if source == "bernoulli" else EmulatedRng(2024, thr, 16).bits(n))
        for name, (a_r, a_a, a_b) in settings.items():
            c = h.Cutoffs(h.rct_cutoff(1, a_r), h.apt_cutoff(1, a_a),
                          *h.bias_watermarks(h.BIAS_WINDOW, a_b))
            fail, rct = h.rct_events(bits, c.rct)
            lo, hi = h.bias_events(bits, c.bias_low, c.bias_high)
            apt = h.apt_events(bits, c.apt)[1]
            rows.append({
                "source": source, "samples": n, "alpha": name, "cutoffs": c.__dict__,
                "rct_failing_samples": [int(fail.sum()), (n - c.rct + 1) * 2.0 ** -(c.rct - 1)],
                "rct_events": [int(rct.sum()), h.rct_expected_events(c.rct, n)],
                "apt_events": [int(apt.sum()), n // h.APT_WINDOW
                               * h.apt_window_fail_probability(c.apt)],
                "bias_events": [int((lo | hi).sum()), n // h.BIAS_WINDOW
                                * h.bias_window_fail_probability(c.bias_low, c.bias_high)],
            })
    return rows


def fmt(v, cap):
    return f"> {cap}" if v is None else str(v)


def tables(res: dict) -> str:
    lines = ["| p | I (µA) | source | bias median | bias p95 | APT median | APT p95 | "
             "RCT median | RCT p95 | bias 1st window | APT 1st window |", "|" + " --- |" * 11]
    for r in res["power"]:
        cap = r["max_samples"]
        first = [f"{r[t]['first_window']['measured']:.3f} ({r[t]['first_window']['exact']:.3f})"
                 for t in ("bias", "apt")]
        lines.append(f"| {r['p']} | {r['current_uA']:.2f} | {r['source']} | "
                     + " | ".join(f"{fmt(r[t]['median'], cap)} | {fmt(r[t]['p95'], cap)}"
                                  for t in TESTS) + " | " + " | ".join(first) + " |")
    lines += ["", "| source | α | RCT failing samples | RCT events | APT events | "
              "bias events |", "|" + " --- |" * 6]
    for r in res["false_alarms"]:
        cells = [f"{r[k][0]} / {r[k][1]:.3g}" for k in ("rct_failing_samples", "rct_events",
                                                        "apt_events", "bias_events")]
        lines.append(f"| {r['source']} | {r['alpha']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p", type=float, nargs="+", default=[0.55, 0.60, 0.70])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--max-samples", type=int, default=1 << 20)
    ap.add_argument("--fa-samples", type=int, default=10 ** 7)
    ap.add_argument("--sources", nargs="+", default=["bernoulli", "device"],
                    choices=["bernoulli", "device"])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "health_power.json")
    a = ap.parse_args(argv)
    for name in ("seeds", "max_samples", "fa_samples"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be a positive integer, "
                     f"not {getattr(a, name)!r}")
    res = {"cutoffs": h.Cutoffs.derive().__dict__,
           "power": power(a.p, a.seeds, a.max_samples, a.sources),
           "false_alarms": false_alarms(a.fa_samples, a.sources)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(tables(res))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
