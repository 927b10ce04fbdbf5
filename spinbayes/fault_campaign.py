"""The fault campaign of ``spinbayes faults``: its spec, the sweep and the report.

A :class:`CampaignSpec` (from a small TOML file, :func:`load_spec`, or the defaults) lists
the values of each fault parameter of :class:`~spinbayes.golden.faults.FaultSpec` to sweep
and the seeds. :func:`run_campaign` builds, for every (kind, value, seed), the fault map of
the mapped network's intended codes, runs the integer reference under it
(:func:`~spinbayes.golden.faults.faulted_network`, choices of the emulated arbiters under the
map's RNG thresholds) on the test set, every OoD set and the calibration images, and
evaluates it as Tables 1 and 3 do (:func:`~spinbayes.golden.evaluate.evaluate_probs`).
:func:`write_report` writes faults.json, faults.md and one PNG per fault kind.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_SWEEP", "UNITS", "CampaignSpec", "check_config", "load_spec", "parse_spec",
           "run_campaign", "write_report"]

#: The default sweep: each fault kind's values (rng_bias_ua in microamperes).
DEFAULT_SWEEP = {
    "stuck_mtj": (0.0, 0.02, 0.05, 0.1, 0.135, 0.2),
    "write_failure": (0.0, 0.01, 0.05, 0.1, 0.2, 0.4),
    "variation": (0.0, 0.02, 0.04, 0.06, 0.1, 0.15),
    "rng_stuck": (0.0, 0.1, 0.2, 0.35, 0.5),
    "rng_bias_ua": (0.0, 0.5, 1.0, 2.0, 5.0),
}
#: What each swept value means.
UNITS = {"stuck_mtj": "fraction of MTJs stuck (half in P, half in AP)",
         "write_failure": "probability that a switching MTJ fails per write pulse",
         "variation": "lognormal sigma of each MTJ's R_P and R_AP",
         "rng_stuck": "fraction of RNG devices stuck (at 0 or 1)",
         "rng_bias_ua": "sigma of the RNG drive-current offset from 230 uA, in uA"}
_CAMPAIGN_KEYS = {"seeds", "n_way", "health_samples", "max_retries", "stuck_p_fraction",
                  "images", "rtl_points", "rtl_images"}
_METRICS = ("error", "R_cc", "R_iu", "UA", "ood_detection", "id_rejection", "auroc")


@dataclass(frozen=True)
class CampaignSpec:
    """seeds: fault-map (and arbiter) seeds; n_way: None for the Config's; images: test
    images used (0: all); config: Config fields for training; rtl_points: points checked on
    the RTL (None: one per kind and one with all kinds, spinbayes/fault_rtl.py; 0: none),
    rtl_images: test images per RTL point."""

    sweep: dict = field(default_factory=lambda: dict(DEFAULT_SWEEP))
    seeds: tuple[int, ...] = (0, 1, 2)
    n_way: int | None = None
    health_samples: int = 2 ** 16
    max_retries: int = 3
    stuck_p_fraction: float = 0.5
    images: int = 0
    rtl_points: int | None = None
    rtl_images: int = 10
    config: dict = field(default_factory=dict)

    def points(self) -> list[tuple[str, float, int]]:
        return [(k, v, s) for k, values in self.sweep.items() for v in values
                for s in self.seeds]

    def fault_spec(self, kind: str, value: float, seed: int):
        return self.fault_spec_of({kind: value}, seed)

    def fault_spec_of(self, faults: dict, seed: int):
        """The FaultSpec of several kinds together ({kind: value})."""
        from .golden.faults import FaultSpec

        kw = {("rng_bias" if k == "rng_bias_ua" else k): v * 1e-6 if k == "rng_bias_ua" else v
              for k, v in faults.items()}
        return FaultSpec(**kw, seed=seed, max_retries=self.max_retries,
                         stuck_p_fraction=self.stuck_p_fraction)


def _int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {v!r}")
    return v


def parse_spec(data: dict, where: str = "spec") -> CampaignSpec:
    """A :class:`CampaignSpec` from the parsed TOML tables ``campaign``, ``config``,
    ``sweep``; every value is checked (each fault value by building its FaultSpec)."""
    unknown = set(data) - {"campaign", "config", "sweep"}
    if unknown:
        raise ValueError(f"{where}: unknown table(s) {sorted(unknown)}; expected campaign, "
                         f"config, sweep")
    camp, sweep = data.get("campaign", {}), data.get("sweep", DEFAULT_SWEEP)
    config = data.get("config", {})
    for name, t in (("campaign", camp), ("config", config), ("sweep", sweep)):
        if not isinstance(t, dict):
            raise ValueError(f"{where}: [{name}] must be a table, not {t!r}")
    bad = set(camp) - _CAMPAIGN_KEYS
    if bad:
        raise ValueError(f"{where}: unknown [campaign] key(s) {sorted(bad)}; expected "
                         f"{sorted(_CAMPAIGN_KEYS)}")
    bad = set(sweep) - set(DEFAULT_SWEEP)
    if bad:
        raise ValueError(f"{where}: unknown [sweep] key(s) {sorted(bad)}; expected "
                         f"{list(DEFAULT_SWEEP)}")
    if not sweep:
        raise ValueError(f"{where}: [sweep] must name at least one fault kind")
    seeds = camp.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or len(set(map(str, seeds))) != len(seeds):
        raise ValueError(f"{where}: campaign.seeds must be a non-empty list of distinct "
                         f"integers, not {seeds!r}")
    seeds = tuple(_int("campaign.seeds[]", s, 0) for s in seeds)
    n_way, rtl_points = camp.get("n_way"), camp.get("rtl_points")
    spec = CampaignSpec(
        sweep={}, seeds=seeds, n_way=None if n_way is None else _int("campaign.n_way", n_way, 1),
        health_samples=_int("campaign.health_samples", camp.get("health_samples", 2 ** 16), 1),
        max_retries=_int("campaign.max_retries", camp.get("max_retries", 3), 0),
        stuck_p_fraction=camp.get("stuck_p_fraction", 0.5),
        images=_int("campaign.images", camp.get("images", 0), 0), config=dict(config),
        rtl_points=None if rtl_points is None else _int("campaign.rtl_points", rtl_points, 0),
        rtl_images=_int("campaign.rtl_images", camp.get("rtl_images", 10), 1))
    for kind, values in sweep.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"{where}: sweep.{kind} must be a non-empty list of numbers, "
                             f"not {values!r}")
        for v in values:
            try:
                spec.fault_spec(kind, v, 0)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{where}: sweep.{kind}: {e}") from None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{where}: sweep.{kind} values must be numbers, not {v!r}")
        spec.sweep[kind] = tuple(float(v) for v in values)
    spec.fault_spec(next(iter(spec.sweep)), 0.0, 0)      # checks stuck_p_fraction, retries
    return spec


def load_spec(path) -> CampaignSpec:
    """Read a TOML campaign spec (format: examples/faults_digits.toml)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"fault spec {path} not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    return parse_spec(data, str(path))


