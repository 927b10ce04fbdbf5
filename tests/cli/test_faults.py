"""``spinbayes faults``: a tiny campaign end to end, and bad specs."""

import json
import math

import pytest

from spinbayes.cli import build_parser, main
from spinbayes.fault_campaign import DEFAULT_SWEEP, CampaignSpec, parse_spec

TINY = """
[campaign]
seeds = [0, 1]
images = 40
health_samples = 2048
max_retries = 2
[config]
epochs = 1
hidden = [8]
ood_samples = 16
recal_batches = 1
T = 3
[sweep]
stuck_mtj = [0.0, 0.2]
write_failure = [0.0, 0.3]
variation = [0.0, 0.1]
rng_stuck = [0.0, 0.5]
rng_bias_ua = [0.0, 5.0]
"""


def test_tiny_campaign_end_to_end(tmp_path, capsys):
    spec = tmp_path / "faults.toml"
    spec.write_text(TINY)
    out = tmp_path / "out"
    assert main(["faults", str(spec), "--out", str(out), "--quiet", "--threads", "1",
                 "--no-rtl"]) == 0
    text = capsys.readouterr().out
    assert "### stuck_mtj" in text and "20 points" in text
    assert "RTL sample" not in text
    report = json.loads((out / "faults.json").read_text())
    assert report["rtl"] is None
    assert report["n_test"] == 40 and report["T"] == 3
    points = report["points"]
    assert len(points) == 5 * 2 * 2
    assert {(p["kind"], p["value"], p["seed"]) for p in points} == {
        (k, v, s) for k in DEFAULT_SWEEP for v in (0.0, {"stuck_mtj": 0.2, "write_failure": 0.3,
                                                         "variation": 0.1, "rng_stuck": 0.5,
                                                         "rng_bias_ua": 5.0}[k])
        for s in (0, 1)}
    # every kind at value 0 is the same fault-free chip: identical figures per seed
    for seed in (0, 1):
        zero = [p["metrics"] for p in points if p["value"] == 0 and p["seed"] == seed]
        assert len(zero) == 5 and all(m == zero[0] for m in zero)
    for p in points:
        f = p["faults"]
        assert f["verify_caught"] == f["verify_fixed"] + f["verify_failed"]
        assert f["retries"] <= 2 * f["verify_caught"]
        if p["metrics"] is not None:
            assert all(0 <= p["metrics"][k] <= 100 for k in ("error", "UA", "auroc")
                       if not math.isnan(p["metrics"][k]))
    stuck = [p for p in points if p["kind"] == "stuck_mtj" and p["value"] > 0]
    assert all(p["faults"]["cells_wrong"] > 0 for p in stuck)
    for p in points:
        if p["kind"].startswith("rng"):
            h = p["health"]
            assert h["alarmed"] <= h["devices_off_nominal"]
            if p["value"] == 0:
                assert h["devices_off_nominal"] == 0
    md = (out / "faults.md").read_text()
    for kind in DEFAULT_SWEEP:
        png = out / f"faults_{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"faults_{kind}.png" in md
    # the checkpoint it trained is reusable, and gives the same figures
    spec.write_text(TINY.split("[sweep]")[0] + "[sweep]\nstuck_mtj = [0.2]\n")
    assert main(["faults", str(spec), "--checkpoint", str(out / "checkpoint"), "--out",
                 str(tmp_path / "again"), "--quiet", "--no-rtl"]) == 0
    again = json.loads((tmp_path / "again" / "faults.json").read_text())["points"]
    assert [p["metrics"] for p in again] == [p["metrics"] for p in stuck]
    spec.write_text(TINY.replace("hidden = [8]", "hidden = [9]"))
    assert main(["faults", str(spec), "--checkpoint", str(out / "checkpoint"), "--out",
                 str(tmp_path / "again"), "--quiet"]) == 2
    assert "training field(s) ['hidden']" in capsys.readouterr().err


def test_defaults_without_a_spec():
    spec = parse_spec({})
    assert spec == CampaignSpec()
    assert max(spec.sweep["stuck_mtj"]) >= 0.2
    args = build_parser().parse_args(["faults"])
    assert args.spec is None and args.out == "runs/faults"


