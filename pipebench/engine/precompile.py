"""The replay kernels compiled in a forked child while the parent simulates the timelines.

A first run after installation compiles two independent groups of numba
kernels, one after the other: the timeline's (simulator, statistics, sizing)
and the replay's, each about half of the wait (benchmarks/perf/README.md,
"Issue 16, fourth round: compile"). When numba's cache lacks the replay
kernels of a run's objective form, a forked child compiles them for the
run's own argument types (those of a replay of no operations, so nothing is
simulated) into the on-disk cache while the parent simulates; the parent
waits for the child before its first replay, which then loads them from the
cache. numba writes a cache file under a temporary name and renames it, so a
reader never sees half of one; should the child fail, the parent compiles
what it needs itself, as without it.

When a block-linear run has both forms (rpd's plan beside timeline
schedules), the child compiles the trace kernel first; the plan kernel goes
to whichever side is free first: the child once the trace kernel is in the
cache, or the parent once it has prepared every schedule's timeline
(`Aside.parent_free`), when it compiles the kernel itself at the first rpd
replay, and not before the child has typed the trace kernel: numba compiles
a kernel's helpers while it types it, and the plan kernel calls most of the
trace kernel's, which a parent free early compiled a second time beside the
child. A first run waits for the longer side, and which side that is
depends on the scenario: a tiny scenario's parent is done long before the
child, the quickstart's ten timelines take about as long as the child. A
layered run's child compiles both (`split_runs`; benchmarks/perf/README.md,
"Issue 16, seventh round: blc" and "eighth round: blc8").
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess

import numpy as np
from numba.core import config

from pipebench.engine.compiling import can_compile_aside, family_cold, replay_family
from pipebench.engine.replay import SizedReplay, replay_signature
from pipebench.objectives import BlockLinear, Layered
from pipebench.timeline.rpd import RpdPlan
from pipebench.timeline.schedule import Setup
from pipebench.timeline.trace import OP_DTYPES, UPD_DTYPES, Trace

# What a replay is called with besides its timeline: the schedule, what it trains
# (the objective cut for it), the optimizer's code and hyper-parameters, the seed, the
# corrections its kernel is compiled for (`Experiment.switches`).
Run = tuple[Setup, BlockLinear | Layered, int, np.ndarray, int, np.ndarray]


def empty_replay(setup: Setup) -> SizedReplay:
    """A replay of no operations on a timeline of `setup`'s form, typed as a real one."""
    stages = setup.chunks
    ops = (np.zeros(0, dtype) for dtype in OP_DTYPES)
    updates = (np.zeros(0, dtype) for dtype in UPD_DTYPES)
    trace = Trace(setup.name, stages, 0, 1, *ops, *updates, recompute=setup.recompute)
    horizon = np.zeros((1, stages), np.int64)
    if setup.form is not None:
        return SizedReplay(trace, 0.0, 0, 1, 1, horizon)
    # rpd (rpd.plan): its blocks as `draw_blocks` makes them, the rest from the pd trace
    plan = RpdPlan(
        stages, 0, 0, "zero", 0, trace, np.zeros(0, np.int32), trace.upd_time,
        np.zeros((0, 0), np.int64), trace.upd_last,
    )  # fmt: skip
    return SizedReplay(plan, 0.0, 0, 1, 1, horizon)


def compile_replays(runs: list[Run]) -> None:
    """Compile the replay kernels `runs` call, once per distinct signature."""
    signatures = {}
    for setup, *inputs in runs:
        kernel, types = replay_signature(empty_replay(setup), *inputs)
        signatures[kernel, types] = None
    for kernel, types in signatures:
        kernel.compile(types)


# Who compiles the kernels left to the side free first (state[0]); how far the child's
# first share is (state[1]): TYPED once the kernels it calls are in the cache (numba
# compiles a kernel's callees while it types it), CACHED once the share itself is.
FREE, CHILD, PARENT = 0, 1, 2
TYPED, CACHED = 1, 2


