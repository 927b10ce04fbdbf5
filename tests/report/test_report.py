"""The report of `spinbayes run`: every number of report.md is a value of report.json, and
report.json's values are those of the stage files it cites (eval.json, energy.json, ...)."""

import json
import re
import shutil
from pathlib import Path

import pytest

from spinbayes.config import Config
from spinbayes.golden.energy import BLOCKS
from spinbayes.pipeline import RunOptions, run_pipeline
from spinbayes.report import PARETO_HEADING, render

NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")


def _leaves(obj, out):
    """Every number of a JSON value, and every number written inside its strings."""
    if isinstance(obj, dict):
        for v in obj.values():
            _leaves(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _leaves(v, out)
    elif isinstance(obj, bool) or obj is None:
        pass
    elif isinstance(obj, (int, float)):
        out.append(float(obj))
    elif isinstance(obj, str):
        out.extend(float(t) for t in NUM.findall(obj))
    return out


def _from_json(token: str, values: list[float]) -> bool:
    d = len(token.split(".")[1]) if "." in token else 0
    for v in values:
        for scaled in (v, v * 1e3, v * 1e-3):     # pJ <-> nJ <-> µJ
            if f"{scaled:.{d}f}" == token or (d == 0 and f"{scaled:.0f}" == token.lstrip("-")
                                              and token.startswith("-") == (scaled < 0)):
                return True
    return False


def check_report(out):
    """Assertions shared by the fast and the end-to-end tests."""
    doc = json.loads((out / "report.json").read_text())
    text = (out / "report.md").read_text()
    assert text == render(doc)
    # 1. every number in a table row or an energy line of report.md is a report.json value
    values = _leaves(doc, [])
    synth = doc.get("synth", {}).get("markdown", "")
    body = text.replace(synth, "") if synth else text
    for line in body.splitlines():
        if not (line.startswith("|") or "nJ" in line or "µJ" in line):
            continue
        if line.startswith("|---") or line.startswith("| block |"):
            continue
        for tok in NUM.findall(line.replace("**", "")):
            assert _from_json(tok, values), f"{tok!r} in {line!r} is no report.json value"
    # 2. report.json equals the stage files it cites
    ev = json.loads((out / doc["files"]["eval"]).read_text())
    for m in doc["golden"]["methods"]:
        r = ev["results"][m["index"]]
        assert r["name"] == m["name"] and r["error"] == m["error"]
        for s, det in m["detection"].items():
            assert r["ood"][s]["detection"] == det
            assert r["ood"][s]["id_rejection"] == m["id_rejection"]
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| {m['name']} |"))
        assert f"| {m['error']:.2f} | {m['id_rejection']:.2f} |" in row
    en = json.loads((out / doc["files"]["energy"]).read_text())
    assert doc["energy"]["analytic"]["total_uj"] == en["analytic"]["total_uj"]
    assert doc["energy"]["analytic"]["per_block_pj"] == en["analytic"]["per_block_pj"]
    assert abs(sum(en["analytic"]["per_block_pj"].values()) - en["analytic"]["total_pj"]) \
        < 1e-9 * en["analytic"]["total_pj"]
    assert f"Analytic (expected RNG draws): {en['analytic']['total_uj'] * 1e3:.3f} nJ" in text
    for lab, v in en["lenet5"]["readings"].items():
        assert f"- {lab}: {v['total_uj']:.4f} µJ per image" in text
    for b in BLOCKS:
        assert f"| {b} | {en['model']['pj'][b]:.2f} | {en['model']['per'][b]} |" in text
    mem = json.loads((out / doc["files"]["memory"]).read_text())
    assert [r["size_mb"] for r in mem] == [r["size_mb"] for r in doc["memory"]["rows"]]
    if "coverify" in doc:
        cov = json.loads((out / doc["files"]["coverify"]).read_text())
        assert doc["coverify"]["counter_totals"] == cov["counter_totals"]
        meas = en["measured"]
        for name, v in meas["counter_check"].items():
            assert v["rtl_total"] == cov["counter_totals"][name]
        assert f"{meas['total_uj'] * 1e3:.3f} nJ per image" in text
    if "pareto" in doc:        # the energy / accuracy / uncertainty study (energy_pareto.py)
        par = json.loads((out / doc["files"]["pareto"]).read_text())
        assert [r["energy_pj"] for r in par["rows"]] == [
            r["energy_pj"] for r in doc["pareto"]["rows"]]
        assert PARETO_HEADING in text and "the RTL's counters give with REUSE on" in text
        for r in par["rows"]:
            assert (f"| {r['setting']} | {r['passes_id']:.2f} |" in text
                    and f"| {r['energy_pj'] * 1e-3:.3f} | {r['energy_reuse_pj'] * 1e-3:.3f} |"
                    in text), r["setting"]
        assert par["rows"][0]["energy_pj"] == pytest.approx(en["analytic"]["total_pj"])
    for fig in doc["figures"].values():
        assert (out / fig).stat().st_size > 10_000, fig
    return doc, text


def test_report_numbers_equal_json(tmp_path):
    """A tiny run without the RTL stages: golden, energy, memory, figures, report."""
    cfg = Config(hidden=(8,), epochs=1, ood_samples=20, recal_batches=1, T=3)
    doc = run_pipeline(cfg, tmp_path, RunOptions(rtl=False, synth=False), progress=False)
    d2, text = check_report(tmp_path)
    assert json.dumps(d2, sort_keys=True) == json.dumps(json.loads(json.dumps(doc)),
                                                        sort_keys=True)
    assert doc["stages"]["RTL co-verification"]["status"] == "skipped"
    assert "**Not available in this run** (stage 'RTL co-verification': skipped" in text
    assert "**Measured energy not available**" in text
    assert doc["stages"]["energy vs accuracy"]["status"] == "ok"
    assert [r["setting"] for r in doc["pareto"]["rows"]][:3] == [
        "full T", "exact", "confidence 0.50, T_min 2"]
    # a tampered report.json no longer renders to the same report.md
    doc["energy"]["analytic"]["total_uj"] *= 2
    assert render(doc) != text


def test_bad_energy_table_fails_before_training(tmp_path):
    (tmp_path / "e.json").write_text('{"memory": -4.71}')
    with pytest.raises(ValueError, match="finite number >= 0"):
        run_pipeline(Config(epochs=1), tmp_path / "out",
                     RunOptions(energy_table=str(tmp_path / "e.json")), progress=False)
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_spinbayes_run_quick_end_to_end(tmp_path):
    """`spinbayes run --quick --threads 1` (about 30 s): every stage, RTL co-verification
    (Icarus) and synthesis included; the README's excerpt is this run's, figure for figure."""
    from spinbayes.cli import main
    from spinbayes.excerpt import COMMAND, readme_block, render

    out = tmp_path / "run"
    assert main([*COMMAND, "--quiet", "--out", str(out)]) == 0
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert readme_block(readme) == render(out), (
        "README.md's excerpt is not what the main job prints now: regenerate it with "
        "`python -m spinbayes.excerpt RUN_DIR --update README.md`")
    doc, text = check_report(out)
    st = doc["stages"]
    assert st["train"]["status"] == st["golden evaluation"]["status"] == "ok"
    if shutil.which("iverilog"):
        assert st["RTL co-verification"]["status"] == "ok", st["RTL co-verification"]
        assert doc["coverify"]["passed"] and doc["coverify"]["mismatches"] == 0
        assert doc["energy"]["measured"]["all_counters_equal"]
    assert st["synthesis"]["status"] == "ok", st["synthesis"]
    assert "## Synthesis resources" in text and doc["synth"]["markdown"] in text