@pytest.mark.parametrize("data, match", [
    ({"sweeps": {}}, r"unknown table\(s\) \['sweeps'\]"),
    ({"campaign": {"seed": [1]}}, r"unknown \[campaign\] key\(s\) \['seed'\]"),
    ({"sweep": {"stuck": [0.1]}}, r"unknown \[sweep\] key\(s\) \['stuck'\]"),
    ({"sweep": {}}, "must name at least one fault kind"),
    ({"sweep": {"stuck_mtj": 0.1}}, "sweep.stuck_mtj must be a non-empty list"),
    ({"sweep": {"stuck_mtj": [-0.1]}}, "sweep.stuck_mtj: stuck_mtj must be a probability"),
    ({"sweep": {"write_failure": [1.5]}}, "write_failure must be a probability in"),
    ({"sweep": {"variation": [float("nan")]}}, "variation must be a lognormal sigma"),
    ({"sweep": {"rng_stuck": ["0.1"]}}, "rng_stuck must be a probability"),
    ({"sweep": {"rng_bias_ua": [-1.0]}}, "rng_bias must be a current sigma"),
    ({"campaign": {"seeds": []}}, "campaign.seeds must be a non-empty list"),
    ({"campaign": {"seeds": [1, 1]}}, "campaign.seeds must be a non-empty list of distinct"),
    ({"campaign": {"seeds": [-1]}}, r"campaign.seeds\[\] must be an integer >= 0"),
    ({"campaign": {"n_way": 0}}, "campaign.n_way must be an integer >= 1"),
    ({"campaign": {"health_samples": 1.5}}, "campaign.health_samples must be an integer"),
    ({"campaign": {"stuck_p_fraction": 2.0}}, "stuck_p_fraction must be a probability"),
    ({"campaign": {"max_retries": -1}}, "campaign.max_retries must be an integer >= 0"),
    ({"campaign": {"rtl_points": -1}}, "campaign.rtl_points must be an integer >= 0"),
    ({"campaign": {"rtl_images": 0}}, "campaign.rtl_images must be an integer >= 1"),
    ({"config": 3}, r"\[config\] must be a table")])
