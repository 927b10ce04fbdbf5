"""Stopping a command stops its simulators.

`spinbayes sim` and `run` start the simulator (vvp, a Verilator model) as a child process from
a worker thread (cocotb's runner). Ctrl-C reaches the whole foreground process group, but a
SIGTERM sent to the command's process alone (``kill PID``, a batch system's time limit) would
end Python and leave the simulator running as an orphan. :func:`stop_children_on_sigterm`
makes SIGTERM end every descendant process first (SIGTERM, then SIGKILL after a grace
period), then the command, with exit status 143 (128 + SIGTERM).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

__all__ = ["descendants", "stop_children_on_sigterm", "terminate"]

#: Seconds the children get to end after SIGTERM before SIGKILL.
GRACE_S = 3.0


def descendants(pid: int | None = None) -> list[int]:
    """The process ids of every descendant of ``pid`` (default: this process), parents
    before their children, read from /proc (Linux); [] where /proc is not available."""
    root = os.getpid() if pid is None else pid
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:                      # the process ended while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = text[text.rfind(")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


def terminate(pids: list[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM to each of ``pids``; SIGKILL to those still alive after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for p in pids:
            try:
                os.kill(p, sig)
                alive.append(p)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL or not alive:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            pids = [p for p in alive if _running(p)]
            if not pids:
                return
            time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"          # a zombie has ended


def _on_sigterm(signum, frame):
    terminate(descendants())
    raise SystemExit(128 + signum)


def stop_children_on_sigterm() -> bool:
    """Install the SIGTERM handler (from the main thread only; returns whether it did)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True
