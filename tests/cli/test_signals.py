"""SIGTERM to a command ends its child processes (spinbayes/signals.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from spinbayes.signals import descendants, terminate

# A stand-in for `spinbayes sim`: the handler installed as the CLI installs it, and a child
# started from a worker thread as cocotb's runner starts the simulator.
SCRIPT = textwrap.dedent("""
    import subprocess, sys, threading, time
    from spinbayes.signals import stop_children_on_sigterm
    assert stop_children_on_sigterm()
    def run():
        subprocess.run([sys.executable, "-c", "import time; time.sleep(60)"])
    threading.Thread(target=run, daemon=True).start()
    print("ready", flush=True)
    time.sleep(60)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return False
    return text[text.rfind(")") + 2] != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc (Linux)")
def test_sigterm_ends_the_child_started_from_a_thread_then_the_command():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while not (kids := descendants(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(kids) == 1 and _alive(kids[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 5
        while _alive(kids[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(kids[0]), "the child outlived the command"
    finally:
        proc.kill()
        proc.wait()


def test_descendants_lists_children_and_grandchildren_parents_first():
    outer = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        print(p.pid, flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(outer.stdout.readline())
        assert outer.pid in descendants()
        assert descendants(outer.pid) == [grandchild]
        mine = descendants()
        assert mine.index(outer.pid) < mine.index(grandchild)
        terminate([outer.pid, grandchild], grace_s=2)
        assert outer.wait(timeout=5) == -signal.SIGTERM
    finally:
        outer.kill()
        outer.wait()


def test_main_restores_the_sigterm_handler():
    from spinbayes.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["firmware", "check", "/nonexistent/image"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
