"""The ``spinbayes`` command line.

Subcommands: ``run`` (the main job), ``train``, ``reproduce``, ``eval``, ``compare``,
``sim`` (co-verification, :mod:`spinbayes.cli_sim`), ``firmware`` (:mod:`spinbayes.cli_firmware`),
``rtl export``, ``synth`` (:mod:`spinbayes.cli_synth`), ``sweep`` (:mod:`spinbayes.cli_sweep`),
``segment`` (:mod:`spinbayes.cli_segment`), ``faults`` (:mod:`spinbayes.cli_faults`) and
``plot``. Each subcommand's parser names its
handler with ``set_defaults(func=...)``; handlers parse nothing and compute nothing:
they call the workflow layer (:mod:`spinbayes.workflow`, :mod:`spinbayes.workflow_hw`,
:mod:`spinbayes.pipeline`). Every experiment flag is generated from
:class:`spinbayes.config.Config`; ``eval`` reads the training configuration from the
checkpoint's manifest and lets you change only what evaluation uses.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import fields
from pathlib import Path

from . import cli_faults, cli_firmware, cli_segment, cli_sim, cli_sweep, cli_synth
from .cli_args import (
    adaptive_settings,
    add_adaptive,
    add_checkpoint,
    add_common,
    add_health,
    add_simulator,
    config_changes,
)
from .config import Config, add_config_arguments, config_from_args, flag_of, recipe

__all__ = ["EVAL_FIELDS", "build_parser", "main"]

#: Config fields that only evaluation uses; ``eval`` may override them on a checkpoint.
EVAL_FIELDS = {"data_dir", "N", "Q", "T", "n_way", "recal_batches", "uncertainty_measure",
               "threshold_mode", "uncertainty_threshold", "ood_quantile", "ood_threshold",
               "noisy_sigma", "ood_samples", "ood_target_rejection", "ood_fashion"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinbayes",
        description="SpinBayes-RTL: Bayesian in-memory approximation on spintronic "
                    "compute-in-memory hardware (golden model, RTL, co-verification).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a Bayes-by-Backprop network and save a checkpoint",
                       description="Train a Bayes-by-Backprop network (Gaussian mean-field "
                       "posterior) on the chosen data set and write OUT/checkpoint "
                       "(model.safetensors + manifest.json, which records the seed, the torch "
                       "threads, the package versions and the data set's checksum).")
    add_common(p, "runs/digits")
    add_config_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("reproduce", help="retrain a checkpoint from its manifest and compare "
                       "the weights byte for byte",
                       description="Read CHECKPOINT's manifest (Config, torch threads), train "
                       "again into OUT/checkpoint and compare model.safetensors byte for byte; "
                       "print the settings (versions, data checksum, machine) that differ. "
                       "Exit 0 when identical, 1 when not.")
    p.add_argument("checkpoint", help="checkpoint directory (from train or run)")
    p.add_argument("--out", required=True, help="output directory of the new training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("eval", help="map a checkpoint onto N crossbars and evaluate it",
                       description="In-memory approximation of a checkpoint (N samples per "
                       "layer, eq. 3 quantization, BatchNorm re-calibration), then SpinBayes "
                       "inference (n = 1 and 2) against float BBB: error, R_cc, R_iu, UA and "
                       "OoD detection. Writes OUT/eval.md, OUT/eval.json and OUT/crossbars.")
    add_checkpoint(p, required=True)
    add_common(p, None)
    add_config_arguments(p, only=EVAL_FIELDS)
    add_adaptive(p)
    p.add_argument("--no-hardware-mode", action="store_true",
                   help="skip the integer hardware mode's check against the float model on "
                   "the test set (Tables 1 and 3 only; about half of an MNIST LeNet-5 "
                   "evaluation's time)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("run", help="the main job: train, map, evaluate, co-verify the RTL, "
                       "synthesise, energy and a report",
                       description="The main job (spinbayes/pipeline.py): train on the data "
                       "set (scikit-learn's bundled digits by default), map onto N crossbars "
                       "per layer, evaluate float BBB against SpinBayes, run K test images "
                       "through the Verilog core under cocotb, synthesise the periphery, "
                       "compute the energy (docs/ENERGY.md) and the memory overhead. Writes "
                       "OUT/report.md (with PNG figures), OUT/report.json and each stage's "
                       "files (checkpoint/, crossbars/, eval.json, coverify.json, synth/, "
                       "energy.json, memory.json).")
    add_common(p, "runs/digits")
    p.add_argument("--quick", action="store_true",
                   help="smoke version: 10 epochs, hidden 16, 100 images per OoD set, 5 re-cal. "
                   "batches (unless given), 4 RTL images (Icarus if installed), generic "
                   "synthesis of the small blocks")
    p.add_argument("--images-sim", type=int, default=None,
                   help="K: test images run through the RTL (default 200, LeNet-5 20; --quick "
                   "4, LeNet-5 2)")
    add_simulator(p, "verilator, whose C++ build is repaid over 200 images; icarus with "
                  "--quick for the MLP")
    p.add_argument("--energy-table", default=None,
                   help="JSON or TOML per-operation energy table (default: the paper's "
                   "Table 4; format in docs/ENERGY.md)")
    add_health(p)
    add_adaptive(p)
    p.add_argument("--no-rtl", action="store_true", help="skip the RTL co-verification")
    p.add_argument("--no-synth", action="store_true", help="skip synthesis")
    add_config_arguments(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("compare", help="SpinBayes against MC-Dropout, MC-DropConnect, BBB "
                       "and a Deep Ensemble, the n-way study and the memory overhead",
                       description="Train (or load with --checkpoint) the BBB network, then "
                       "train every baseline with the same budget and evaluate all methods on "
                       "the same test and OoD sets with the same T: Tables 1 and 3, the n-way "
                       "study of section 4.4 (n = 1, 2, 3) and the memory overhead of Fig. 7. "
                       "Writes OUT/compare.md, OUT/compare.json and OUT/memory.png.")
    add_checkpoint(p, required=False)
    add_common(p, "runs/compare")
    add_config_arguments(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("rtl", help="the Amaranth RTL: export Verilog",
                       description="Hardware generation. `spinbayes rtl export` writes one "
                       "Verilog file per top (every block and the whole core) with "
                       "emit_src=False, so the output is reproducible, plus params.json.")
    rtl_sub = p.add_subparsers(dest="rtl_command", required=True, metavar="ACTION")
    e = rtl_sub.add_parser("export", help="write Verilog for the design parameters",
                           description="Write OUT/<top>.v for every top and OUT/params.json. "
                           "--config is a JSON object of RtlParams fields (N, n_max, Q, R, "
                           "A_in, A, rows_max, outputs_max, layers_max, groups_total, T_max, "
                           "rng_bits, scale_bits, offset_bits, classes_max); missing fields "
                           "keep their defaults (the digits MLP 64-64-10, N=5).")
    e.add_argument("--config", help="JSON file of RtlParams fields (default: the defaults)")
    e.add_argument("--out", default="runs/rtl", help="output directory (default: runs/rtl)")
    e.add_argument("--top", action="append", help="export only this top (repeatable)")
    e.set_defaults(func=_cmd_rtl_export)

    p = sub.add_parser("plot", help="figures of the behavioural device models",
                       description="Write a figure as PNG. mtj: the SOT-MTJ switching "
                       "probability of eq. 5 against the SET current (the paper's Fig. 4), "
                       "with the 230 uA / p = 0.5 operating point.")
    p.add_argument("what", choices=["mtj"], help="which figure")
    p.add_argument("--out", default=None, help="PNG path (default: runs/<what>.png)")
    p.set_defaults(func=_cmd_plot)
    cli_firmware.add_parser(sub).set_defaults(func=cli_firmware.main)
    cli_synth.add_synth_parser(sub)
    cli_sim.add_parser(sub).set_defaults(func=cli_sim.main)
    cli_sweep.add_parser(sub)
    cli_segment.add_parser(sub).set_defaults(func=cli_segment.main)
    cli_faults.add_parser(sub, EVAL_FIELDS)
    return parser


def _progress(args) -> bool:
    from .workflow import set_threads

    set_threads(getattr(args, "threads", None))
    return not args.quiet


def _say_recipe(cfg: Config, args) -> None:
    """Print the defaults the (dataset, topology) recipe gave (the flags given win)."""
    given = config_changes(args)
    used = {k: v for k, v in recipe(cfg.dataset, cfg.topology).items() if k not in given}
    if used:
        print(f"defaults of the {cfg.dataset} {cfg.topology} recipe (docs/METRICS.md): "
              + ", ".join(f"{flag_of(k)} {v}" for k, v in used.items()))


def _cmd_train(args) -> int:
    from . import workflow as wf

    cfg = config_from_args(args)
    _say_recipe(cfg, args)
    wf.train(cfg, Path(args.out), progress=_progress(args))
    return 0


def _cmd_reproduce(args) -> int:
    from . import workflow as wf

    r = wf.reproduce(args.checkpoint, Path(args.out), progress=not args.quiet)
    print(f"weights sha256: recorded {r['sha256_recorded'][:16]}, now {r['sha256_now'][:16]}")
    for k, v in r["settings_differ"].items():
        print(f"setting {k} differs: recorded {v['recorded']}, now {v['now']}")
    print("IDENTICAL: the checkpoint reproduces byte for byte" if r["identical"] else
          "DIFFERENT: the weights do not reproduce")
    return 0 if r["identical"] else 1


def _cmd_eval(args) -> int:
    from . import workflow as wf

    changes = config_changes(args)
    cfg = Config.from_dict({**_manifest_config(args.checkpoint), **changes})  # bad flags: now
    adaptive = adaptive_settings(args.adaptive, args.t_min, args.confidence_threshold, cfg.T)
    progress = _progress(args)
    trained = wf.load(args.checkpoint, changes)
    mapped = wf.map_trained(trained)
    ood = wf.ood(trained)
    ev = wf.evaluate(trained, mapped, ood, Path(args.out), progress=progress,
                     hardware_mode=not args.no_hardware_mode)
    print()
    print(ev.text)
    print(f"wrote {Path(args.out) / wf.EVAL_MARKDOWN} and {Path(args.out) / wf.EVAL_JSON}")
    if adaptive[0] != "off":
        _eval_adaptive(trained, mapped, ood, Path(args.out), adaptive)
    return 0


def _eval_adaptive(trained, mapped, ood: dict, out: Path, adaptive) -> None:
    """The integer network under the adaptive rule on the test and OoD sets
    (golden.adaptive.adaptive_study): OUT/adaptive.md and OUT/adaptive.json."""
    import json

    from .golden.adaptive import AdaptiveT, adaptive_study, output_span, study_markdown
    from .golden.contract import atomic_write

    cfg, data = trained.cfg, trained.data
    hw = mapped.hw(cfg.n_way)
    rule, t_min, threshold = adaptive
    adapt = AdaptiveT(rule, t_min, threshold, output_span(hw) if rule == "exact" else 0)
    study = adaptive_study(hw, {"test": data.x_test, **ood}, data.y_test, cfg.T, adapt,
                           seed=cfg.seed + 1)
    text = study_markdown(study, adapt, cfg.T)
    print(text)
    atomic_write(out / "adaptive.md", text)
    atomic_write(out / "adaptive.json", json.dumps({"adaptive": vars(adapt) | {"T_max": cfg.T},
                                                    "sets": study}, indent=2))
    print(f"wrote {out / 'adaptive.md'} and {out / 'adaptive.json'}")


def _manifest_config(checkpoint) -> dict:
    from .golden.checkpoint import read_manifest

    return read_manifest(checkpoint)["config"]


def _cmd_run(args) -> int:
    from .pipeline import RunOptions, apply_quick, run_pipeline

    cfg = config_from_args(args)
    _say_recipe(cfg, args)
    if args.quick:
        cfg = apply_quick(cfg, set(config_changes(args)))
    opts = RunOptions(quick=args.quick, images_sim=args.images_sim, simulator=args.simulator,
                      energy_table=args.energy_table, rtl=not args.no_rtl,
                      synth=not args.no_synth, health_alpha_bits=args.health_alpha_bits,
                      adaptive=args.adaptive, t_min=args.t_min,
                      confidence_threshold=args.confidence_threshold)
    progress = _progress(args)
    print(f"SpinBayes main job: {cfg.dataset}, {cfg.topology}, N={cfg.N}, Q={cfg.Q}, "
          f"T={cfg.T}")
    run_pipeline(cfg, Path(args.out), opts, progress=progress)
    return 0


def _cmd_compare(args) -> int:
    from . import workflow as wf

    out = Path(args.out)
    if args.checkpoint:
        changes = config_changes(args)
        Config.from_dict({**_manifest_config(args.checkpoint), **changes})
        progress = _progress(args)
        trained = wf.load(args.checkpoint, changes)
    else:
        cfg = config_from_args(args)
        progress = _progress(args)
        trained = wf.train(cfg, out, progress=progress)
    r = wf.compare(trained, out, progress=progress)
    print()
    print(r["text"])
    print(f"wrote {out / wf.COMPARE_MARKDOWN}, {out / wf.COMPARE_JSON} and {r['figure']}")
    return 0


def _cmd_rtl_export(args) -> int:
    from .rtl.export import TOPS, export
    from .rtl.params import params_from_json

    params = params_from_json(args.config)
    tops = tuple(args.top) if args.top else TOPS
    bad = [t for t in tops if t not in TOPS]
    if bad:
        raise ValueError(f"unknown top(s) {bad}; choose from {list(TOPS)}")
    for path in export(params, args.out, tops):
        print(f"wrote {path}")
    return 0


def _cmd_plot(args) -> int:
    from .golden.mtj import DEFAULT, p_sw, plot_mtj

    path = Path(args.out or f"runs/{args.what}.png")
    plot_mtj(path)
    print(f"wrote {path}: p_sw(230 uA) = {float(p_sw(230e-6)):.4f}, "
          f"p_sw(300 uA) = {float(p_sw(300e-6)):.6f} (Delta = {DEFAULT.delta:g}, "
          f"tau0 = {DEFAULT.tau0 * 1e9:g} ns, Ic0 = {DEFAULT.ic0 * 1e6:.1f} uA)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the subcommand's handler; exit status 0, or 2 on a clear error
    (bad input, missing file or tool), printed as ``spinbayes CMD: error: ...``; handlers
    return 1 for a negative verdict (a mismatch, a checkpoint that does not reproduce)."""
    import signal

    from .signals import stop_children_on_sigterm
    from .sim.runner import SimulatorMissing

    args = build_parser().parse_args(argv)
    saved = signal.getsignal(signal.SIGTERM)
    stop_children_on_sigterm()       # SIGTERM ends the simulators too, not Python alone
    try:
        return args.func(args)
    except (ValueError, OSError, SimulatorMissing) as e:
        name = " ".join(filter(None, (args.command, getattr(args, "rtl_command", None),
                                      getattr(args, "firmware_command", None))))
        print(f"spinbayes {name}: error: {e}", file=sys.stderr)
        return 2
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, saved)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# Every evaluation field is a Config field (so that `run` offers it too).
assert {f.name for f in fields(Config)} >= EVAL_FIELDS
