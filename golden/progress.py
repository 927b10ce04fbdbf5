"""Progress of long stages: a tqdm bar on a terminal, periodic plain lines otherwise.

tqdm switches itself off when its stream is not a terminal (``disable=None``), so a run whose
output goes to a file would show nothing for hours. :func:`progress` returns a tqdm bar when
standard error is a terminal and a :class:`PlainProgress` when it is not: one line at the
start, one every :data:`INTERVAL` seconds with the count, the rate and the time left, and one
at the end. Training, evaluation and the baselines take their bars from here.
"""

from __future__ import annotations

import sys
import time

__all__ = ["INTERVAL", "PlainProgress", "progress"]

#: Seconds between two plain progress lines.
INTERVAL = 30.0


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PlainProgress:
    """The part of tqdm's interface the project uses, printing plain lines to stderr.

    With ``leave=False`` (an inner bar) the start and end lines are printed only when a
    periodic line was, so short inner stages print nothing.
    """

    def __init__(self, iterable=None, *, desc: str = "", unit: str = "it",
                 total: int | None = None, leave: bool = True):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.unit, self.total = iterable, desc, unit, total
        self.n, self.postfix, self.closed, self.printed = 0, "", False, leave
        self.start = self.last = time.monotonic()
        if leave:
            self._line(f"0/{total if total is not None else '?'} {unit}, started")

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def _status(self) -> str:
        elapsed = time.monotonic() - self.start
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        text = f"{count} {self.unit}, {elapsed:.0f} s"
        if self.n and elapsed > 0:
            per = elapsed / self.n
            text += f", {per:.3g} s/{self.unit}" if per >= 1 else f", {1 / per:.3g} {self.unit}/s"
            if self.total is not None and self.n < self.total:
                text += f", about {per * (self.total - self.n):.0f} s left"
        return text + (f", {self.postfix}" if self.postfix else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= INTERVAL:
            self.last, self.printed = now, True
            self._line(self._status())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.printed:
                self._line("done, " + self._status())

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress(iterable=None, *, desc: str, unit: str = "it", total: int | None = None,
             enabled: bool = True, leave: bool = True):
    """A progress bar over ``iterable`` (or updated by hand, with ``total``): tqdm on a
    terminal, :class:`PlainProgress` lines otherwise, nothing when not ``enabled``."""
    from tqdm import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if _is_terminal(sys.stderr):
        return tqdm(iterable, desc=desc, unit=unit, total=total, leave=leave)
    return PlainProgress(iterable, desc=desc, unit=unit, total=total, leave=leave)
