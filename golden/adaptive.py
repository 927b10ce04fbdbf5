"""Adaptive T: the integer reference of the controller's early stop (docs/HARDWARE.md,
"Adaptive T").

An image runs passes t = 1, 2, ... up to T_max (the PASSES register). After each pass t >= T_min
the rule of :class:`AdaptiveT` may stop it; the image's outputs are then those of its t passes:
Y_c = sum of the t passes' y_c, averaged_c = floor((Y_c + floor(t/2)) / t), class = argmax_c Y_c
(lowest index on ties), and the host's eq. 4 averages the t passes' probabilities.

* ``exact``: with Y the sums after t passes, L = argmax Y (lowest index on ties) and
  key_c = Y_c + [c < L] for c != L, stop when Y_L - max_c key_c >= (T_max - t) * span, span =
  hi - lo of one pass's output (:func:`output_span`). Every remaining pass adds a value in
  [lo, hi] to every class, so the T_max-pass class is L (proof in docs/HARDWARE.md).
* ``confidence``: with v the per-pass votes (the argmax of each pass's y, lowest index on
  ties) and v_lead the largest count, stop when v_lead * 2^CONFIDENCE_BITS >= threshold * t.

The rule reads only the passes so far, so :func:`adaptive_passes` on the per-pass outputs of
T_max passes gives the passes the hardware runs whatever the choices of the passes it skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..rtl.regs import CONFIDENCE_BITS, AdaptRule

__all__ = ["AdaptiveOutput", "AdaptiveT", "adaptive_passes", "adaptive_study", "exact_stop",
           "output_span", "run_adaptive", "study_markdown"]

if TYPE_CHECKING:   # torch only where the reference runs (firmware/ imports this module)
    import torch

RULES = tuple(r.name.lower() for r in AdaptRule)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class AdaptiveT:
    """The adaptive-T registers: rule (``off``, ``exact``, ``confidence``), T_min, the
    confidence threshold (an integer 0 .. 2^CONFIDENCE_BITS, a vote share of
    threshold / 2^CONFIDENCE_BITS) and the exact rule's output span (:func:`output_span`)."""

    rule: str = "off"
    t_min: int = 1
    threshold: int = 0
    span: int = 0

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"adaptive rule must be one of {', '.join(RULES)}, not "
                             f"{self.rule!r}")
        if not _int(self.t_min) or self.t_min < 1:
            raise ValueError(f"T_min must be a positive integer, not {self.t_min!r}")
        if not _int(self.threshold) or not 0 <= self.threshold <= 2 ** CONFIDENCE_BITS:
            raise ValueError(f"the confidence threshold must be an integer in "
                             f"0..{2 ** CONFIDENCE_BITS}, not {self.threshold!r}")
        if not _int(self.span) or self.span < 0:
            raise ValueError(f"the output span must be a non-negative integer, not "
                             f"{self.span!r}")

    @property
    def code(self) -> AdaptRule:
        return AdaptRule[self.rule.upper()]

    @classmethod
    def threshold_for(cls, share: float) -> int:
        """The threshold register of a vote share in [0, 1]: ceil(share * 2^CONFIDENCE_BITS)."""
        share = float(share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the confidence threshold must be a vote share in [0, 1], not "
                             f"{share!r}")
        return min(2 ** CONFIDENCE_BITS, int(-(-share * 2 ** CONFIDENCE_BITS // 1)))

    def check(self, T_max: int) -> AdaptiveT:
        """Self, or ValueError if T_min exceeds T_max (the PASSES register)."""
        if self.t_min > T_max:
            raise ValueError(f"T_min must lie in 1..T={T_max}, not {self.t_min!r}")
        return self


def output_span(hw) -> int:
    """hi - lo of one pass's output y_c = M_c S_c + B_c over every class and every input.

    Per class and crossbar k, the input codes a_i in 0..2^A - 1 bound acc_kc to
    [(2^A - 1) sum_i min(w_kci, 0), (2^A - 1) sum_i max(w_kci, 0)]; the n-way sum S_c of n
    distinct crossbars lies between the sum of the n smallest lower bounds and of the n
    largest upper bounds; y_c's range follows with M_c's sign. lo and hi are the extremes over
    the classes."""
    layer = hw.layers[-1]
    codes = np.asarray(layer.codes, dtype=np.int64)
    w = codes.reshape(*codes.shape[:2], -1)                       # (N, out, rows)
    amax = 2 ** layer.in_bits - 1
    up = -np.sort(-np.clip(w, 0, None).sum(-1) * amax, axis=0)[:hw.n_way].sum(0)
    down = np.sort(np.clip(w, None, 0).sum(-1) * amax, axis=0)[:hw.n_way].sum(0)
    M, B = (np.asarray(v, dtype=np.int64) for v in (layer.scale, layer.offset))
    a, b = M * up + B, M * down + B
    return int(np.maximum(a, b).max() - np.minimum(a, b).min())


def exact_stop(Y: torch.Tensor, remaining: torch.Tensor | int, span: int) -> torch.Tensor:
    """The exact rule on sums Y (B, C) with ``remaining`` passes to go: (B,) bool."""
    import torch

    B, C = Y.shape
    if C == 1:
        return torch.ones(B, dtype=torch.bool)
    lead = Y.argmax(-1)                                     # first maximum: lowest index
    cls = torch.arange(C)
    key = Y + (cls[None, :] < lead[:, None]).long()
    key = key.masked_fill(cls[None, :] == lead[:, None], torch.iinfo(torch.long).min)
    margin = Y.gather(1, lead[:, None])[:, 0] - key.max(-1).values
    return margin >= torch.as_tensor(remaining) * span


def adaptive_passes(per_pass: torch.Tensor, adapt: AdaptiveT) -> torch.Tensor:
    """Passes each image runs: per_pass (B, T_max, C) int, the outputs of T_max passes.
    Returns (B,) int64 in T_min .. T_max (all T_max with the rule off)."""
    import torch

    B, T, C = per_pass.shape
    adapt.check(T)
    passes = torch.full((B,), T, dtype=torch.long)
    if adapt.rule == "off":
        return passes
    running = torch.ones(B, dtype=torch.bool)
    Y = torch.zeros(B, C, dtype=torch.long)
    votes = torch.zeros(B, C, dtype=torch.long)
    rows = torch.arange(B)
    for t in range(1, T):
        y = per_pass[:, t - 1].long()
        Y += y
        votes[rows, y.argmax(-1)] += 1
        if t < adapt.t_min:
            continue
        if adapt.rule == "exact":
            stop = exact_stop(Y, T - t, adapt.span)
        else:
            stop = votes.max(-1).values * 2 ** CONFIDENCE_BITS >= adapt.threshold * t
        stop &= running
        passes[stop] = t
        running &= ~stop
    return passes


@dataclass
class AdaptiveOutput:
    """The outputs of an adaptive run: per_pass (B, T_max, C) holds every pass of the
    reference (the ones at t >= passes[b] are not run: :attr:`ran` masks them)."""

    per_pass: torch.Tensor
    passes: torch.Tensor
    frac_bits: int

    @property
    def ran(self) -> torch.Tensor:
        """(B, T_max) bool: pass t of image b ran."""
        import torch

        return torch.arange(self.per_pass.shape[1])[None, :] < self.passes[:, None]

    @property
    def total(self) -> torch.Tensor:
        return (self.per_pass * self.ran[..., None]).sum(dim=1)

    @property
    def averaged(self) -> torch.Tensor:
        """floor((Y + floor(t/2)) / t) with t the passes run."""
        import torch

        t = self.passes[:, None]
        return torch.div(self.total + t // 2, t, rounding_mode="floor")

    @property
    def prediction(self) -> torch.Tensor:
        return self.total.argmax(dim=-1)

    @property
    def mean_probs(self) -> torch.Tensor:
        """Host eq. 4 over the passes run: mean of softmax(y / 2^F), (B, C) float64."""
        import torch

        p = torch.softmax(self.per_pass.double() / 2 ** self.frac_bits, dim=-1)
        return (p * self.ran[..., None]).sum(1) / self.passes[:, None].double()


def run_adaptive(hw, x: torch.Tensor, choices: torch.Tensor, adapt: AdaptiveT
                 ) -> AdaptiveOutput:
    """``hw.run(x, choices)`` (choices of T_max passes) under the rule ``adapt``."""
    out = hw.run(x, choices)
    return AdaptiveOutput(out.per_pass, adaptive_passes(out.per_pass, adapt), out.frac_bits)


def adaptive_study(hw, sets: dict, y, T: int, adapt: AdaptiveT, *, seed: int = 0) -> dict:
    """The integer network under ``adapt`` on each set of ``sets`` (name -> images; the first
    is the labelled test set, ``y`` its labels), T = T_max passes, crossbar choices drawn from
    a generator seeded with ``seed``: per set the mean, min and max passes run and the mean
    predictive entropy of eq. 4 over the passes run; for the test set also the accuracy of the
    hardware class and of eq. 4 over the passes run, and the agreement with the T-pass class
    on the same choices."""
    import torch

    from .inference import sample_choices

    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, (name, x) in enumerate(sets.items()):
        ch = sample_choices(len(hw.layers), len(x), T, hw.N, hw.n_way, g)
        ad = run_adaptive(hw, x, ch, adapt)
        p = ad.mean_probs
        ent = -(p * p.clamp_min(1e-300).log()).sum(-1)
        row = {"images": len(x), "passes_mean": float(ad.passes.double().mean()),
               "passes_min": int(ad.passes.min()), "passes_max": int(ad.passes.max()),
               "entropy_mean": float(ent.mean())}
        if i == 0:
            full = ad.per_pass.sum(1).argmax(-1)
            row.update(hw_accuracy=100.0 * float((ad.prediction == y).double().mean()),
                       host_accuracy=100.0 * float((p.argmax(-1) == y).double().mean()),
                       full_t_agreement=100.0 * float((ad.prediction == full).double().mean()))
        out[name] = row
    return out


def study_markdown(study: dict, adapt: AdaptiveT, T: int) -> str:
    """Markdown table of :func:`adaptive_study`."""
    lines = [f"### Adaptive T (integer hardware mode): rule {adapt.rule}, T_min {adapt.t_min}, "
             f"T_max {T}" + (f", threshold {adapt.threshold}/{2 ** CONFIDENCE_BITS}"
                             if adapt.rule == "confidence" else ""), "",
             "| set | images | passes mean (min..max) | mean entropy (nats) | hw acc. (%) | "
             "eq. 4 acc. (%) | class = T-pass class (%) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in study.items():
        extra = [f"{r[k]:.2f}" if k in r else "-" for k in ("hw_accuracy", "host_accuracy",
                                                             "full_t_agreement")]
        lines.append(f"| {name} | {r['images']} | {r['passes_mean']:.2f} ({r['passes_min']}.."
                     f"{r['passes_max']}) | {r['entropy_mean']:.3f} | " + " | ".join(extra)
                     + " |")
    return "\n".join(lines) + "\n"
