"""The README's excerpt of the main job, rendered from a real run's files.

``python -m spinbayes.excerpt RUN_DIR`` prints it; ``--update README.md`` rewrites the block
between :data:`BEGIN` and :data:`END` in the README. ``tests/test_readme_excerpt.py`` runs
the main job with :data:`COMMAND` and fails when the README's block differs from what this
module renders from that run. Only figures that a rerun reproduces are shown (no seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["BEGIN", "COMMAND", "END", "readme_block", "render", "replace_block"]

#: The run the README shows: the ``--quick`` main job with one torch thread, so that the
#: figures are the same on any machine count of cores (float results depend on threads).
COMMAND = ("run", "--quick", "--threads", "1")
BEGIN = "<!-- excerpt: begin (python -m spinbayes.excerpt RUN_DIR --update README.md) -->"
END = "<!-- excerpt: end -->"
#: The sections of eval.md that the excerpt keeps, by the start of their heading.
SECTIONS = ("### Table 1", "### Table 3", "### Integer hardware mode")


def _sections(markdown: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for chunk in ("\n" + markdown).split("\n### ")[1:]:
        text = "### " + chunk.strip("\n")
        parts[text.splitlines()[0]] = text
    return parts


def render(run_dir) -> str:
    """The excerpt of the run in ``run_dir`` (checkpoint/manifest.json, eval.md, and
    report.json when the run had an RTL stage)."""
    run = Path(run_dir)
    try:
        manifest = json.loads((run / "checkpoint" / "manifest.json").read_text())
        evaluation = (run / "eval.md").read_text()
    except FileNotFoundError as e:
        raise ValueError(f"{run}: not a finished run of the main job "
                         f"({e.filename} missing)") from None
    cfg, prov = manifest["config"], manifest.get("provenance", {})
    hist = manifest["history"][-1]
    lines = [f"$ spinbayes {' '.join(COMMAND)}",
             f"SpinBayes main job: {cfg['dataset']}, {cfg['topology']}, N={cfg['N']}, "
             f"Q={cfg['Q']}, T={cfg['T']}",
             f"trained {cfg['epochs']} epochs, torch threads {prov.get('threads', '?')}, "
             f"final train accuracy {hist['train_acc']:.2f} %", ""]
    secs = _sections(evaluation)
    for want in SECTIONS:
        for head, text in secs.items():
            if head.startswith(want):
                lines += [_strip_notes(text), ""]
    report = run / "report.json"
    cov = json.loads(report.read_text()).get("coverify") if report.is_file() else None
    if cov:
        c = cov["cycles"]
        lines.append(f"RTL: {cov['images']} images on {cov['simulator']}, "
                     f"{cov['mismatches']} mismatches, {cov['vfy_errors']} of "
                     f"{cov['vfy_checked']} cells read back wrong, {c['min']}-{c['max']} "
                     f"cycles per image, RTL accuracy {cov['accuracy']:.1f} %")
    return "\n".join(lines).rstrip() + "\n"


def _strip_notes(section: str) -> str:
    """A section's heading and table, without the explanatory lines after the table."""
    out = []
    for line in section.splitlines():
        if out and not line.startswith("|") and out[-1].startswith("|"):
            break
        out.append(line)
    return "\n".join(out)


def readme_block(readme_text: str) -> str:
    """The excerpt inside the README's code block between BEGIN and END."""
    try:
        inner = readme_text.split(BEGIN, 1)[1].split(END, 1)[0]
    except IndexError:
        raise ValueError("README has no excerpt block (markers missing)") from None
    return inner.strip().removeprefix("```text").removesuffix("```").strip("\n") + "\n"


def replace_block(readme_text: str, excerpt: str) -> str:
    head, rest = readme_text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n```text\n{excerpt}```\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m spinbayes.excerpt", description=__doc__)
    p.add_argument("run_dir", help="output directory of `spinbayes " + " ".join(COMMAND) + "`")
    p.add_argument("--update", metavar="README", help="rewrite the excerpt block of README")
    args = p.parse_args(argv)
    try:
        text = render(args.run_dir)
        if args.update:
            from .golden.contract import atomic_write

            path = Path(args.update)
            atomic_write(path, replace_block(path.read_text(), text))
            print(f"updated {path}")
        else:
            print(text, end="")
    except (ValueError, OSError) as e:
        print(f"spinbayes.excerpt: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
