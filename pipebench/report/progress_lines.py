"""Progress as plain lines on stderr, for when stderr is a log file or a pipe, not a terminal.

A line on the first event, then at most one line every `every` seconds,
and a last line when the work ends: a log shows that a long run is alive
and how far it got, without the redraws of a progress bar.
"""

from __future__ import annotations

import sys
import time


class ProgressLines:
    """Counters (`runs 3 of 40`) printed as one line, at most once every `every` seconds."""

    def __init__(self, command: str, every: float = 5.0) -> None:
        self.command = command
        self.every = every
        self.counts: dict[str, list[int]] = {}  # name -> [done, total], in the order added
        self.started = time.monotonic()
        self.last: float | None = None

    def add(self, name: str, total: int, done: int = 0) -> None:
        self.counts[name] = [done, total]

    def advance(self, name: str) -> None:
        self.counts[name][0] += 1
        now = time.monotonic()
        if self.last is None or now - self.last >= self.every:
            self.print(now)

    def print(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.last = now
        done = ", ".join(f"{name} {d} of {t}" for name, (d, t) in self.counts.items())
        print(f"{self.command}: {done} done, {now - self.started:.0f} s", file=sys.stderr)
