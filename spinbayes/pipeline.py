"""The main job, ``spinbayes run``: train, map, golden evaluation, RTL co-verification,
synthesis, energy, memory overhead and the report, with a progress bar over the stages.

Each stage writes its own JSON file into the output directory; :func:`run_pipeline` gathers
what the report shows into ``report.json`` (with the file and key each figure was read from)
and :mod:`spinbayes.report` renders ``report.md`` and the figures from that dict alone.
A stage that cannot run here (no simulator, no synthesis tools, a failure) is recorded with
its reason and the report says so; it never gets placeholder numbers.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .jsonable import to_jsonable

__all__ = ["QUICK", "RunOptions", "apply_quick", "run_pipeline"]

#: ``--quick``: the Config fields it changes (unless given explicitly on the command line).
#: A 16-neuron hidden layer keeps the RTL small enough for Icarus (about 4 images in 50 s).
QUICK = {"epochs": 10, "ood_samples": 100, "recal_batches": 5, "hidden": (16,)}
#: Files of the output directory (besides eval.json / eval.md of ``spinbayes eval``).
COVERIFY_JSON = "coverify.json"
ENERGY_JSON = "energy.json"
MEMORY_JSON = "memory.json"
SYNTH_DIR = "synth"
REPORT_JSON = "report.json"
#: Table 5 is stated for T = 10 forward passes on MNIST with LeNet-5.
TABLE5_T = 10


@dataclass(frozen=True)
class RunOptions:
    """Options of ``spinbayes run`` that are not experiment parameters (not in Config)."""

    quick: bool = False
    images_sim: int | None = None      # K images through the RTL (default 200, quick 4)
    # None: Verilator, whose build (~2 min) is repaid at once (Icarus runs the busy 64-64-10
    # core at ~30 cycles/s, docs/ARCHITECTURE.md "RTL simulation speed", ~50 s per image);
    # with --quick Icarus, which needs no C++ build, on the 16-neuron quick network.
    simulator: str | None = None
    energy_table: str | None = None     # JSON / TOML energy table (golden.energy)
    rtl: bool = True
    synth: bool = True
    synth_targets: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.images_sim is not None and (not isinstance(self.images_sim, int)
                                            or self.images_sim < 1):
            raise ValueError(f"images_sim must be a positive integer, not {self.images_sim!r}")
        if self.simulator not in (None, "icarus", "verilator"):
            raise ValueError(f"simulator must be 'icarus' or 'verilator', "
                             f"not {self.simulator!r}")

    @property
    def k_images(self) -> int:
        return self.images_sim if self.images_sim is not None else (4 if self.quick else 200)

    @property
    def hdl_simulator(self) -> str:
        return self.simulator or ("icarus" if self.quick else "verilator")


def apply_quick(cfg: Config, explicit: set[str]) -> Config:
    """``cfg`` with the :data:`QUICK` values for every field not in ``explicit``."""
    return cfg.replace(**{k: v for k, v in QUICK.items() if k not in explicit})


def _json(path: Path, obj) -> None:
    from .golden.checkpoint import atomic_write

    atomic_write(path, json.dumps(obj, indent=2, allow_nan=True, default=to_jsonable))


class _Stages:
    """Runs named stages under one progress bar and records status and seconds of each."""

    def __init__(self, names: list[str], progress: bool):
        from tqdm.auto import tqdm

        self.status: dict[str, dict] = {}
        self.bar = tqdm(total=len(names), desc="spinbayes run", unit="stage",
                        disable=None if progress else True, position=0)

    def run(self, name: str, fn, *, optional: bool = False, skip: str | None = None):
        self.bar.set_postfix_str(name)
        t0 = time.perf_counter()
        if skip:
            self.status[name] = {"status": "skipped", "reason": skip, "seconds": 0.0}
            self.bar.update(1)
            return None
        try:
            value = fn()
        except Exception as e:
            if not optional:
                raise
            self.status[name] = {"status": "unavailable", "seconds": time.perf_counter() - t0,
                                 "reason": f"{type(e).__name__}: {e}".strip()[:2000],
                                 "traceback": traceback.format_exc(limit=4)[-3000:]}
            print(f"stage {name}: unavailable ({type(e).__name__}: {str(e)[:300]})")
            self.bar.update(1)
            return None
        self.status[name] = {"status": "ok", "seconds": time.perf_counter() - t0}
        self.bar.update(1)
        return value

    def close(self):
        self.bar.close()


def run_pipeline(cfg: Config, out, options: RunOptions = RunOptions(), *,
                 progress: bool = True) -> dict:
    """The whole flow into ``out``; returns the report dict (also ``out/report.json``)."""
    import torch

    from . import report as rep
    from .cli import EVAL_JSON, _eval, _train
    from .golden import energy as en
    from .golden.approximation import approximate
    from .golden.datasets import ood_sets
    from .golden.evaluate import build_spinbayes, spinbayes_entropies
    from .golden.hardware import fold_network

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    emodel = (en.load_energy_model(options.energy_table) if options.energy_table
              else en.EnergyModel())
    t_start = time.perf_counter()
    names = ["train", "golden evaluation", "map to RTL", "RTL co-verification", "synthesis",
             "energy", "memory overhead", "figures and report"]
    st = _Stages(names, progress)
    ctx: dict = {}
    files: dict[str, str] = {}
    try:
        model, data = st.run("train", lambda: _train(cfg, out, progress))

        def golden():
            _eval(model, data, cfg, out, progress)
            files["eval"] = EVAL_JSON
            ctx["eval"] = json.loads((out / EVAL_JSON).read_text())
            images = approximate(model, cfg.N, cfg.Q, seed=cfg.seed)
            ood = ood_sets(data, n=cfg.ood_samples, noisy_sigma=cfg.noisy_sigma,
                           seed=cfg.seed, data_dir=cfg.data_dir)
            ctx["images"] = images
            ctx["entropies"] = spinbayes_entropies(images, model, data, ood, cfg, cfg.n_way)
        st.run("golden evaluation", golden)

        def map_rtl():
            if cfg.topology != "mlp":
                raise ValueError(f"the RTL runs dense networks only; {cfg.topology} has "
                                 f"convolutions (no window-address generator yet)")
            net = build_spinbayes(ctx["images"], model, data.x_train, cfg.n_way,
                                  cfg.recal_batches, cfg.seed)
            ctx["net"], ctx["hw"] = net, fold_network(net, ctx["images"])
            from .sim.coverify import params_for

            ctx["params"] = params_for(ctx["hw"], cfg.T)
        st.run("map to RTL", map_rtl, optional=True)
        have_hw = "hw" in ctx

        def coverify():
            from .sim.coverify import run_images

            k = min(options.k_images, len(data.x_test))
            res = run_images(ctx["hw"], data.x_test[:k], params=ctx["params"], T=cfg.T,
                             seed=cfg.seed, simulator=options.hdl_simulator, progress=progress,
                             float_net=ctx["net"], labels=data.y_test[:k])
            summary = res.summary()
            summary["counters_per_image"] = {n: v.tolist() for n, v in res.counters.items()}
            summary["params"] = ctx["params"].describe()
            _json(out / COVERIFY_JSON, summary)
            files["coverify"] = COVERIFY_JSON
            ctx["coverify"] = summary
        st.run("RTL co-verification", coverify, optional=True,
               skip=None if options.rtl and have_hw else
               ("--no-rtl" if not options.rtl else "no integer network to simulate"))

        def synth():
            from .rtl.synth import QUICK_TOPS, synthesize

            # The main job must finish in about 10 minutes on 2 cores. It synthesizes the
            # small periphery blocks (generic + ECP5) and the whole periphery of this run's
            # design on the ECP5 (~4 min: yosys ~1 min, nextpnr with router2 ~3 min;
            # docs/SYNTHESIS.md); the behavioural crossbar and the averaging block alone are
            # measured by `spinbayes synth`. --quick: the small blocks, generic only.
            targets = options.synth_targets or (("generic",) if options.quick
                                                else ("generic", "ecp5"))
            r = synthesize(ctx["params"], out / SYNTH_DIR, targets=targets, tops=QUICK_TOPS,
                           fpga_tops=() if options.quick else ("periphery",),
                           quick=options.quick, progress=progress)
            files["synth"] = f"{SYNTH_DIR}/synth.json"
            ctx["synth"] = r
        st.run("synthesis", synth, optional=True,
               skip=None if options.synth and have_hw else
               ("--no-synth" if not options.synth else "no RTL parameters (map stage)"))

        def energy():
            ctx["energy"] = _energy(cfg, model, data, ctx, emodel, out)
            _json(out / ENERGY_JSON, ctx["energy"])
            files["energy"] = ENERGY_JSON
        st.run("energy", energy)

        def memory():
            from .golden.memory import memory_table, paper_models, rows_as_dicts

            rows = memory_table(paper_models(), N=cfg.N, Q=cfg.Q)
            ctx["memory_rows"] = rows
            ctx["memory"] = rows_as_dicts(rows)
            _json(out / MEMORY_JSON, ctx["memory"])
            files["memory"] = MEMORY_JSON
        st.run("memory overhead", memory, optional=True)

        def report():
            figures = rep.make_figures(out, ctx, cfg)
            doc = rep.build_report(cfg, options, ctx, files, figures, st.status,
                                   time.perf_counter() - t_start,
                                   versions={"torch": torch.__version__})
            ctx["report"] = doc
            rep.write_report(out, doc)
        st.run("figures and report", report)
    finally:
        st.close()
    print(f"wrote {out / REPORT_JSON} and {out / rep.REPORT_MD} "
          f"({time.perf_counter() - t_start:.0f} s)")
    return ctx["report"]


def _energy(cfg: Config, model, data, ctx: dict, emodel, out: Path) -> dict:
    """Measured (RTL counters) and analytic energy of the run's network, LeNet-5 analytic
    energy for Table 5 under both memory readings, and the scaling series."""
    from .golden import energy as en

    res: dict = {"model": emodel.to_dict()}
    R = ctx["hw"].R if "hw" in ctx else 4
    if "hw" in ctx:
        shapes = en.shapes_of_hw(ctx["hw"])
    else:
        shapes = en.layer_shapes(model, data.image_shape)
    counts = en.count_operations(shapes, N=cfg.N, n_way=cfg.n_way, T=cfg.T, R=R)
    res["network"] = {"shapes": [s.__dict__ for s in shapes], "T": cfg.T, "N": cfg.N,
                      "n_way": cfg.n_way, "R": R}
    res["analytic"] = en.energy_of_counts(counts, emodel)
    res["analytic"]["counts"] = [c.as_dict() for c in counts]
    cov = ctx.get("coverify")
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
