"""The firmware image on the co-verification path: the workflow compiles the network, writes
the image to disk, loads it back with every check of ``spinbayes firmware check``, and the
loaded image is what programs the core (spinbayes/workflow_hw.py ``coverify(firmware=)``)."""

import numpy as np
import pytest

from spinbayes import workflow_hw as wh
from spinbayes.firmware.check import FirmwareImageError
from spinbayes.firmware.image import load_image
from spinbayes.sim.coverify import run_images
from spinbayes.sim.runner import simulator_available


def _need(sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")


def test_the_loaded_image_programs_the_core(tiny_trained, tmp_path):
    _need("icarus")
    trained, mapped = tiny_trained
    fw = tmp_path / "firmware"
    res, params = wh.coverify(trained, mapped, images=2, simulator="icarus", firmware=fw,
                              progress=False)
    assert res.passed and res.mismatches == 0 and res.vfy_checked > 0
    # every hidden layer's vector of every pass was traced and compared (64-8-10: 1 per pass)
    assert (res.act_beats == trained.cfg.T).all() and res.summary()["layer_vectors"] == 8
    program, manifest = load_image(fw, params)
    assert program.T == trained.cfg.T and manifest["meta"]["n_way"] == trained.cfg.n_way
    assert np.count_nonzero(program.cells) > 0


def test_an_image_corrupted_on_disk_stops_the_run_before_simulation(tiny_trained, tmp_path,
                                                                    monkeypatch):
    """The image is read back from disk: a byte changed after the write is caught by the
    loader, before any simulator starts."""
    import spinbayes.firmware.image as image

    trained, mapped = tiny_trained
    save = image.save_image

    def save_then_corrupt(program, params, out_dir, **kw):
        path = save(program, params, out_dir, **kw)
        f = path / "crossbar_0.hex"
        raw = bytearray(f.read_bytes())
        raw[0] = ord("7") if raw[0] != ord("7") else ord("1")
        f.write_bytes(bytes(raw))
        return path

    monkeypatch.setattr(image, "save_image", save_then_corrupt)
    started = []
    monkeypatch.setattr("spinbayes.sim.coverify.run_cocotb",
                        lambda *a, **k: started.append(1))
    with pytest.raises(FirmwareImageError, match="crossbar_0.hex"):
        wh.coverify(trained, mapped, images=1, simulator="icarus",
                    firmware=tmp_path / "fw", progress=False)
    assert not started


def test_run_images_refuses_a_program_of_another_network(tiny_trained):
    trained, mapped = tiny_trained
    cfg = trained.cfg
    hw = mapped.hw(cfg.n_way)
    params = wh.hw_params(mapped, cfg)
    from spinbayes.firmware.compiler import compile_network

    other = compile_network(hw, params, T=cfg.T, seed=cfg.seed + 1)
    with pytest.raises(ValueError, match="not the compilation of this network"):
        run_images(hw, trained.data.x_test[:1], params=params, T=cfg.T, seed=cfg.seed,
                   program=other, progress=False)


def test_the_image_carries_the_health_cutoffs_asked_for(tiny_trained, tmp_path):
    """--health-alpha-bits reaches the image that programs the core (no simulation)."""
    from spinbayes.cli_args import health_cutoffs
    from spinbayes.rtl.regs import Reg

    trained, mapped = tiny_trained
    cfg = trained.cfg
    hw, params = mapped.hw(cfg.n_way), wh.hw_params(mapped, cfg)
    for bits, rct in ((20, 21), (30, 31)):
        program = wh.firmware_image(trained, hw, params, tmp_path / str(bits),
                                    health=health_cutoffs(bits))
        assert [w.data for w in program.descriptor if w.sel == Reg.HEALTH_RCT_CUTOFF] == [rct]