def _evaluate_point(hw, fmap, sets, y_test, cfg, n_way, seed):
    """The figures of one point (None when an arbiter hangs)."""
    import torch

    from .golden.evaluate import HARDWARE_ROWS, batch_images, result_from_sets
    from .golden.faults import ArbiterStuck, fault_choices, faulted_network

    sizes = [len(x) for x in sets.values()]
    try:
        choices = fault_choices(fmap, sum(sizes), cfg.T, n_way, seed=seed)
    except ArbiterStuck as e:
        return None, str(e)
    net = faulted_network(hw, fmap)
    bs = batch_images(cfg.T, HARDWARE_ROWS)
    probs, start = {}, 0
    for (name, x), n in zip(sets.items(), sizes):
        ch = choices[:, start:start + n]
        probs[name] = torch.cat([net.run(x[i:i + bs], ch[:, i:i + bs]).probs
                                 for i in range(0, n, bs)])
        start += n
    r = result_from_sets("faulted", probs, y_test, cfg)
    ood = list(r.ood.values())
    return {"error": r.error, "R_cc": r.ratios.R_cc, "R_iu": r.ratios.R_iu, "UA": r.ratios.UA,
            "ood_detection": sum(o.detection for o in ood) / len(ood),
            "id_rejection": ood[0].id_rejection,
            "auroc": sum(o.auroc for o in ood) / len(ood),
            "ood": {k: {"detection": o.detection, "auroc": o.auroc}
                    for k, o in r.ood.items()}}, None


def _health(fmap, seed, samples):
    import numpy as np

    from .golden.faults import RNG_CURRENT, health_alarms
    from .golden.mtj import p_sw, threshold_for

    first = health_alarms(fmap, seed=seed, samples=samples)
    healthy = threshold_for(float(p_sw(RNG_CURRENT)), fmap.threshold_bits)
    off = fmap.rng_threshold != healthy
    hits = first[off & (first > 0)]
    return {"devices_off_nominal": int(off.sum()), "alarmed": int((off & (first > 0)).sum()),
            "false_alarms": int((~off & (first > 0)).sum()),
            "samples_to_alarm_median": float(np.median(hits)) if hits.size else None,
            "samples_to_alarm_max": int(hits.max()) if hits.size else None,
            "first_alarm": first.tolist(), "thresholds": fmap.rng_threshold.tolist()}


