"""The report of ``spinbayes run``: ``report.json`` (every figure, with its source) and
``report.md`` rendered from that dict alone, plus PNG figures.

:func:`render` takes nothing but the report dict, so every number in report.md is a value of
report.json; each section names the file and key the values were copied from (eval.json,
coverify.json, synth/synth.json, energy.json, memory.json, all written by the same run).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

__all__ = ["REPORT_JSON", "REPORT_MD", "build_report", "make_figures", "plot_entropy",
           "plot_ood", "render", "write_report"]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FIGURES = {"mtj": "mtj.png", "entropy": "entropy.png", "ood": "ood.png",
           "energy": "energy.png", "scaling": "energy_scaling.png", "memory": "memory.png",
           "pareto": "pareto.png"}
#: The heading of the energy / accuracy / uncertainty section (golden.energy_pareto).
PARETO_HEADING = "## Energy against accuracy and uncertainty (adaptive T, first-layer reuse)"


def _save(fig, path: Path) -> Path:
    from .golden.checkpoint import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(path, buf.getvalue())
    return path


def _figure(**kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def plot_entropy(entropies: dict, path, method: str) -> Path:
    """Histograms of normalised predictive entropy: the test set against each OoD set."""
    ood = [k for k in entropies if k != "test"]
    if "test" not in entropies or not ood:
        raise ValueError("entropies need a 'test' entry and at least one OoD set")
    cols = min(3, len(ood))
    rows = math.ceil(len(ood) / cols)
    fig = _figure(figsize=(4.2 * cols, 3.2 * rows))
    bins = np.linspace(0, 1, 31)
    test = np.asarray(entropies["test"], dtype=float)
    for i, name in enumerate(ood):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.hist(test, bins=bins, density=True, alpha=0.6, label=f"in-distribution ({len(test)})")
        o = np.asarray(entropies[name], dtype=float)
        ax.hist(o, bins=bins, density=True, alpha=0.6, label=f"{name} ({len(o)})")
        ax.set_xlabel("normalised predictive entropy")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Predictive entropy, {method}")
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_ood(methods: list[dict], path) -> Path:
    """Grouped bars: OoD detection (%) per set and the in-distribution rejection rate, one bar
    per method (``methods``: the ``golden`` entries of the report)."""
    sets = list(methods[0]["detection"])
    groups = ["ID rejection", *sets]
    fig = _figure(figsize=(max(6.0, 1.3 * len(groups) + 2), 4.0))
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        ys = [m["id_rejection"], *(m["detection"][s] for s in sets)]
        xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, ys, width, label=m["name"])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("rejected (%)")
    ax.set_ylim(0, 105)
    ax.set_title("OoD detection (paper's rule) and in-distribution rejection")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def _golden_methods(ev: dict, wanted: list[str]) -> list[dict]:
    out = []
    for i, r in enumerate(ev["results"]):
        if r["name"] not in wanted or not r["ood"]:
            continue
        first = next(iter(r["ood"].values()))
        out.append({"name": r["name"], "index": i, "error": r["error"],
                    "id_rejection": first["id_rejection"],
                    "detection": {k: v["detection"] for k, v in r["ood"].items()},
                    "auroc": {k: v["auroc"] for k, v in r["ood"].items()}})
    return out


def make_figures(out: Path, ctx: dict, cfg) -> dict:
    """Every figure the run's data allows; returns {figure: file name} (or a reason)."""
    from .golden import energy as en
    from .golden.mtj import plot_mtj

    out = Path(out)
    figs: dict = {}
    plot_mtj(out / FIGURES["mtj"])
    figs["mtj"] = FIGURES["mtj"]
    if "entropies" in ctx:
        plot_entropy({k: v.numpy() for k, v in ctx["entropies"].items()},
                     out / FIGURES["entropy"], f"SpinBayes n={cfg.n_way}, T={cfg.T}")
        figs["entropy"] = FIGURES["entropy"]
    if "eval" in ctx:
        methods = _golden_methods(ctx["eval"], _wanted(cfg))
        if methods:
            plot_ood(methods, out / FIGURES["ood"])
            figs["ood"] = FIGURES["ood"]
    if "energy" in ctx:
        e = ctx["energy"]
        which = "measured" if "measured" in e else "analytic"
        title = "Measured (RTL counters)" if which == "measured" else "Analytic"
        en.plot_energy_breakdown(e[which], out / FIGURES["energy"],
                                 f"{title} energy, T={cfg.T}")
        figs["energy"] = FIGURES["energy"]
        en.plot_scaling(e["scaling"], out / FIGURES["scaling"], e["scaling_defaults"])
        figs["scaling"] = FIGURES["scaling"]
    if "pareto" in ctx:
        from .golden.energy_pareto import plot_pareto

        plot_pareto(ctx["pareto"], out / FIGURES["pareto"])
        figs["pareto"] = FIGURES["pareto"]
    if "memory_rows" in ctx:
        from .golden.memory import plot_memory

        plot_memory(ctx["memory_rows"], out / FIGURES["memory"])
        figs["memory"] = FIGURES["memory"]
    return figs