def test_bad_specs_are_refused(data, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(data)


def test_bad_spec_files_exit_2(tmp_path, capsys):
    assert main(["faults", str(tmp_path / "missing.toml"), "--out", str(tmp_path)]) == 2
    assert "fault spec" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\nstuck_mtj = [0.1]\n")
    assert main(["faults", str(bad), "--out", str(tmp_path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    bad.write_text("[sweep]\nstuck_mtj = [0.0, nan]\n")
    assert main(["faults", str(bad), "--out", str(tmp_path)]) == 2
    assert "stuck_mtj must be a probability" in capsys.readouterr().err
    bad.write_text("[campaign]\nn_way = 6\n")
    assert main(["faults", str(bad), "--out", str(tmp_path / "n")]) == 2
    assert "campaign.n_way must be an integer in 1..N=5, not 6" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()                # refused before training
    bad.write_text("[config]\nactivation = 'relu'\n")
    assert main(["faults", str(bad), "--out", str(tmp_path)]) == 2
    assert "needs comparator activations" in capsys.readouterr().err
    bad.write_text("[config]\nepochs = 0\n")
    assert main(["faults", str(bad), "--out", str(tmp_path)]) == 2
    assert "epochs" in capsys.readouterr().err


def test_example_spec_parses():
    from pathlib import Path

    from spinbayes.fault_campaign import load_spec

    spec = load_spec(Path(__file__).parents[2] / "examples" / "faults_digits.toml")
    assert spec == CampaignSpec()


def test_rtl_sample_points_default_choice():
    from spinbayes.fault_rtl import default_rtl_points, sample_points

    spec = CampaignSpec()
    assert default_rtl_points(spec.sweep) == 6 and spec.rtl_images == 10
    pts = sample_points(spec.sweep, 0, 6)
    assert [p["faults"] for p in pts] == [
        {"stuck_mtj": 0.2}, {"write_failure": 0.4}, {"variation": 0.15}, {"rng_stuck": 0.5},
        {"rng_bias_ua": 5.0},
        {"stuck_mtj": 0.1, "write_failure": 0.1, "variation": 0.06, "rng_stuck": 0.2,
         "rng_bias_ua": 1.0}]
    assert all(p["seed"] == 0 for p in pts)
    more = sample_points(spec.sweep, 3, 8)
    assert [p["faults"] for p in more[6:]] == [{"stuck_mtj": 0.135}, {"stuck_mtj": 0.1}]
    assert sample_points({"stuck_mtj": (0.0,)}, 0, 5) == []


RTL_TINY = (TINY.split("[sweep]")[0].replace("seeds = [0, 1]", "seeds = [0]")
            .replace("images = 40", "images = 20\nrtl_points = 3\nrtl_images = 2")
            + "[sweep]\nstuck_mtj = [0.05, 1.0]\nrng_bias_ua = [5.0]\n")


def test_rtl_sample_points_on_icarus(tmp_path, capsys, monkeypatch):
    """Three RTL points on one Icarus build: stuck_mtj 1.0 refused (its writes do not fit one
    write-list chunk), rng_bias_ua 5 and both kinds together bit-exact; then a reference that
    ignores the map makes the same point fail, and the exit status 1."""
    from spinbayes.sim.runner import simulator_available

    if not simulator_available("icarus"):
        pytest.skip("icarus not installed")
    spec = tmp_path / "faults.toml"
    spec.write_text(RTL_TINY)
    out = tmp_path / "out"
    assert main(["faults", str(spec), "--out", str(out), "--quiet", "--threads", "1",
                 "--simulator", "icarus"]) == 0
    text = capsys.readouterr().out
    assert "## RTL sample points" in text and "Failed: 0; refused: 1." in text
    rtl = json.loads((out / "faults.json").read_text())["rtl"]
    assert rtl["simulator"] == "icarus" and rtl["images"] == 2
    assert [(p["name"], p["status"]) for p in rtl["points"]] == [
        ("stuck_mtj", "refused"), ("rng_bias_ua", "pass"), ("all kinds", "pass")]
    refused, bias, both = rtl["points"]
    assert "must fit the harness's write list" in refused["reason"]
    assert refused["faults"] == {"stuck_mtj": 1.0} and refused["mismatches"] is None
    for p in (bias, both):
        assert p["mismatches"] == 0 and p["verify_reported"] == p["faulty_cells"]
    assert bias["faulty_cells"] == 0 < both["faulty_cells"]
    assert both["faults"] == {"stuck_mtj": 0.05, "rng_bias_ua": 5.0}
    assert rtl["build"]["runs"] == 2 and len(rtl["build"]["dirs"]) == 1
    assert rtl["build"]["reused"]
    md = (out / "faults.md").read_text()
    assert "| all kinds | stuck_mtj 0.05, rng_bias_ua 5 | 0 | pass | 0 |" in md
    assert "* stuck_mtj (refused): the program and the fault map's writes" in md

    import spinbayes.golden.faults as gf
    import spinbayes.sim.runner as runner

    spec.write_text(RTL_TINY.split("[sweep]")[0] + "[sweep]\nstuck_mtj = [0.05]\n")
    again = ["faults", str(spec), "--checkpoint", str(out / "checkpoint"), "--out",
             str(tmp_path / "bad"), "--quiet"]
    with monkeypatch.context() as m:
        m.setattr(gf, "faulted_network", lambda hw, fmap: hw)       # ignores the map
        assert main([*again, "--simulator", "icarus", "--rtl-points", "1"]) == 1
    assert "1 RTL sample point(s) failed" in capsys.readouterr().err
    (bad,) = json.loads((tmp_path / "bad" / "faults.json").read_text())["rtl"]["points"]
    assert bad["status"] == "fail" and bad["output_mismatches"] > 0
    assert bad["choice_mismatches"] == 0 and bad["verify_reported"] == bad["faulty_cells"] > 0
    assert "| stuck_mtj | stuck_mtj 0.05 | 0 | fail |" in (tmp_path / "bad" /
                                                            "faults.md").read_text()
    # no simulator installed: the sample is skipped with the reason, the campaign still runs
    monkeypatch.delenv("SPINBAYES_SIM", raising=False)
    monkeypatch.setattr(runner, "simulator_available", lambda sim: False)
    assert main(again) == 0
    rtl = json.loads((tmp_path / "bad" / "faults.json").read_text())["rtl"]
    assert rtl == {"skipped": "no simulator (neither verilator nor icarus is installed)"}
    assert "Not run: no simulator" in (tmp_path / "bad" / "faults.md").read_text()
    assert main([*again, "--rtl-images", "0"]) == 2
    assert "--rtl-images must be an integer >= 1, not 0" in capsys.readouterr().err


def test_rtl_alarm_passes_only_when_it_names_a_stuck_device():
    import numpy as np

    from spinbayes.fault_rtl import _alarm_row
    from spinbayes.firmware.alarms import HealthAlarm, RngHealthError

    stuck = np.zeros((2, 3), dtype=bool)
    stuck[1, 2] = True
    hit = _alarm_row(RngHealthError([HealthAlarm(1, 2, "rct", 1)], cycles=88, image=0), stuck)
    assert hit["status"] == "alarm" and hit["mismatches"] == 0 and hit["alarm_cycles"] == 88
    pair = _alarm_row(RngHealthError([HealthAlarm(1, (1, 2), "pair")]), stuck)
    assert pair["status"] == "alarm"
    miss = _alarm_row(RngHealthError([HealthAlarm(0, 2, "rct", 1)]), stuck)
    assert miss["status"] == "fail" and miss["mismatches"] == 1
    assert "names no stuck RNG device" in miss["why"]
    assert _alarm_row(RngHealthError([HealthAlarm(1, None, "stuck")]), stuck)["status"] == "fail"