def check_config(spec: CampaignSpec, cfg) -> int:
    """The n of the campaign, after checking that ``cfg`` can run it (before training)."""
    if cfg.activation != "comparator":
        raise ValueError("the fault campaign runs the integer reference, which needs "
                         "comparator activations (activation = 'comparator')")
    n_way = cfg.n_way if spec.n_way is None else spec.n_way
    if not 1 <= n_way <= cfg.N:
        raise ValueError(f"campaign.n_way must be an integer in 1..N={cfg.N}, not {n_way!r}")
    return n_way


def run_campaign(spec: CampaignSpec, trained, mapped, ood_sets: dict, *,
                 progress: bool = True) -> dict:
    """Every point of ``spec`` on ``mapped``'s integer network; the JSON report."""
    from .golden.evaluate import evaluation_sets
    from .golden.faults import build_fault_map
    from .golden.progress import progress as progress_bar

    cfg, data = trained.cfg, trained.data
    n_way = check_config(spec, cfg)
    hw = mapped.hw(n_way)
    codes = [layer.codes for layer in hw.layers]
    sets = evaluation_sets(data, ood_sets)
    y_test = data.y_test
    if spec.images:
        sets["test"], y_test = sets["test"][:spec.images], y_test[:spec.images]
    t0 = time.perf_counter()
    rows = []
    bar = progress_bar(spec.points(), desc="faults", unit="point", enabled=progress)
    for kind, value, seed in bar:
        fmap = build_fault_map(codes, cfg.Q, spec.fault_spec(kind, value, seed))
        metrics, hung = _evaluate_point(hw, fmap, sets, y_test, cfg, n_way, seed)
        row = {"kind": kind, "value": value, "seed": seed, "metrics": metrics,
               "arbiter_hung": hung, "faults": fmap.summary()}
        if kind.startswith("rng"):
            row["health"] = _health(fmap, seed, spec.health_samples)
        rows.append(row)
    return {"config": cfg.to_dict(), "dataset": data.name, "n_way": n_way, "T": cfg.T,
            "n_test": len(sets["test"]), "ood_sets": {k: len(v) for k, v in ood_sets.items()},
            "spec": {"sweep": {k: list(v) for k, v in spec.sweep.items()},
                     "seeds": list(spec.seeds), "health_samples": spec.health_samples,
                     "max_retries": spec.max_retries,
                     "stuck_p_fraction": spec.stuck_p_fraction},
            "units": {k: UNITS[k] for k in spec.sweep}, "points": rows, "rtl": None,
            "seconds": time.perf_counter() - t0, "provenance": trained.provenance}


def _stats(values):
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return float("nan"), float("nan"), float("nan"), float("nan")
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd, min(v), max(v)


def _groups(report):
    out: dict = {}
    for row in report["points"]:
        out.setdefault(row["kind"], {}).setdefault(row["value"], []).append(row)
    return out


def _fmt(rows, key):
    m, sd, _, _ = _stats([r["metrics"][key] if r["metrics"] else None for r in rows])
    return "—" if math.isnan(m) else f"{m:.1f} ± {sd:.1f}"


