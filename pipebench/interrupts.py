"""Ctrl-C in a command that writes results: whenever it comes, the results are written.

Inside `deferred()` (the whole of `run` and `sweep`), the first Ctrl-C only
takes note while the command reads its scenario, checks its folder or
writes its results; inside `raising()` (the computing) it raises
`KeyboardInterrupt` at once, also when it came earlier, so the runs
finished so far are kept and written as an interrupted result. A second
Ctrl-C raises wherever it comes: the results being written are dropped and
the previous results folder stays as it was.

Outside `deferred()` (library use, other threads) both are no-ops and
Python's own handler raises `KeyboardInterrupt` as usual.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Gate:
    def __init__(self) -> None:
        self.count = 0
        self.raising = False

    def handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.raising or self.count > 1:
            raise KeyboardInterrupt


_gate: _Gate | None = None


class Abandoned(Exception):
    """A second Ctrl-C: what was being written is dropped (not a `KeyboardInterrupt`, which
    the command-line framework would turn into a silent exit)."""


@contextmanager
def deferred() -> Iterator[None]:
    """Ctrl-C takes note inside this block, except inside `raising()`; a second one raises
    `Abandoned`."""
    global _gate
    if _gate is not None or threading.current_thread() is not threading.main_thread():
        yield
        return
    _gate = _Gate()
    previous = signal.signal(signal.SIGINT, _gate.handle)
    try:
        yield
    except KeyboardInterrupt:
        raise Abandoned from None
    finally:
        signal.signal(signal.SIGINT, previous)
        _gate = None


def noted() -> bool:
    """Whether Ctrl-C came inside the current `deferred()` block."""
    return _gate is not None and _gate.count > 0


@contextmanager
def raising() -> Iterator[None]:
    """Ctrl-C raises `KeyboardInterrupt` inside this block (at once if it came before)."""
    gate = _gate
    if gate is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    gate.raising = True
    try:
        if gate.count:
            raise KeyboardInterrupt
        yield
    finally:
        gate.raising = False
