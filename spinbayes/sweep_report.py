"""``spinbayes sweep report``: a Markdown table and figures from a sweep's results table.

Writes into the sweep's directory ``report.md`` (one row per finished point, or per setting
with the means over its seeds when seeds are swept: the swept fields, error, UA, AUROC, OoD
detection, energy per image, RTL mismatches; then the energy/AUROC Pareto front),
``sweep_<field>.png`` (error, UA, AUROC and energy per image against each swept field but
the seed: every point, and the mean over the other fields as a line) and ``pareto.png``
(energy per image against AUROC of every point, the Pareto-optimal settings joined).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .sweep_run import RESULTS_DB, ResultsTable

__all__ = ["REPORT_MD", "mean_over_seeds", "pareto_front", "swept_fields", "write_report"]

REPORT_MD = "report.md"
#: (column, label) of the figures plotted against each swept field.
FIGURES = (("error", "error (%)"), ("ua", "UA (%)"), ("auroc", "AUROC (%)"),
           ("energy_nj", "energy per image (nJ)"))
#: Figures in the Markdown table (column: header), when any point has them.
TABLE_COLUMNS = {"error": "error (%)", "ua": "UA (%)", "auroc": "AUROC (%)",
                 "ood_detection": "OoD detection (%)", "id_rejection": "ID rejection (%)",
                 "energy_nj": "energy (nJ/image)", "energy_measured_nj": "RTL energy (nJ/image)",
                 "rtl_mismatches": "RTL mismatches"}
_NOT_SWEPT = {"key", "sweep", "status", "failure", "train_key", "finished", "result_json",
              "worker", "seconds", "stages"}


def swept_fields(rows: list[dict], metrics) -> list[str]:
    """The input columns (Config fields and stage options) that vary between ``rows``."""
    if not rows:
        return []
    out = []
    for k in rows[0]:
        if k in _NOT_SWEPT or k in metrics:
            continue
        if len({json.dumps(r[k]) for r in rows}) > 1:
            out.append(k)
    return out


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows not dominated in (lower energy_nj, higher auroc), by increasing energy."""
    pts = [r for r in rows if _num(r.get("energy_nj")) and _num(r.get("auroc"))]
    pts.sort(key=lambda r: (r["energy_nj"], -r["auroc"]))
    front, best = [], -math.inf
    for r in pts:
        if r["auroc"] > best:
            front.append(r)
            best = r["auroc"]
    return front


