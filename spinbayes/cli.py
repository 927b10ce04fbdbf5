"""The ``spinbayes`` command line: train, eval and run (the main job).

Every experiment flag is generated from :class:`spinbayes.config.Config`; a subcommand only
shows the flags it uses. ``eval`` reads the training configuration from the checkpoint's
manifest and lets you change only what evaluation uses (N, Q, T, thresholds, ...).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from .config import Config, add_config_arguments, config_from_args

__all__ = ["build_parser", "main"]

#: Config fields that only evaluation uses; ``eval`` may override them on a checkpoint.
EVAL_FIELDS = {"data_dir", "N", "Q", "T", "n_way", "recal_batches", "uncertainty_measure",
               "threshold_mode", "uncertainty_threshold", "ood_quantile", "ood_threshold",
               "noisy_sigma", "ood_samples"}
#: The evaluation report files, written by ``eval`` and ``run`` into ``--out``.
EVAL_MARKDOWN = "eval.md"
EVAL_JSON = "eval.json"
#: The comparison report, written by ``compare`` into ``--out``.
COMPARE_MARKDOWN = "compare.md"
COMPARE_JSON = "compare.json"
COMPARE_MEMORY_PNG = "memory.png"
#: Sub-directories of ``--out``.
CHECKPOINT_DIR = "checkpoint"
CROSSBAR_DIR = "crossbars"


def _common(p: argparse.ArgumentParser, out_default: str | None) -> None:
    p.add_argument("--out", default=out_default, required=out_default is None,
                   help="output directory" + (f" (default: {out_default})"
                                              if out_default else ""))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinbayes",
        description="SpinBayes-RTL: Bayesian in-memory approximation on spintronic "
                    "compute-in-memory hardware (golden model, RTL, co-verification).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a Bayes-by-Backprop network and save a checkpoint",
                       description="Train a Bayes-by-Backprop network (Gaussian mean-field "
                       "posterior) on the chosen data set and write OUT/checkpoint "
                       "(model.safetensors + manifest.json).")
    _common(p, "runs/digits")
    add_config_arguments(p)

    p = sub.add_parser("eval", help="map a checkpoint onto N crossbars and evaluate it",
                       description="In-memory approximation of a checkpoint (N samples per "
                       "layer, eq. 3 quantization, BatchNorm re-calibration), then SpinBayes "
                       "inference (n = 1 and 2) against float BBB: error, R_cc, R_iu, UA and "
                       "OoD detection. Writes OUT/eval.md, OUT/eval.json and OUT/crossbars.")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (from train)")
    _common(p, None)
    add_config_arguments(p, only=EVAL_FIELDS)

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
    _common(p, "runs/digits")
    p.add_argument("--quick", action="store_true",
                   help="smoke version: 10 epochs, hidden 16, 100 images per OoD set, 5 re-cal. "
                   "batches (unless given), 4 RTL images on Icarus, generic synthesis of the "
                   "small blocks")
    p.add_argument("--images-sim", type=int, default=None,
                   help="K: test images run through the RTL (default 200; --quick 4)")
    p.add_argument("--simulator", choices=["icarus", "verilator"], default=None,
                   help="HDL simulator of the co-verification (default: verilator; icarus "
                   "with --quick; Icarus runs the busy 64-64-10 core at ~30 cycles/s)")
    p.add_argument("--energy-table", default=None,
                   help="JSON or TOML per-operation energy table (default: the paper's "
                   "Table 4; format in docs/ENERGY.md)")
    p.add_argument("--no-rtl", action="store_true", help="skip the RTL co-verification")
    p.add_argument("--no-synth", action="store_true", help="skip synthesis")
    add_config_arguments(p)

    p = sub.add_parser("compare", help="SpinBayes against MC-Dropout, MC-DropConnect, BBB "
                       "and a Deep Ensemble, the n-way study and the memory overhead",
                       description="Train (or load with --checkpoint) the BBB network, then "
                       "train every baseline with the same budget and evaluate all methods on "
                       "the same test and OoD sets with the same T: Tables 1 and 3, the n-way "
                       "study of section 4.4 (n = 1, 2, 3) and the memory overhead of Fig. 7. "
                       "Writes OUT/compare.md, OUT/compare.json and OUT/memory.png.")
    p.add_argument("--checkpoint", help="reuse a trained BBB checkpoint instead of training")
    _common(p, "runs/compare")
    add_config_arguments(p)

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

    p = sub.add_parser("plot", help="figures of the behavioural device models",
                       description="Write a figure as PNG. mtj: the SOT-MTJ switching "
                       "probability of eq. 5 against the SET current (the paper's Fig. 4), "
                       "with the 230 uA / p = 0.5 operating point.")
    p.add_argument("what", choices=["mtj"], help="which figure")
    p.add_argument("--out", default=None, help="PNG path (default: runs/<what>.png)")
    from . import cli_firmware
    cli_firmware.add_parser(sub)
    from . import cli_synth
    cli_synth.add_synth_parser(sub)
    from . import cli_sim
    cli_sim.add_parser(sub)
    return parser


def _setup(args) -> bool:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return not args.quiet


def _train(cfg: Config, out: Path, progress: bool):
    from .golden.checkpoint import save_checkpoint
    from .golden.datasets import load_dataset
    from .golden.networks import build_model
    from .golden.train import train_bbb

    data = load_dataset(cfg)
    print(f"data: {data.name}, {len(data.x_train)} train / {len(data.x_test)} test images "
          f"of shape {data.image_shape}")
    model = build_model(cfg, data.image_shape, data.num_classes)
    t0 = time.perf_counter()
    history = train_bbb(model, data.x_train, data.y_train, cfg, progress=progress)
    print(f"trained {cfg.epochs} epochs in {time.perf_counter() - t0:.1f} s, final train "
          f"accuracy {history[-1]['train_acc']:.2f} %")
    ckpt = save_checkpoint(out / CHECKPOINT_DIR, model, cfg, image_shape=data.image_shape,
                           num_classes=data.num_classes, history=history)
    print(f"checkpoint: {ckpt}")
    return model, data


def _eval(model, data, cfg: Config, out: Path, progress: bool) -> None:
    import torch

    from .golden.approximation import approximate
    from .golden.checkpoint import atomic_write, save_crossbar_images
    from .golden.datasets import ood_sets
    from .golden.evaluate import evaluate, evaluate_hardware, hardware_markdown, tables_markdown

    images = approximate(model, cfg.N, cfg.Q, seed=cfg.seed)
    xdir = save_crossbar_images(out / CROSSBAR_DIR, images)
    print(f"crossbar images: {len(images)} layers x N={cfg.N} crossbars, Q={cfg.Q} -> {xdir}")
    ood = ood_sets(data, n=cfg.ood_samples, noisy_sigma=cfg.noisy_sigma, seed=cfg.seed,
                   data_dir=cfg.data_dir)
    t0 = time.perf_counter()
    results = evaluate(model, images, data, ood, cfg, n_ways=(1, 2, cfg.n_way),
                       progress=progress)
    text = tables_markdown(results, cfg, data.name)
    hardware = []
    if cfg.activation == "comparator":
        hardware = evaluate_hardware(model, images, data, cfg, n_ways=(1, 2, cfg.n_way))
        text += "\n" + hardware_markdown(hardware)
    print()
    print(text)
    report = {
        "config": cfg.to_dict(), "dataset": data.name, "n_test": len(data.x_test),
        "ood_sets": {k: len(v) for k, v in ood.items()},
        "results": [r.to_dict() for r in results],
        "hardware_mode": [asdict(a) for a in hardware],
        "seconds": time.perf_counter() - t0,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }
    atomic_write(out / EVAL_MARKDOWN, text)
    atomic_write(out / EVAL_JSON, json.dumps(report, indent=2, allow_nan=True))
    print(f"wrote {out / EVAL_MARKDOWN} and {out / EVAL_JSON}")


def model_and_data(args, out: Path, progress: bool):
    """(model, data, cfg): load ``args.checkpoint`` (its Config, overridden by the flags) or
    train a model from the flags into ``out``."""
    from .golden.checkpoint import load_checkpoint
    from .golden.datasets import load_dataset

    if args.checkpoint:
        model, base, _ = load_checkpoint(args.checkpoint)
        cfg = config_from_args(args, base)
        return model, load_dataset(cfg), cfg
    cfg = config_from_args(args)
    model, data = _train(cfg, out, progress)
    return model, data, cfg


def _compare(args, out: Path, progress: bool) -> None:
    import torch

    from .golden.approximation import approximate
    from .golden.baselines import baseline_probs, nway_markdown, nway_study
    from .golden.checkpoint import atomic_write
    from .golden.datasets import ood_sets
    from .golden.evaluate import evaluate_bbb, evaluate_probs, tables_markdown
    from .golden.memory import (
        memory_markdown,
        memory_table,
        paper_models,
        plot_memory,
        rows_as_dicts,
    )

    model, data, cfg = model_and_data(args, out, progress)
    t0 = time.perf_counter()
    images = approximate(model, cfg.N, cfg.Q, seed=cfg.seed)
    ood = ood_sets(data, n=cfg.ood_samples, noisy_sigma=cfg.noisy_sigma, seed=cfg.seed,
                   data_dir=cfg.data_dir)
    study = nway_study(model, images, data, ood, cfg,
                       n_ways=tuple(n for n in (1, 2, 3) if n <= cfg.N), progress=progress)
    results = [evaluate_bbb(model, data, ood, cfg), *study.values()]
    for name, probs in baseline_probs(cfg, data, ood, progress=progress).items():
        test = probs.pop("test")
        results.append(evaluate_probs(name, test, data.y_test, probs, cfg))
    rows = memory_table(paper_models(), N=cfg.N, Q=cfg.Q)
    figure = plot_memory(rows, out / COMPARE_MEMORY_PNG)
    text = "\n".join([tables_markdown(results, cfg, data.name), nway_markdown(study),
                      "### Memory overhead (section 4.3.2, Fig. 7)", "",
                      memory_markdown(rows), f"Figure: {figure.name}", ""])
    print()
    print(text)
    report = {"config": cfg.to_dict(), "dataset": data.name,
              "results": [r.to_dict() for r in results],
              "nway": {str(n): r.to_dict() for n, r in study.items()},
              "memory": rows_as_dicts(rows), "seconds": time.perf_counter() - t0,
              "versions": {"python": platform.python_version(), "torch": torch.__version__}}
    atomic_write(out / COMPARE_MARKDOWN, text)
    atomic_write(out / COMPARE_JSON, json.dumps(report, indent=2))
    print(f"wrote {out / COMPARE_MARKDOWN}, {out / COMPARE_JSON} and {figure}")


def _rtl(args) -> int:
    try:
        from .rtl.export import TOPS, export
        from .rtl.params import params_from_json

        params = params_from_json(args.config)
        tops = tuple(args.top) if args.top else TOPS
        bad = [t for t in tops if t not in TOPS]
        if bad:
            raise ValueError(f"unknown top(s) {bad}; choose from {list(TOPS)}")
        for path in export(params, args.out, tops):
            print(f"wrote {path}")
    except (ValueError, OSError) as e:
        print(f"spinbayes rtl export: error: {e}", file=sys.stderr)
        return 2
    return 0


def _plot(args) -> int:
    from .golden.mtj import DEFAULT, p_sw, plot_mtj

    path = Path(args.out or f"runs/{args.what}.png")
    try:
        plot_mtj(path)
    except OSError as e:
        print(f"spinbayes plot: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}: p_sw(230 uA) = {float(p_sw(230e-6)):.4f}, "
          f"p_sw(300 uA) = {float(p_sw(300e-6)):.6f} (Delta = {DEFAULT.delta:g}, "
          f"tau0 = {DEFAULT.tau0 * 1e9:g} ns, Ic0 = {DEFAULT.ic0 * 1e6:.1f} uA)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "plot":
        return _plot(args)
    if args.command == "rtl":
        return _rtl(args)
    if args.command == "firmware":
        from . import cli_firmware
        return cli_firmware.main(args)
    if args.command == "synth":
        from . import cli_synth
        return cli_synth.run_synth(args)
    if args.command == "sim":
        from . import cli_sim
        return cli_sim.main(args)
    try:
        progress = _setup(args)
        out = Path(args.out)
        if args.command == "train":
            _train(config_from_args(args), out, progress)
        elif args.command == "run":
            from .pipeline import RunOptions, apply_quick, run_pipeline

            cfg = config_from_args(args)
            if args.quick:
                cfg = apply_quick(cfg, {f.name for f in fields(Config)
                                        if getattr(args, f.name, None) is not None})
            opts = RunOptions(quick=args.quick, images_sim=args.images_sim,
                              simulator=args.simulator, energy_table=args.energy_table,
                              rtl=not args.no_rtl, synth=not args.no_synth)
            print(f"SpinBayes main job: {cfg.dataset}, {cfg.topology}, N={cfg.N}, Q={cfg.Q}, "
                  f"T={cfg.T}")
            run_pipeline(cfg, out, opts, progress=progress)
        elif args.command == "compare":
            _compare(args, out, progress)
        elif args.command == "eval":
            from .golden.checkpoint import load_checkpoint
            from .golden.datasets import load_dataset

            model, base, _ = load_checkpoint(args.checkpoint)
            cfg = config_from_args(args, base)
            _eval(model, load_dataset(cfg), cfg, out, progress)
    except (ValueError, OSError) as e:
        print(f"spinbayes {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# Every Config field must be reachable from the command line of `run`.
assert {f.name for f in fields(Config)} >= EVAL_FIELDS
