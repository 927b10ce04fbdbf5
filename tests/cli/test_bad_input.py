"""Bad flags end the command with exit status 2 and a message naming the flag, before
anything is written under --out (the command line builds and checks its Config first)."""

import pytest

from spinbayes.cli import main
from spinbayes.config import Config
from spinbayes.golden.checkpoint import save_checkpoint
from spinbayes.golden.networks import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained 64-4-10 checkpoint: eval must refuse its flags before using it."""
    cfg = Config(hidden=(4,), epochs=1)
    model = build_model(cfg, (1, 8, 8), 10)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "checkpoint", model, cfg,
                           image_shape=(1, 8, 8), num_classes=10)


def _refused(argv, out, capsys, *flags):
    rc = main([*argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"spinbayes {argv[0]}: error: "), err
    for flag in flags:
        assert flag in err, err
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    return err


@pytest.mark.parametrize("flags, named, value", [
    (["--lr", "inf"], "lr (--lr) must be a finite number in (0, 1]", "inf"),
    (["--kl-weight", "nan"], "kl_weight (--kl-weight) must be a finite number", "nan"),
    (["--rho-init", "nan"], "rho_init (--rho-init) must be a finite number", "nan"),
    (["--prior-sigma", "inf"], "prior_sigma (--prior-sigma) must be a finite number", "inf"),
    (["--Q", "9"], "Q (--Q) must be an integer in 2..8", "9"),
    (["--kl-weight", "-5"], "kl_weight (--kl-weight) must be a finite number in [0, 1000]",
     "-5.0"),
    (["--act-bits", "20"], "act_bits (--act-bits) must be an integer in 1..8", "20"),
])
def test_train_refuses_bad_flags_before_writing(tmp_path, capsys, flags, named, value):
    err = _refused(["train", *flags], tmp_path / "out", capsys, named)
    assert err.rstrip().endswith(f"not {value}"), err


@pytest.mark.parametrize("flags, named", [
    (["--noisy-sigma", "-1"], "noisy_sigma (--noisy-sigma) must be a finite positive number"),
    (["--Q", "9"], "Q (--Q) must be an integer in 2..8"),
    (["--n-way", "6"], "n_way (--n-way) must be an integer in 1..N=5, not 6"),
])
def test_eval_refuses_bad_flags_before_writing(tmp_path, capsys, checkpoint, flags, named):
    _refused(["eval", "--checkpoint", str(checkpoint), *flags], tmp_path / "out", capsys,
             named)


@pytest.mark.parametrize("argv, named", [
    (["run", "--quick", "--act-bits", "20"], "act_bits (--act-bits)"),
    (["compare", "--lr", "inf"], "lr (--lr)"),
    (["sim", "--stall", "1.5"], "--stall"),
])
def test_other_commands_refuse_bad_flags_before_writing(tmp_path, capsys, argv, named):
    _refused(argv, tmp_path / "out", capsys, named)