def _num(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"
    return str(v)


def _sort_value(v):
    try:
        return (0, float(v))
    except (TypeError, ValueError):
        return (1, str(v))


def write_report(out, *, keys=None, title: str | None = None) -> Path:
    """Write report.md and the figures for the rows of ``out``/results.sqlite (only the
    rows whose key is in ``keys``, when given); returns the report's path."""
    from .sweep_run import METRICS

    out = Path(out)
    db = out / RESULTS_DB
    if not db.is_file():
        raise ValueError(f"no results table at {db}: run `spinbayes sweep SPEC.toml` first")
    table = ResultsTable(db)
    try:
        rows_all = table.rows(keys)
    finally:
        table.close()
    rows = [r for r in rows_all if r["status"] == "ok"]
    failed = [r for r in rows_all if r["status"] != "ok"]
    swept = swept_fields(rows, METRICS)
    shown = [c for c in TABLE_COLUMNS if any(r.get(c) is not None for r in rows)]
    by = [k for k in swept if k != "seed"]
    groups = mean_over_seeds(rows, by, shown) if "seed" in swept else rows
    groups.sort(key=lambda r: [_sort_value(r[k]) for k in by])
    seeds = ["seeds"] if "seed" in swept else []
    lines = [f"# Sweep {title or out.name}", "",
             f"{len(rows)} points finished, {len(failed)} failed; swept: "
             f"{', '.join(swept) or 'nothing'}. Percentages are of SpinBayes n = n_way "
             "(re-calibrated); AUROC and OoD detection are means over the OoD sets; energy "
             "per image from the analytic counts (measured: the RTL's counters)"
             + ("; each row is the mean over its seeds" if seeds else "") + ".", "",
             "| " + " | ".join([*by, *seeds, *(TABLE_COLUMNS[c] for c in shown)]) + " |",
             "|" + "---|" * (len(by) + len(seeds)) + "---:|" * len(shown)]
    for r in groups:
        lines.append("| " + " | ".join(_fmt(r[k]) for k in [*by, *seeds, *shown]) + " |")
    front = pareto_front(groups)
    figures = _figures(out, rows, swept, front, by)
    if front:
        lines += ["", "### Energy / AUROC Pareto front (lower energy, higher AUROC"
                  + (", means over seeds)" if seeds else ")"), "",
                  "| " + " | ".join([*by, "energy (nJ)", "AUROC (%)"]) + " |",
                  "|" + "---|" * len(by) + "---:|---:|"]
        lines += ["| " + " | ".join([*(_fmt(r[k]) for k in by), _fmt(r["energy_nj"]),
                                     _fmt(r["auroc"])]) + " |" for r in front]
    if failed:
        lines += ["", "### Failed points", ""]
        lines += [f"- {r['key']}: {r['failure']}" for r in failed]
    if figures:
        lines += ["", "Figures: " + ", ".join(f"[{p.name}]({p.name})" for p in figures)]
    path = out / REPORT_MD
    path.write_text("\n".join(lines) + "\n")
    return path


def mean_over_seeds(rows: list[dict], by: list[str], metrics) -> list[dict]:
    """One row per value of the ``by`` fields: each metric's mean over the rows (seeds)
    that have it, and ``seeds``, how many rows there were."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(json.dumps(r[k]) for k in by), []).append(r)
    out = []
    for members in groups.values():
        g = {k: members[0][k] for k in by}
        g["seeds"] = len(members)
        for c in set(metrics) | {"energy_nj", "auroc"}:
            vals = [m[c] for m in members if _num(m.get(c))]
            g[c] = sum(vals) / len(vals) if vals else None
        out.append(g)
    return out


def _figures(out: Path, rows, swept, front, by) -> list[Path]:
    if not rows:
        return []
    from matplotlib.figure import Figure

    paths = []
    metrics = [(c, label) for c, label in FIGURES if any(_num(r.get(c)) for r in rows)]
    for field in by:
        if not metrics:
            break
        fig = Figure(figsize=(3.2 * len(metrics), 3.0), layout="constrained")
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        xs = sorted({r[field] for r in rows}, key=_sort_value)
        pos = {x: i for i, x in enumerate(xs)}
        numeric = all(isinstance(x, (int, float)) for x in xs)
        for ax, (col, label) in zip(axes, metrics):
            pts = [(r[field], r[col]) for r in rows if _num(r.get(col))]
            place = (lambda x: x) if numeric else pos.get
            ax.scatter([place(x) for x, _ in pts], [y for _, y in pts], s=14, alpha=0.6)
            means = [(place(x), sum(y for xx, y in pts if xx == x) /
                      max(1, sum(1 for xx, _ in pts if xx == x))) for x in xs
                     if any(xx == x for xx, _ in pts)]
            ax.plot([m[0] for m in means], [m[1] for m in means], "-o", ms=3)
            if not numeric:
                ax.set_xticks(range(len(xs)), [str(x) for x in xs])
            ax.set_xlabel(field)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        p = out / f"sweep_{field}.png"
        fig.savefig(p, dpi=110)
        paths.append(p)
    pts = [r for r in rows if _num(r.get("energy_nj")) and _num(r.get("auroc"))]
    if pts:
        fig = Figure(figsize=(5, 3.6), layout="constrained")
        ax = fig.subplots()
        ax.scatter([r["energy_nj"] for r in pts], [r["auroc"] for r in pts], s=16,
                   alpha=0.6, label="points")
        ax.plot([r["energy_nj"] for r in front], [r["auroc"] for r in front], "-o",
                color="C3", ms=4, label="Pareto front" + (" (means over seeds)"
                                                          if "seed" in swept else ""))
        for r in front:
            ax.annotate(", ".join(f"{k}={r[k]}" for k in by), (r["energy_nj"], r["auroc"]),
                        fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.set_xlabel("energy per image (nJ)")
        ax.set_ylabel("AUROC (%), mean over OoD sets")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        p = out / "pareto.png"
        fig.savefig(p, dpi=110)
        paths.append(p)
    return paths
