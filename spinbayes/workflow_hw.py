"""The workflow's hardware stages: design parameters, co-verification, synthesis, energy.

Plain functions on the objects of :mod:`spinbayes.workflow` (a ``Trained`` model and its
``MappedModel``); the CLI and the main job call them and nothing below them.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .golden.contract import ROWS_PER_READ

__all__ = ["FIRMWARE_DIR", "TABLE5_T", "choose_simulator", "coverify", "energy", "firmware_image",
           "hw_params", "synthesize"]

#: The run's firmware image directory (under OUT/), which programs the core in
#: co-verification.
FIRMWARE_DIR = "firmware"

#: Table 5 is stated for T = 10 forward passes on MNIST with LeNet-5.
TABLE5_T = 10


def hw_params(mapped, cfg: Config, reuse: bool = False):
    """The smallest design (RtlParams) that runs the integer network of ``cfg.n_way`` (with
    ``reuse``: and the first-layer reuse cache, rtl/reuse.py)."""
    from .sim.coverify import params_for

    if cfg.activation != "comparator":
        raise ValueError(f"activation {cfg.activation!r}: the RTL implements comparator "
                         f"activations only (train with --activation comparator)")
    return params_for(mapped.hw(cfg.n_way), cfg.T, reuse=reuse)


def choose_simulator(requested: str | None, *, prefer: str = "icarus") -> tuple[str, str]:
    """(simulator, why): ``requested`` if given, else $SPINBAYES_SIM, else ``prefer`` when it
    is installed, else the other one. Raises SimulatorMissing when neither is installed."""
    import os

    from .sim.runner import SIM_ENV, SIMULATORS, SimulatorMissing, simulator_available

    if requested is not None:
        if requested not in SIMULATORS:
            raise ValueError(f"simulator must be one of {SIMULATORS}, not {requested!r}")
        return requested, "asked for"
    env = os.environ.get(SIM_ENV)
    if env:
        if env not in SIMULATORS:
            raise ValueError(f"{SIM_ENV} must be one of {SIMULATORS}, not {env!r}")
        return env, f"${SIM_ENV}"
    other = next(s for s in SIMULATORS if s != prefer)
    if simulator_available(prefer):
        return prefer, "default"
    if simulator_available(other):
        return other, f"{prefer} is not installed"
    raise SimulatorMissing(f"neither {prefer} nor {other} is installed")


def coverify(trained, mapped, *, images: int, simulator: str,
             stall: float = 0.0, waves: bool = False, driver_images: int = 0,
             progress: bool = True, start: int = 0, firmware: Path | None = None,
             trace_layers: bool = True, health=None, adaptive=("off", 1, 0),
             reuse: bool = False):
    """Run ``images`` test images from image ``start`` (default: the first ones) through
    the RTL under cocotb on the RTL's own arbiter draws, the arbiters standing where a run
    from image 0 has them (one shard of a run: spinbayes/shard.py), and check every output,
    and with ``trace_layers`` every hidden layer's activations, against the integer
    reference; returns (CoverifyResult, RtlParams).

    ``firmware``: a directory for the firmware image: the network is compiled, written
    there (firmware/image.py), loaded back from disk with every check of ``firmware
    check``, and that loaded image is what programs the core (verified by read-back).
    None: the compiled program is played directly. ``health``: the RNG health tests'
    cutoffs (golden.health.Cutoffs; None: the default, α = 2^-20). ``adaptive``: (rule,
    T_min, threshold register) of the core's early stop (cli_args.adaptive_settings; the
    exact rule's span is the network's, golden.adaptive.output_span). ``reuse``: first-layer
    reuse on (the design with the cache; reads and accumulations checked against the
    analytic count)."""
    from .sim.coverify import run_images

    cfg, data = trained.cfg, trained.data
    if not isinstance(images, int) or images < 1:
        raise ValueError(f"images must be a positive integer, not {images!r}")
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, not {start!r}")
    if start + images > len(data.x_test):
        raise ValueError(f"images {start}..{start + images - 1} asked for: the test set has "
                         f"{len(data.x_test)}")
    from .golden.adaptive import AdaptiveT, output_span

    params = hw_params(mapped, cfg, reuse)
    hw = mapped.hw(cfg.n_way)
    rule, t_min, threshold = adaptive
    adapt = AdaptiveT(rule, t_min, threshold, output_span(hw) if rule == "exact" else 0)
    program = None if firmware is None else firmware_image(trained, hw, params, firmware,
                                                            health=health, adaptive=adapt,
                                                            reuse=reuse)
    sl = slice(start, start + images)
    res = run_images(hw, data.x_test[sl], params=params, T=cfg.T,
                     seed=cfg.seed, simulator=simulator, waves=waves, stall=stall,
                     progress=progress, float_net=mapped.net(cfg.n_way),
                     labels=data.y_test[sl].numpy(), driver_images=driver_images,
                     first_image=start, trace_layers=trace_layers, program=program,
                     health=health, adaptive=adapt, reuse=reuse)
    return res, params


def firmware_image(trained, hw, params, directory: Path, *, health=None, adaptive=None,
                   reuse: bool = False):
    """Compile ``hw`` for the design ``params`` (the run's T and seed), write the firmware
    image to ``directory`` (atomically) and load it back with every check of ``spinbayes
    firmware check``; returns the loaded Program, which is what the caller then plays.
    ``adaptive``: the early-stop rule (golden.adaptive.AdaptiveT; None: off); ``reuse``:
    first-layer reuse on."""
    from .firmware.compiler import compile_network
    from .firmware.image import load_image, save_image

    cfg = trained.cfg
    program = compile_network(hw, params, T=cfg.T, seed=cfg.seed, health=health,
                              adaptive=adaptive, reuse=reuse)
    meta = {"config": cfg.to_dict(), "n_way": hw.n_way, "input_bits": hw.input_bits,
            "rng_seed": cfg.seed, "provenance": trained.provenance}
    save_image(program, params, Path(directory), meta=meta)
    loaded, _ = load_image(Path(directory), params)
    return loaded


def synthesize(params, out: Path, *, quick: bool = False, targets=None,
               progress: bool = True) -> dict:
    """Synthesis of the main job: the small periphery blocks (generic + ECP5) and the whole
    periphery of this design placed and routed on the smallest ECP5 it fits (the flow skips
    a device with fewer LUT4s than the design and says so). The digits MLP's periphery
    takes the LFE5U-25F (about 8 min: yosys about 1 min, nextpnr with router2 6.5 min),
    LeNet-5's the LFE5U-85F (about 25 min: yosys 5, nextpnr 19.5) on the shared 2 cores
    (docs/SYNTHESIS.md). ``quick``: the small blocks, generic only. The crossbar and the
    averaging block alone: ``spinbayes synth``."""
    from .rtl.synth import QUICK_TOPS
    from .rtl.synth import synthesize as run_synthesis

    targets = targets or (("generic",) if quick else ("generic", "ecp5"))
    return run_synthesis(params, Path(out), targets=targets, tops=QUICK_TOPS,
                         fpga_tops=() if quick else ("periphery",), quick=quick,
                         progress=progress)


def energy(cfg: Config, model, image_shape, *, hw=None, coverify_summary: dict | None = None,
           emodel=None) -> dict:
    """Analytic energy of the run's network (``hw``: its integer network, else the shapes of
    ``model``), measured energy from the RTL's counters when ``coverify_summary`` is given
    (checked counter for counter against the analytic count on the same arbiter draws),
    LeNet-5's analytic energy for Table 5 under both memory readings, and the scaling
    series. ``emodel``: the per-operation energy model (default: the paper's Table 4)."""
    from .golden import energy as en

    emodel = emodel if emodel is not None else en.EnergyModel()
    res: dict = {"model": emodel.to_dict()}
    R = hw.R if hw is not None else ROWS_PER_READ
    shapes = (en.shapes_of_hw(hw, image_shape) if hw is not None
              else en.layer_shapes(model, image_shape))
    counts = en.count_operations(shapes, N=cfg.N, n_way=cfg.n_way, T=cfg.T, R=R)
    res["network"] = {"shapes": [s.__dict__ for s in shapes], "T": cfg.T, "N": cfg.N,
                      "n_way": cfg.n_way, "R": R}
    res["analytic"] = en.energy_of_counts(counts, emodel)
    res["analytic"]["counts"] = [c.as_dict() for c in counts]
    cov = coverify_summary
    if cov is not None:
        k = int(cov["images"])
        draws = en.arbiter_draws(len(shapes), k, cfg.T, cfg.N, cfg.n_way, seed=cfg.seed)
        exact = en.count_operations(shapes, N=cfg.N, n_way=cfg.n_way, T=cfg.T, R=R,
                                    draws=draws.sum(1) / k)
        tot = en.totals(exact)
        check = {name: {"rtl_total": int(cov["counter_totals"][name]),
                        "analytic_total": _int_if_whole(tot[name] * k)}
                 for name in en.COUNTER_OF.values()}
        for v in check.values():
            v["equal"] = v["rtl_total"] == v["analytic_total"]
        meas = en.energy_of_counters(cov["counter_totals"], k, emodel, counts=exact)
        meas["counter_check"] = check
        meas["all_counters_equal"] = all(v["equal"] for v in check.values())
        res["measured"] = meas
    lenet = en.lenet5_shapes(cfg.input_bits, cfg.act_bits)
    lc = en.count_operations(lenet, N=cfg.N, n_way=1, T=TABLE5_T, R=R)
    res["lenet5"] = {"shapes": [s.__dict__ for s in lenet], "T": TABLE5_T, "N": cfg.N,
                     "n_way": 1, "R": R, "counts": [c.as_dict() for c in lc],
                     "readings": {}}
    for label, per in (("memory per read", {}), ("memory per MVM", {"memory": "mvm"})):
        e = en.energy_of_counts(lc, emodel.with_reading(**per))
        res["lenet5"]["readings"][label] = e
    k_bits = (cfg.N - 1).bit_length()
    res["table5"] = en.table5_rows(
        {f"LeNet-5, {lab}": v["total_uj"] for lab, v in res["lenet5"]["readings"].items()},
        f"{k_bits} per layer x {len(lenet)} layers = {k_bits * len(lenet)}")
    if "measured" in res and cfg.topology == "lenet5":
        m = res["measured"]
        res["table5"].append({
            "method": f"LeNet-5, measured (n = {cfg.n_way}, T = {cfg.T}, {m['images']} images "
                      f"of {cfg.dataset})",
            "implementation": "RTL activity counters x Table 4 energies (memory per read)",
            "rngs": res["table5"][-1]["rngs"], "uj_per_image": m["total_uj"],
            "network": "LeNet-5", "source": "measured"})
    res["scaling"] = {
        "run network": en.scaling_series(
            lambda b: _with_input_bits(shapes, b), N=cfg.N, n_way=cfg.n_way, T=cfg.T, R=R,
            input_bits=shapes[0].in_bits, model=emodel),
        "LeNet-5 (MNIST)": en.scaling_series(
            lambda b: en.lenet5_shapes(b, cfg.act_bits), N=cfg.N, n_way=1, T=TABLE5_T, R=R,
            input_bits=cfg.input_bits, model=emodel),
    }
    res["scaling_defaults"] = {"T": cfg.T, "N": cfg.N, "input_bits": cfg.input_bits}
    return res


def _int_if_whole(v: float):
    r = round(v, 6)
    return int(r) if r == int(r) else r


def _with_input_bits(shapes, bits: int):
    from dataclasses import replace

    return [replace(s, in_bits=bits) if i == 0 else s for i, s in enumerate(shapes)]