def markdown(report: dict) -> str:
    """The campaign's tables: one per fault kind, mean ± standard deviation over seeds."""
    lines = [f"## Fault campaign: {report['dataset']}, n = {report['n_way']}, "
             f"T = {report['T']}, {report['n_test']} test images, seeds "
             f"{report['spec']['seeds']}", "",
             "Metrics in %, mean ± sample standard deviation over the seeds that finished; "
             "OoD detection and AUROC averaged over the OoD sets "
             f"({', '.join(report['ood_sets'])}); ID rej.: in-distribution test images the "
             "paper's rule rejects. Cells: differential cells whose level read back differs "
             "from the target after programming (all caught by read-back verify); retries: "
             f"program-and-verify retries per cell (cap {report['spec']['max_retries']}).", ""]
    from .golden.faults import RNG_CURRENT
    from .golden.mtj import p_sw, threshold_for

    healthy = threshold_for(float(p_sw(RNG_CURRENT)), 16)
    for kind, by_value in _groups(report).items():
        rng = kind.startswith("rng")
        lines += [f"### {kind}: {UNITS[kind]}", ""]
        head = "| value | error | R_cc | R_iu | UA | OoD det. | ID rej. | AUROC |"
        head += (" faulty devices | alarmed | median samples to alarm | false alarms | "
                 "arbiter hung |" if rng else
                 " cells wrong | verify fixed | retries / cell | max retries |")
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for value, rows in by_value.items():
            cells = [f"{value:g}", *(_fmt(rows, k) for k in _METRICS)]
            if rng:
                h = [r["health"] for r in rows]
                med = sorted(a for x in h
                             for arow, trow in zip(x["first_alarm"], x["thresholds"])
                             for a, t in zip(arow, trow) if a and t != healthy)
                cells += [str(sum(x["devices_off_nominal"] for x in h)),
                          str(sum(x["alarmed"] for x in h)),
                          f"{(med[(len(med) - 1) // 2] + med[len(med) // 2]) / 2:g}"
                          if med else "—",
                          str(sum(x["false_alarms"] for x in h)),
                          f"{sum(r['arbiter_hung'] is not None for r in rows)} / {len(rows)}"]
            else:
                f = [r["faults"] for r in rows]
                total = sum(x["cells"] for x in f)
                cells += [f"{100 * sum(x['cells_wrong'] for x in f) / total:.2f} %",
                          f"{sum(x['verify_fixed'] for x in f)} / "
                          f"{sum(x['verify_caught'] for x in f)}",
                          f"{sum(x['retries'] for x in f) / total:.3f}",
                          str(max(x["max_retries_cell"] for x in f))]
            lines.append("| " + " | ".join(cells) + " |")
        if rng:
            lines += ["", "Devices and alarms summed over the seeds; faulty = off its nominal "
                      "threshold; median over the alarmed faulty devices of all seeds; alarms "
                      "within the first "
                      f"{report['spec']['health_samples']} samples of each device (RCT, APT, "
                      "bias monitor at the default cutoffs)."]
        else:
            lines += ["", "Cells wrong and retries over all seeds' cells; verify fixed: cells "
                      "wrong after the first write that a retry corrected / all it caught."]
        lines += ["", f"Figure: faults_{kind}.png", ""]
    if report.get("rtl") is not None:
        from .fault_rtl import markdown_section

        lines += markdown_section(report["rtl"])
    lines.append(f"Campaign time: {report['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def _plot(kind: str, by_value: dict) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5.6), dpi=90)
    FigureCanvasAgg(fig)
    xs = list(by_value)
    titles = {"error": "error (%)", "R_cc": "R_cc (%)", "R_iu": "R_iu (%)", "UA": "UA (%)",
              "ood_detection": "OoD detection (%)", "id_rejection": "ID rejection (%)",
              "auroc": "AUROC (%)"}
    for i, key in enumerate(_METRICS):
        ax = fig.add_subplot(2, 4, i + 1)
        st = [_stats([r["metrics"][key] if r["metrics"] else None for r in by_value[x]])
              for x in xs]
        ax.plot(xs, [s[0] for s in st], "o-", color="tab:blue", label="mean")
        ax.fill_between(xs, [s[2] for s in st], [s[3] for s in st], color="tab:blue",
                        alpha=0.2, label="min..max over seeds")
        ax.set(title=titles[key], xlabel=kind)
        ax.grid(alpha=0.3)
    ax = fig.add_subplot(2, 4, 8)
    if kind.startswith("rng"):
        y = [100 * sum(r["arbiter_hung"] is not None for r in by_value[x]) / len(by_value[x])
             for x in xs]
        ax.plot(xs, y, "s-", color="tab:red")
        ax.set(title="arbiter hung (% of seeds)", xlabel=kind)
    else:
        st = [_stats([100 * r["faults"]["cells_wrong"] / r["faults"]["cells"]
                      for r in by_value[x]]) for x in xs]
        ax.plot(xs, [s[0] for s in st], "s-", color="tab:red")
        ax.fill_between(xs, [s[2] for s in st], [s[3] for s in st], color="tab:red", alpha=0.2)
        ax.set(title="cells read back wrong (%)", xlabel=kind)
    ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.suptitle(f"{kind}: {UNITS[kind]}")
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.09, top=0.88, wspace=0.3, hspace=0.45)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_report(report: dict, out) -> list[Path]:
    """faults.json, faults.md and faults_<kind>.png in ``out``, each written atomically."""
    from .golden.contract import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, by_value in _groups(report).items():
        paths.append(out / f"faults_{kind}.png")
        atomic_write(paths[-1], _plot(kind, by_value))
    text = markdown(report)
    report = {**report, "markdown": text}
    atomic_write(out / "faults.md", text)
    atomic_write(out / "faults.json", json.dumps(report, indent=2, allow_nan=True))
    return [out / "faults.json", out / "faults.md", *paths]
