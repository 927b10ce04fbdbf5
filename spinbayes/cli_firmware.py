"""``spinbayes firmware``: compile a checkpoint into a firmware image, check an image.

Registered by :func:`spinbayes.cli.build_parser` through :func:`add_parser`; dispatched by
:func:`spinbayes.cli.main` to :func:`main`. docs/FIRMWARE.md documents the commands and the
image format.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["add_parser", "main", "summary"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``firmware`` subcommand to the subparsers ``sub`` of the main parser."""
    p = sub.add_parser("firmware", help="compile a checkpoint into a firmware image; check one",
                       description="Firmware images: the crossbar cell levels ($readmemh hex "
                       "files), the descriptor table's register writes and a manifest with "
                       "checksums (docs/FIRMWARE.md).")
    fw = p.add_subparsers(dest="firmware_command", required=True, metavar="ACTION")
    c = fw.add_parser("compile", help="checkpoint -> firmware image",
                      description="Load a checkpoint, approximate it onto N crossbars per "
                      "layer, re-calibrate BatchNorm, fold it into the integer network and "
                      "compile it for the design; write the image to OUT atomically.")
    c.add_argument("--checkpoint", required=True, help="checkpoint directory (from train)")
    c.add_argument("--out", required=True, help="image directory to write (replaced if it "
                   "holds an image)")
    c.add_argument("--rtl-config", help="JSON file of RtlParams fields (default: the defaults, "
                   "as `spinbayes rtl export --config`)")
    c.add_argument("--T", type=int, default=None, help="passes per image (default: the "
                   "checkpoint's T)")
    c.add_argument("--seed", type=int, default=None, help="seed of the arbiters' RNG devices, "
                   "0..2^32-1 (default: the checkpoint's seed)")
    c.add_argument("--n-way", type=int, default=None, help="crossbars chosen per layer and "
                   "pass (default: the checkpoint's n_way)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    k = fw.add_parser("check", help="load and verify an image, print a summary",
                      description="Check an image's format version, manifest seal, shapes, "
                      "sizes, checksums and hex syntax, and that it fits the design it names: "
                      "every register write within its legal range, exactly the writes the "
                      "network needs, the layer geometry, every cell level and weight code "
                      "within Q, the manifest's T, n_outputs and RNG seed against the writes "
                      "(docs/FIRMWARE.md); exit 2 naming the file and the problem if anything "
                      "is wrong.")
    k.add_argument("image", help="image directory")
    k.add_argument("--rtl-config", help="also require the image to be built for this design")
    return p


def summary(program, manifest: dict) -> str:
    """A few lines about a loaded image."""
    p = manifest["params"]
    cells = program.cells
    lines = [
        f"format {manifest['format']} v{manifest['format_version']}, created "
        f"{manifest.get('created', {}).get('utc', '?')}",
        f"design: N={p['N']}, n_max={p['n_max']}, Q={p['Q']}, R={p['R']}, A_in={p['A_in']}, "
        f"rows_max={p['rows_max']}, outputs_max={p['outputs_max']}, "
        f"layers_max={p['layers_max']}, groups_total={p['groups_total']}, "
        f"T_max={p['T_max']}",
        f"T={program.T}, RNG seed={manifest.get('seed')}, {program.n_outputs} outputs, "
        f"{len(program.descriptor)} descriptor writes",
    ]
    for row in manifest["layers"]:
        conv = (f", conv {row.get('c_in')}x{row.get('h')}x{row.get('w')} k {row.get('k')} "
                f"stride {row.get('stride')} padding {row.get('padding')} pool {row.get('pool')}"
                if row.get("kind") else "")
        lines.append(f"  layer {row['layer']}: {row.get('rows')} rows x {row.get('outputs')} "
                     f"outputs, group base {row.get('group_base')}, {row.get('in_bits')}-bit "
                     f"inputs{conv}")
    nz = [int(np.count_nonzero(cells[k])) for k in range(cells.shape[0])]
    lines.append(f"cells: {cells.shape[0]} crossbars x {cells.shape[1]} rows x "
                 f"{cells.shape[2]} columns; non-zero per crossbar {nz} "
                 f"({sum(nz)} cell writes)")
    lines.append(f"files verified: {len(manifest['files'])} + sealed manifest (sizes, sha256, "
                 f"hex, register ranges, layer geometry, weight codes within Q, seeds)")
    return "\n".join(lines)


def main(args) -> int:
    from .firmware.build import build_image, params_from_json
    from .firmware.image import load_image
    from .rtl.regs import check_seed

    try:
        params = params_from_json(args.rtl_config) if args.rtl_config else None
        if args.firmware_command == "compile":
            if args.seed is not None:
                check_seed(args.seed)          # before the slow steps
            path, compiled = build_image(args.checkpoint, args.out, params, T=args.T,
                                         seed=args.seed, n_way=args.n_way,
                                         progress=not args.quiet)
            print(f"wrote {path}")
            program, manifest = load_image(path, compiled.params)
        else:
            program, manifest = load_image(args.image, params)
            print(f"{args.image}: OK")
        print(summary(program, manifest))
    except (ValueError, OSError) as e:
        print(f"spinbayes firmware {args.firmware_command}: error: {e}", file=sys.stderr)
        return 2
    return 0