def split_runs(runs: list[Run], layered: bool) -> tuple[list[Run], list[Run]]:
    """(first, rest): the child compiles the kernels of `first` at once, those of `rest`
    (rpd's plan kernel beside timeline schedules) only if it is free before the parent.

    A layered objective's runs all go first: its two kernels share the model's stage
    kernels and loss, most of their compilation, which a parent free early would compile
    a second time beside the child (a first mlp run of pd and rpd: 58 s CPU against 46)."""
    traced = [run for run in runs if run[0].form is not None]
    planned = [run for run in runs if run[0].form is None]
    return (traced, planned) if traced and not layered else (runs, [])


def _claim(state, side: int) -> bool:
    """Give the rest to `side` unless the other side has it; whether `side` has it."""
    with state.get_lock():
        if state[0] == FREE:
            state[0] = side
        return state[0] == side


@contextmanager
def _typed_signal(state) -> Iterator[None]:
    """Set state[1] to TYPED once numba has typed a kernel of the first share."""
    from numba.core import event

    class Typed(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            pass

        def on_end(self, ev: event.Event) -> None:
            typing = ev.data["name"].startswith("nopython_type_inference ")
            if typing and ev.data["qualname"] in ("_replay_trace", "_replay_plan"):
                state[1] = max(state[1], TYPED)  # not a helper's typing: the kernel's

    with event.install_listener("numba:run_pass", Typed()):
        yield


def _compile(first: list[Run], rest: list[Run], state) -> None:
    """The child: compile the runs' replay kernels into numba's cache, print nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # Fresh streams: the parent's may have been locked mid-write by another thread (the
    # progress bar's) when it forked, and a warning or the final flush would wait forever.
    with open(os.devnull, "w") as quiet:
        sys.stdout = sys.stderr = quiet
        try:
            with _typed_signal(state):
                compile_replays(first)
            state[1] = CACHED
            if rest and _claim(state, CHILD):
                compile_replays(rest)
        except Exception:  # the parent then compiles for itself
            os._exit(1)


class Aside:
    """The replay kernels being compiled in a child (None: none is): what a run waits for
    before its replay."""

    def __init__(
        self, child: BaseProcess | None = None, state=None, plan_left: bool = False
    ) -> None:
        self._child = child
        self._state = state
        self._plan_left = plan_left  # rpd's plan kernel left to the side free first
        self._lock = threading.Lock()

    def wait(self, stop: np.ndarray, setup: Setup) -> None:
        """Return once the kernel of `setup`'s form is in the cache or left to the parent,
        or the child is gone, or the run's `stop` flag is set (Ctrl-C)."""
        if self._child is None:
            return
        rest = self._plan_left and setup.form is None
        while stop[0] == 0 and not self._ready(rest):
            with self._lock:  # one join at a time: concurrent joins of one child are not safe
                if not self._child.is_alive():
                    return
                self._child.join(0.1)

    def _ready(self, rest: bool) -> bool:
        """The first share in the cache; the rest the parent's, once the kernels the two
        shares call are in the cache (rpd's plan kernel calls most of the trace kernel's
        helpers: compiled beside the child, they were compiled twice)."""
        if rest:
            return self._state[0] == PARENT and self._state[1] >= TYPED
        return self._state[1] == CACHED

    def parent_free(self) -> None:
        """The parent has prepared every timeline: it compiles the rest itself at its first
        replay of them, unless the child has started on them."""
        if self._child is not None:
            _claim(self._state, PARENT)


def compile_replays_aside(objective_kind: str, runs: list[Run]) -> Aside:
    """Start compiling the replay kernels of `runs` in a child when the cache lacks them and
    a second core can take it (`split_runs`). Returns what the runs wait for: `Aside.wait`,
    called from any thread before a replay."""
    if (
        config.DISABLE_JIT
        or not can_compile_aside()
        or not family_cold(replay_family(objective_kind))
    ):
        return Aside()
    first, rest = split_runs(runs, replay_family(objective_kind) != "block-linear")
    context = multiprocessing.get_context("fork")
    state = context.Array("i", 2)
    child = context.Process(target=_compile, args=(first, rest, state), daemon=True)
    child.start()
    return Aside(child, state, plan_left=bool(rest))
