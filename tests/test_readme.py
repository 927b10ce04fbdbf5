"""The README's two fresh-machine commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text.split("## On a fresh machine")[1])[:2]


def test_readme_test_command_is_what_ci_runs():
    setup, test = _commands()
    assert "spinbayes run" in setup and "pip install -e '.[dev]'" in setup
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()
    assert "pip install --quiet -e '.[dev]'" in ci


def test_cli_entry_point_is_declared():
    assert 'spinbayes = "spinbayes.cli:main"' in (ROOT / "pyproject.toml").read_text()
