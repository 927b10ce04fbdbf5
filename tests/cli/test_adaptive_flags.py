"""--adaptive, --t-min, --confidence-threshold (spinbayes run / sim): refused before any work
when bad, and carried through the options into the firmware image and run_images."""

import pytest

from spinbayes import workflow_hw as wh
from spinbayes.cli import main
from spinbayes.cli_args import adaptive_settings
from spinbayes.config import Config
from spinbayes.golden.checkpoint import save_checkpoint
from spinbayes.golden.networks import build_model
from spinbayes.pipeline import RunOptions
from spinbayes.rtl.regs import AdaptRule, Reg


def _refused(argv, out, capsys, message):
    rc = main([*argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"spinbayes {argv[0]}: error: ") and message in err, err
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))


@pytest.mark.parametrize("argv, message", [
    (["sim", "--adaptive", "exact", "--t-min", "0"], "--t-min must be a positive integer, not 0"),
    (["sim", "--adaptive", "confidence", "--confidence-threshold", "1.5"],
     "--confidence-threshold must be a vote share in [0, 1], not 1.5"),
    (["sim", "--confidence-threshold", "nan"], "--confidence-threshold must be a vote share"),
    (["sim", "--T", "10", "--t-min", "11"], "--t-min must lie in 1..T=10, not 11"),
    (["sim", "--adaptive", "exact", "--workers", "2"], "--adaptive runs in one simulation"),
    (["run", "--quick", "--t-min", "0"], "--t-min must be a positive integer, not 0"),
    (["run", "--quick", "--T", "4", "--t-min", "5"], "--t-min must lie in 1..T=4, not 5"),
])
def test_bad_adaptive_flags_are_refused_before_any_work(tmp_path, capsys, argv, message):
    _refused(argv, tmp_path / "out", capsys, message)


def test_an_unknown_rule_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sim", "--adaptive", "sometimes", "--out", "x"])
    assert e.value.code == 2
    assert "--adaptive: invalid choice: 'sometimes'" in capsys.readouterr().err


def test_settings_and_run_options():
    assert adaptive_settings("confidence", 3, 0.9, 10) == ("confidence", 3, 231)
    assert adaptive_settings("off", 1, 0.0) == ("off", 1, 0)
    assert RunOptions(adaptive="exact", t_min=2).adaptive_settings(10) == ("exact", 2, 231)
    with pytest.raises(ValueError, match="--adaptive must be one of off, exact, confidence"):
        RunOptions(adaptive="never")


def test_the_rule_reaches_the_image_and_run_images(tiny_trained, tmp_path, seen_run_images):
    from spinbayes.golden.adaptive import output_span

    trained, mapped = tiny_trained
    seen = seen_run_images
    res, _ = wh.coverify(trained, mapped, images=1, simulator="icarus", progress=False,
                         firmware=tmp_path / "fw", adaptive=("exact", 2, 0))
    assert res == "result"
    adapt = seen["adaptive"]
    assert (adapt.rule, adapt.t_min, adapt.span) == ("exact", 2, output_span(seen["hw"]))
    regs = {w.sel: w.data for w in seen["program"].descriptor}
    assert regs[Reg.ADAPT_RULE] == AdaptRule.EXACT and regs[Reg.ADAPT_T_MIN] == 2
    assert regs[Reg.ADAPT_SPAN] == adapt.span


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = Config(hidden=(4,), epochs=1, T=6)
    model = build_model(cfg, (1, 8, 8), 10)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "checkpoint", model, cfg,
                           image_shape=(1, 8, 8), num_classes=10)


def test_sim_flags_flow_to_the_coverification(checkpoint, tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_coverify(trained, mapped, **kw):
        seen.update(kw)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(wh, "coverify", fake_coverify)
    rc = main(["sim", "--checkpoint", str(checkpoint), "--adaptive", "confidence",
               "--t-min", "3", "--confidence-threshold", "0.5", "--out", str(tmp_path / "o"),
               "--quiet"])
    assert rc == 2 and "stopped by the test" in capsys.readouterr().err
    assert seen["adaptive"] == ("confidence", 3, 128)
    rc = main(["sim", "--checkpoint", str(checkpoint), "--t-min", "7", "--out",
               str(tmp_path / "p"), "--quiet"])
    assert rc == 2 and "--t-min must lie in 1..T=6, not 7" in capsys.readouterr().err


def test_eval_refuses_bad_adaptive_flags_before_writing(checkpoint, tmp_path, capsys):
    _refused(["eval", "--checkpoint", str(checkpoint), "--adaptive", "exact", "--t-min", "9"],
             tmp_path / "out", capsys, "--t-min must lie in 1..T=6, not 9")