def _wanted(cfg) -> list[str]:
    return list(dict.fromkeys(["BBB (float)", f"SpinBayes n={cfg.n_way}", "SpinBayes n=1",
                               "SpinBayes n=2"]))


def build_report(cfg, options, ctx: dict, files: dict, figures: dict, stages: dict,
                 seconds: float, versions: dict) -> dict:
    """The report dict: what :func:`render` prints, each block with its source file/key."""
    doc = {"config": cfg.to_dict(), "options": {k: getattr(options, k) for k in
                                                options.__dataclass_fields__},
           "files": dict(files), "figures": figures,
           "stages": {k: dict(v) for k, v in stages.items()}, "seconds": seconds,
           "versions": versions}
    if "eval" in ctx:
        ev = ctx["eval"]
        doc["golden"] = {"source": f"{files['eval']}: results[i] (error, ood[set].detection, "
                                   f"ood[set].id_rejection, ood[set].auroc)",
                         "dataset": ev["dataset"], "n_test": ev["n_test"],
                         "ood_sets": ev["ood_sets"],
                         "methods": _golden_methods(ev, _wanted(cfg))}
    if "entropies" in ctx:
        doc["entropy"] = {"source": "computed in this run (golden.evaluate."
                                    "spinbayes_entropies)", "method": f"SpinBayes n={cfg.n_way}",
                          "mean": {k: float(v.mean()) for k, v in ctx["entropies"].items()},
                          "images": {k: int(v.numel()) for k, v in ctx["entropies"].items()}}
    if "coverify" in ctx:
        c = ctx["coverify"]
        doc["coverify"] = {"source": files["coverify"],
                           **{k: c[k] for k in ("images", "mismatches", "passed", "vfy_errors",
                                                "vfy_checked", "accuracy", "float_agreement",
                                                "simulator", "cycles", "counter_totals")},
                           "params": {k: c["params"][k] for k in
                                      ("N", "n_max", "rows_max", "outputs_max", "classes_max",
                                       "layers_max", "groups_total", "T_max")}}
    if "synth" in ctx:
        from .rtl.synth import markdown_table

        doc["synth"] = {"source": files["synth"], "markdown": markdown_table(ctx["synth"]),
                        "mode": ctx["synth"].get("mode"),
                        "seconds": ctx["synth"].get("seconds")}
    if "energy" in ctx:
        e = ctx["energy"]
        en_doc = {"source": files["energy"], "model": e["model"],
                  "analytic": _energy_part(e["analytic"]),
                  "lenet5": {lab: _energy_part(v) for lab, v in e["lenet5"]["readings"].items()},
                  "table5": e["table5"]}
        if "measured" in e:
            en_doc["measured"] = {**_energy_part(e["measured"]),
                                  "images": e["measured"]["images"],
                                  "counter_check": e["measured"]["counter_check"],
                                  "all_counters_equal": e["measured"]["all_counters_equal"]}
        doc["energy"] = en_doc
    if "pareto" in ctx:
        doc["pareto"] = {"source": f"{files['pareto']} (golden.energy_pareto.pareto_study)",
                         **json.loads(json.dumps(ctx["pareto"], allow_nan=True))}
    if "memory" in ctx:
        doc["memory"] = {"source": files["memory"],
                         "rows": [{k: r[k] for k in ("topology", "method", "size_mb", "ratio")}
                                  for r in ctx["memory"]]}
    return doc


def _energy_part(e: dict) -> dict:
    per_layer = e.get("per_layer_pj", {})
    return {"total_uj": e["total_uj"], "total_pj": e["total_pj"],
            "per_block_pj": e["per_block_pj"], "per_layer_pj": per_layer,
            "per_layer_total_pj": {k: sum(v.values()) for k, v in per_layer.items()}}


# --- rendering ----------------------------------------------------------------------------
def _f(v, d=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{d}f}"


def _unavailable(doc: dict, stage: str) -> list[str]:
    s = doc["stages"].get(stage, {"status": "not run", "reason": "-"})
    return [f"**Not available in this run** (stage '{stage}': {s['status']}; "
            f"{s.get('reason', '-')}). No figures are shown for it.", ""]


