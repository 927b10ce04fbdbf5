"""spinbayes sim --reuse: refused with sharding, and carried into the design (the cache), the
firmware image (REUSE = 1) and run_images."""

from spinbayes import workflow_hw as wh
from spinbayes.cli import main
from spinbayes.rtl.regs import Reg


def test_reuse_is_refused_with_shards(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["sim", "--reuse", "--workers", "2", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "spinbayes sim: error: --reuse runs in one simulation" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_reuse_reaches_the_design_the_image_and_run_images(tiny_trained, tmp_path,
                                                           seen_run_images):
    trained, mapped = tiny_trained
    seen = seen_run_images
    res, params = wh.coverify(trained, mapped, images=1, simulator="icarus", progress=False,
                              firmware=tmp_path / "fw", reuse=True)
    assert res == "result" and seen["reuse"] is True
    assert (params.reuse_positions, params.reuse_outputs) == (1, mapped.hw(1).layers[0]
                                                              .codes.shape[1])
    regs = {w.sel: w.data for w in seen["program"].descriptor}
    assert regs[Reg.REUSE] == 1
    _, plain = wh.coverify(trained, mapped, images=1, simulator="icarus", progress=False,
                           firmware=tmp_path / "fw2")
    assert not plain.reuse and seen["reuse"] is False
    assert Reg.REUSE not in {w.sel for w in seen["program"].descriptor}
