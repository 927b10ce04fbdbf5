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
PARETO_JSON = "pareto.json"
#: (test images, images per OoD set) of the energy/accuracy study per topology (None: all);
#: LeNet-5's at these counts took 52 s on one thread (docs/ENERGY.md), the digits MLP's 2 s.
PARETO_IMAGES = {"mlp": (None, None), "lenet5": (500, 125)}
SYNTH_DIR = "synth"
REPORT_JSON = "report.json"


#: Test images the main job runs through the RTL by default, per topology: LeNet-5 co-verifies
#: at about 10 images a minute on Verilator (docs/COVERIFICATION.md), the MLP at thousands.
K_DEFAULT = {"mlp": 200, "lenet5": 20}


@dataclass(frozen=True)
class RunOptions:
    """Options of ``spinbayes run`` that are not experiment parameters (not in Config)."""

    quick: bool = False
    images_sim: int | None = None      # K images through the RTL (k_images)
    # None: prefer_simulator (Verilator, or Icarus for the quick MLP); either falls back to
    # the other when it is not installed.
    simulator: str | None = None
    energy_table: str | None = None     # JSON / TOML energy table (golden.energy)
    rtl: bool = True
    synth: bool = True
    synth_targets: tuple[str, ...] | None = None
    health_alpha_bits: int = 20         # RNG health tests at alpha = 2^-B (cli_args.add_health)
    adaptive: str = "off"               # adaptive T in the co-verification (cli_args.add_adaptive)
    t_min: int = 1
    confidence_threshold: float = 0.9

    def __post_init__(self):
        if self.images_sim is not None and (not isinstance(self.images_sim, int)
                                            or self.images_sim < 1):
            raise ValueError(f"images_sim must be a positive integer, not {self.images_sim!r}")
        from .cli_args import adaptive_settings, health_cutoffs

        health_cutoffs(self.health_alpha_bits)          # a ValueError naming the flag
        adaptive_settings(self.adaptive, self.t_min, self.confidence_threshold)
        if self.simulator not in (None, "icarus", "verilator"):
            raise ValueError(f"simulator must be 'icarus' or 'verilator', "
                             f"not {self.simulator!r}")

    def adaptive_settings(self, T: int) -> tuple[str, int, int]:
        """(rule, T_min, threshold register) for T passes (cli_args.adaptive_settings)."""
        from .cli_args import adaptive_settings

        return adaptive_settings(self.adaptive, self.t_min, self.confidence_threshold, T)

    def k_images(self, topology: str = "mlp") -> int:
        """K: ``images_sim`` if given, else 4 with ``quick``, else :data:`K_DEFAULT` of the
        topology (LeNet-5 costs about 300,000 cycles an image on the core, the MLP 1,200)."""
        if self.images_sim is not None:
            return self.images_sim
        return (2 if topology == "lenet5" else 4) if self.quick else K_DEFAULT[topology]

    def prefer_simulator(self, topology: str = "mlp") -> str:
        """Verilator for the full job and for LeNet-5 (whose programming alone is about
        1,000,000 cycles: minutes on Icarus); Icarus for the quick MLP (no C++ build)."""
        return "icarus" if self.quick and topology == "mlp" else "verilator"


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
    """The whole flow into ``out``; returns the report dict (also ``out/report.json``).
    Every stage is one call of the workflow layer (:mod:`spinbayes.workflow`,
    :mod:`spinbayes.workflow_hw`) on the objects the earlier stages returned."""
    from . import report as rep
    from . import workflow as wf
    from . import workflow_hw as wh
    from .golden import energy as en
    from .golden.evaluate import spinbayes_entropies

    options.adaptive_settings(cfg.T)          # --t-min beyond T: refused before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    emodel = (en.load_energy_model(options.energy_table) if options.energy_table
              else en.EnergyModel())
    t_start = time.perf_counter()
    names = ["train", "golden evaluation", "map to RTL", "RTL co-verification", "synthesis",
             "energy", "energy vs accuracy", "memory overhead", "figures and report"]
    st = _Stages(names, progress)
    ctx: dict = {}
    files: dict[str, str] = {}
    try:
        trained = st.run("train", lambda: wf.train(cfg, out, progress=progress))
        mapped = wf.map_trained(trained)

        def golden():
            sets = wf.ood(trained)
            ev = wf.evaluate(trained, mapped, sets, out, progress=progress)
            print()
            print(ev.text)
            files["eval"] = wf.EVAL_JSON
            ctx["eval"] = json.loads(json.dumps(ev.report, allow_nan=True))
            ctx["images"] = mapped.images
            ctx["ood_sets"] = sets
            ctx["entropies"] = spinbayes_entropies(mapped, trained.data, sets, cfg,
                                                   cfg.n_way)
        st.run("golden evaluation", golden)

        def map_rtl():
            ctx["params"] = wh.hw_params(mapped, cfg)
            ctx["hw"] = mapped.hw(cfg.n_way)
        st.run("map to RTL", map_rtl, optional=True)
        have_hw = "hw" in ctx

        def coverify():
            k = min(options.k_images(cfg.topology), len(trained.data.x_test))
            from .cli_args import health_cutoffs

            sim, why = wh.choose_simulator(options.simulator,
                                           prefer=options.prefer_simulator(cfg.topology))
            print(f"RTL co-verification: {k} images on {sim} ({why})")
            res, params = wh.coverify(trained, mapped, images=k, simulator=sim,
                                      progress=progress, firmware=out / wh.FIRMWARE_DIR,
                                      health=health_cutoffs(options.health_alpha_bits),
                                      adaptive=options.adaptive_settings(cfg.T))
            summary = res.summary()
            summary["firmware"] = wh.FIRMWARE_DIR
            summary["counters_per_image"] = {n: v.tolist() for n, v in res.counters.items()}
            summary["params"] = params.describe()
            summary["simulator_choice"] = why
            _json(out / COVERIFY_JSON, summary)
            files["coverify"] = COVERIFY_JSON
            ctx["coverify"] = summary
        st.run("RTL co-verification", coverify, optional=True,
               skip=None if options.rtl and have_hw else
               ("--no-rtl" if not options.rtl else "no integer network to simulate"))

        def synth():
            ctx["synth"] = wh.synthesize(ctx["params"], out / SYNTH_DIR, quick=options.quick,
                                         targets=options.synth_targets, progress=progress)
            files["synth"] = f"{SYNTH_DIR}/synth.json"
        st.run("synthesis", synth, optional=True,
               skip=None if options.synth and have_hw else
               ("--no-synth" if not options.synth else "no RTL parameters (map stage)"))

        def energy():
            ctx["energy"] = wh.energy(cfg, trained.model, trained.data.image_shape,
                                      hw=ctx.get("hw"), coverify_summary=ctx.get("coverify"),
                                      emodel=emodel)
            _json(out / ENERGY_JSON, ctx["energy"])
            files["energy"] = ENERGY_JSON
        st.run("energy", energy)

        def pareto():
            from .golden import energy_pareto as ep
            from .golden.adaptive import AdaptiveT, output_span

            sets, y, sizes = ep.subsample(trained.data, ctx["ood_sets"],
                                          *PARETO_IMAGES[cfg.topology])
            rule, t_min, threshold = options.adaptive_settings(cfg.T)
            own = AdaptiveT(rule, t_min, threshold,
                            output_span(ctx["hw"]) if rule == "exact" else 0)
            ctx["pareto"] = ep.pareto_study(ctx["hw"], sets, y, cfg, T_max=cfg.T,
                                            seed=cfg.seed + 1, model=emodel, sizes=sizes,
                                            image_shape=trained.data.image_shape,
                                            run_rule=own)
            _json(out / PARETO_JSON, ctx["pareto"])
            files["pareto"] = PARETO_JSON
        st.run("energy vs accuracy", pareto, optional=True,
               skip=None if have_hw and "ood_sets" in ctx else "no integer network or OoD sets")

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
                                   versions=trained.provenance["versions"])
            doc["provenance"] = trained.provenance
            ctx["report"] = doc
            rep.write_report(out, doc)
        st.run("figures and report", report)
    finally:
        st.close()
    print(f"wrote {out / REPORT_JSON} and {out / rep.REPORT_MD} "
          f"({time.perf_counter() - t_start:.0f} s)")
    return ctx["report"]