def render(doc: dict) -> str:
    """report.md from the report dict alone."""
    cfg = doc["config"]
    L = ["# SpinBayes run report", "",
         f"Data set {cfg['dataset']}, topology {cfg['topology']} "
         f"{'-'.join(map(str, cfg['hidden'])) if cfg['topology'] == 'mlp' else ''}, "
         f"N = {cfg['N']}, Q = {cfg['Q']}, T = {cfg['T']}, n = {cfg['n_way']}, "
         f"epochs = {cfg['epochs']}, seed = {cfg['seed']}"
         f"{' (--quick)' if doc['options']['quick'] else ''}. "
         f"Total time {_f(doc['seconds'], 0)} s.", "",
         "Every number below is a value of `report.json` (rendered by spinbayes/report.py); "
         "each section names the file of this run it was copied from.", "",
         "## Stages", "", "| stage | status | seconds | note |", "|---|---|---:|---|"]
    for name, s in doc["stages"].items():
        note = s.get("reason", "").replace("|", "\\|").replace("\n", " ")[:160]
        L.append(f"| {name} | {s['status']} | {_f(s['seconds'], 1)} | {note} |")
    L += [""]

    L += ["## Device: SOT-MTJ switching curve (Fig. 4)", ""]
    if "mtj" in doc["figures"]:
        L += [f"![MTJ switching probability]({doc['figures']['mtj']})", ""]

    L += ["## Golden evaluation (Tables 1 and 3)", ""]
    g = doc.get("golden")
    if g:
        sets = list(g["methods"][0]["detection"]) if g["methods"] else []
        L += [f"Source: {g['source']}. {g['n_test']} test images of {g['dataset']}; OoD sets: "
              + ", ".join(f"{k} ({v})" for k, v in g["ood_sets"].items()) + ".", "",
              "| method | error (%) | ID rejection (%) | " + " | ".join(
                  f"{s} det. (%)" for s in sets) + " | " + " | ".join(
                  f"{s} AUROC (%)" for s in sets) + " |",
              "|---|---:|---:|" + "---:|" * (2 * len(sets))]
        for m in g["methods"]:
            L.append(f"| {m['name']} | {_f(m['error'])} | {_f(m['id_rejection'])} | "
                     + " | ".join(_f(m["detection"][s]) for s in sets) + " | "
                     + " | ".join(_f(m["auroc"][s]) for s in sets) + " |")
        L += [""]
        if "ood" in doc["figures"]:
            L += [f"![OoD detection]({doc['figures']['ood']})", ""]
    else:
        L += _unavailable(doc, "golden evaluation")
    if "entropy" in doc:
        e = doc["entropy"]
        L += [f"Predictive entropy ({e['method']}; {e['source']}), mean per set: "
              + ", ".join(f"{k} {_f(v, 3)}" for k, v in e["mean"].items()) + ".", "",
              f"![Predictive entropy histograms]({doc['figures'].get('entropy', '')})", ""]

    L += ["## RTL co-verification", ""]
    c = doc.get("coverify")
    if c:
        cyc = c["cycles"]
        L += [f"Source: {c['source']}. {c['images']} test images through the Verilog core "
              f"({c['simulator']}, cocotb), design N = {c['params']['N']}, "
              f"{c['params']['rows_max']} x {c['params']['outputs_max']} crossbars, "
              f"{c['params']['groups_total']} groups, "
              f"{c['params'].get('classes_max', c['params']['outputs_max'])} classes.", "",
              "| images | mismatches | passed | cells read back wrong / checked | "
              "RTL accuracy (%) | agreement with float model (%) | cycles min / median / max |",
              "|---:|---:|---|---:|---:|---:|---:|",
              f"| {c['images']} | {c['mismatches']} | {c['passed']} | {c['vfy_errors']} / "
              f"{c['vfy_checked']} | {_f(c['accuracy'])} | {_f(c['float_agreement'])} | "
              f"{cyc.get('min')} / {_f(cyc.get('median'), 1)} / {cyc.get('max')} |", ""]
    else:
        L += _unavailable(doc, "RTL co-verification")

    L += ["## Synthesis resources", ""]
    s = doc.get("synth")
    if s:
        L += [f"Source: {s['source']} ({s['mode']} mode, {_f(s['seconds'], 0)} s).", "",
              s["markdown"], ""]
    else:
        L += _unavailable(doc, "synthesis")

    L += _render_energy(doc)

    L += [PARETO_HEADING, ""]
    if "pareto" in doc:
        from .golden.energy_pareto import pareto_markdown

        L += [f"Source: {doc['pareto']['source']}.", "",
              pareto_markdown(doc["pareto"], doc["figures"].get("pareto"))]
    else:
        L += _unavailable(doc, "energy vs accuracy")

    L += ["## Memory overhead (section 4.3.2, Fig. 7)", ""]
    m = doc.get("memory")
    if m:
        methods = list(dict.fromkeys(r["method"] for r in m["rows"]))
        topos = list(dict.fromkeys(r["topology"] for r in m["rows"]))
        by = {(r["topology"], r["method"]): r for r in m["rows"]}
        L += [f"Source: {m['source']}. Model size in MB (ratio to SpinBayes).", "",
              "| topology | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        for t in topos:
            L.append(f"| {t} | " + " | ".join(
                f"{_f(by[t, me]['size_mb'], 3)} ({_f(by[t, me]['ratio'])}x)"
                if (t, me) in by else "-" for me in methods) + " |")
        L += ["", f"![Memory overhead]({doc['figures'].get('memory', '')})", ""]
    else:
        L += _unavailable(doc, "memory overhead")
    return "\n".join(L) + "\n"


def _render_energy(doc: dict) -> list[str]:
    from .golden.energy import BLOCKS

    L = ["## Energy (section 4.3.1, Tables 4 and 5)", ""]
    e = doc.get("energy")
    if not e:
        return L + _unavailable(doc, "energy")
    mod = e["model"]
    L += [f"Source: {e['source']}. Energy table: {mod['source']}; readings see "
          "docs/ENERGY.md.", "",
          "| block | pJ per operation | charged per |", "|---|---:|---|"]
    for b in BLOCKS:
        L.append(f"| {b} | {_f(mod['pj'][b])} | {mod['per'][b]} |")
    L += [""]
    meas = e.get("measured")
    if meas:
        ok = "all equal" if meas["all_counters_equal"] else "NOT all equal"
        L += [f"**Measured** (RTL activity counters of {meas['images']} images x per-op "
              f"energy): **{_f(meas['total_uj'] * 1e3, 3)} nJ per image**. "
              f"Analytic counts against the RTL counters (totals over the images): {ok}.", "",
              "| counter | RTL total | analytic total | equal |", "|---|---:|---:|---|"]
        for name, v in meas["counter_check"].items():
            L.append(f"| {name} | {v['rtl_total']} | {v['analytic_total']} | {v['equal']} |")
        L += ["", *_breakdown("Measured", meas)]
    else:
        L += ["**Measured energy not available**: the RTL co-verification did not run "
              "(see Stages); only the analytic figures follow.", ""]
    L += _breakdown("Analytic (expected RNG draws)", e["analytic"])
    L += [f"![Energy breakdown]({doc['figures'].get('energy', '')})", "",
          "### LeNet-5 on MNIST, T = 10 (analytic), and the paper's Table 5", ""]
    for lab, v in e["lenet5"].items():
        L += [f"- {lab}: {_f(v['total_uj'], 4)} µJ per image ("
              + ", ".join(f"{b} {_f(v['per_block_pj'][b] * 1e-3, 3)} nJ" for b in BLOCKS)
              + ")"]
    L += ["", "| method | implementation | RNGs | µJ / image | network | source |",
          "|---|---|---|---:|---|---|"]
    for r in e["table5"]:
        L.append(f"| {r['method']} | {r['implementation']} | {r['rngs']} | "
                 f"{_f(r['uj_per_image'], 4)} | {r['network']} | {r['source']} |")
    L += ["", "What differs in the assumptions: docs/ENERGY.md, section 'Table 5'.", "",
          f"![Energy scaling]({doc['figures'].get('scaling', '')})", ""]
    return L


def _breakdown(title: str, e: dict) -> list[str]:
    from .golden.energy import BLOCKS

    L = [f"{title}: {_f(e['total_uj'] * 1e3, 3)} nJ per image.", "",
         "| layer | " + " | ".join(f"{b} (pJ)" for b in BLOCKS) + " | total (pJ) |",
         "|---|" + "---:|" * (len(BLOCKS) + 1)]
    for layer, v in e.get("per_layer_pj", {}).items():
        L.append(f"| {layer} | " + " | ".join(_f(v[b]) for b in BLOCKS)
                 + f" | {_f(e['per_layer_total_pj'][layer])} |")
    L.append("| all | " + " | ".join(_f(e["per_block_pj"][b]) for b in BLOCKS)
             + f" | {_f(e['total_pj'])} |")
    return [*L, ""]


def write_report(out, doc: dict) -> tuple[Path, Path]:
    """Write ``out/report.json`` and ``out/report.md`` (atomically)."""
    from .golden.checkpoint import atomic_write

    out = Path(out)
    j, m = out / REPORT_JSON, out / REPORT_MD
    atomic_write(j, json.dumps(doc, indent=2, allow_nan=True))
    atomic_write(m, render(json.loads(j.read_text())))
    return j, m
