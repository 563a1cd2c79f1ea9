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

When a run has both forms (rpd's plan beside timeline schedules), the child
compiles the trace kernel first; the plan kernel goes to whichever side is
free first: the child once the trace kernel is in the cache, or the parent
once it has prepared every schedule's timeline (`Aside.parent_free`) and the
child has inferred the trace kernel's types. The two kernels share most of
their callees (sampling, the loss sample, the step; a layered model's stage
kernels), which numba compiles and caches while it types the trace kernel:
taken earlier, the parent compiled them a second time beside the child. The
parent then compiles the plan kernel at once, in a thread waiting for the
child (`Aside._take_rest`), beside the child's lowering of the trace kernel.
A first run waits for the longer side, and which side that is depends on the
scenario: a tiny scenario's parent is done long before the child, the
quickstart's ten timelines take about as long as the child
(benchmarks/perf/README.md, "Issue 16, seventh round: blc", "eighth round:
blc8", "chc8" and "idle retake"). Some kernels the replay kernels call are
compiled ahead, split between the two processes (`ahead_of`): the parent
compiles its share before it simulates the timelines, beside the child's,
and the child waits for it before it types the replay kernels, which then
load both from the cache. For a layered model these are the stage kernels,
most of its compilation (the parent the backward, the child the forward);
for a block-linear one, the trace kernel's callees (about two thirds of its
compilation), and once both shares are cached the parent may take the plan
kernel, which shares most of them ("ninth round: blc9").
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import numpy as np
from numba.core import config, event
from numba.core.registry import cpu_target

from pipebench.engine.compiling import can_compile_aside, family_cold, replay_family
from pipebench.engine.layered import stage_kernel_types
from pipebench.engine.replay import (
    SizedReplay,
    _replay_trace,
    plan_callees,
    replay_signature,
    trace_callees,
)
from pipebench.objectives import BlockLinear, Layered
from pipebench.objectives.layered import stage_backward, stage_forward
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


# Shared by the two processes, one integer each: who compiles the kernels left to the
# side free first (REST); 1 once the child's first share is in the cache (FIRST_DONE),
# once the parent may take the rest (REST_OPEN), once the parent's share of the kernels
# compiled ahead (`Ahead`) is in the cache or failed (AHEAD_DONE).
REST, FIRST_DONE, REST_OPEN, AHEAD_DONE = range(4)
FREE, CHILD, PARENT = 0, 1, 2

# The block-linear trace kernel's callees the parent compiles ahead, with rpd's plan
# kernel's own (`replay.plan_callees`) when a run has rpd; the child compiles the others
# (`replay.trace_callees`), the largest, `_loss_at`, among them. The parent then prepares
# the timelines and compiles the plan kernel, the child types and lowers the trace
# kernel: chosen so that the two end together on bench_compile.py's scenario, pd and rpd
# (benchmarks/perf/README.md, "Issue 16, ninth round: blc9"; `sample_pair` since the
# tenth round's ref10, which added it to the child's longer path).
PARENT_CALLEES = ("draw_rows", "backward_block", "sample_pair")

Compiled = list[tuple[Callable, tuple]]  # kernels and the numba argument types to compile


@dataclass(frozen=True)
class Ahead:
    """Kernels the replay kernels call, compiled before them and split between the two
    processes; the replay kernels then load them from numba's cache."""

    child: Compiled
    parent: Compiled
    shared: bool  # every callee the plan kernel shares with the trace kernel is here


def ahead_of(objective_kind: str, first: list[Run], rest: list[Run]) -> Ahead:
    """What the replay kernels of `split_runs`' (`first`, `rest`) call that is compiled
    ahead: a layered model's stage kernels (`stage_kernel_types`), the block-linear trace
    kernel's callees (and the plan kernel's own, for `rest`), or none (rpd alone)."""
    if replay_family(objective_kind) != "block-linear":
        forward, backward = stage_kernel_types(first[0][1])
        return Ahead([(stage_forward, forward)], [(stage_backward, backward)], False)
    setup, objective, code, hyper, seed, _ = first[0]
    if setup.form is None:  # rpd alone: no trace kernel
        return Ahead([], [], False)
    callees = trace_callees(setup.chunks, objective, code, hyper, seed)
    parent = [callees.pop(name) for name in PARENT_CALLEES]
    if rest:
        setup, *inputs, _ = rest[0]
        parent += plan_callees(empty_replay(setup), *inputs).values()
    return Ahead(list(callees.values()), parent, True)


def split_runs(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """(first, rest): the child compiles the kernels of `first` at once, those of `rest`
    (rpd's plan kernel beside timeline schedules) only if it is free before the parent."""
    traced = [run for run in runs if run[0].form is not None]
    planned = [run for run in runs if run[0].form is None]
    return (traced, planned) if traced else (runs, [])


def _claim(state, side: int) -> bool:
    """Give the rest to `side` unless the other side has it; whether `side` has it."""
    with state.get_lock():
        if state[REST] == FREE:
            state[REST] = side
        return state[REST] == side


class _Typed(event.Listener):
    """Sets REST_OPEN once the type inference of a trace kernel has ended: numba compiles
    (and caches) every kernel a kernel calls while it infers the caller's types, so the
    callees the plan kernel shares with it are then in the cache for the parent."""

    def __init__(self, state) -> None:
        self._state = state

    def on_start(self, ev: event.Event) -> None:
        pass

    def on_end(self, ev: event.Event) -> None:
        # also after a failed inference, when the child ends and the parent compiles anyway
        name = ev.data["name"]
        if name == f"nopython_type_inference [{_replay_trace.py_func.__qualname__}]":
            self._state[REST_OPEN] = 1


def _compile(first: list[Run], rest: list[Run], state, ahead: Ahead) -> None:
    """The child: compile its share of the kernels compiled ahead, then, once the
    parent's is in the cache, the runs' replay kernels; print nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    parent = os.getppid()
    # Fresh streams: the parent's may have been locked mid-write by another thread (the
    # progress bar's) when it forked, and a warning or the final flush would wait forever.
    with open(os.devnull, "w") as quiet:
        sys.stdout = sys.stderr = quiet
        try:
            for kernel, types in ahead.child:
                kernel.compile(types)
            while state[AHEAD_DONE] == 0 and os.getppid() == parent:
                time.sleep(0.05)
            if ahead.shared:  # the plan kernel's callees are cached: the parent may take it
                state[REST_OPEN] = 1
            with event.install_listener("numba:run_pass", _Typed(state)):
                compile_replays(first)
            state[FIRST_DONE] = 1
            if rest and _claim(state, CHILD):
                compile_replays(rest)
        except Exception:  # the parent then compiles for itself
            os._exit(1)


class Aside:
    """The replay kernels being compiled in a child (None: none is): what a run waits for
    before its replay."""

    def __init__(
        self, child: BaseProcess | None = None, state=None, rest: list[Run] | None = None
    ) -> None:
        self._child = child
        self._state = state
        self._plan_left = bool(rest)  # rpd's plan kernel left to the side free first
        self._rest = rest or []  # its runs, until the parent has compiled them
        self._free = False  # the parent has prepared every timeline
        self._lock = threading.Lock()
        self._compiling = threading.Lock()

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
        self._take_rest()
        return self._state[REST] == PARENT if rest else self._state[FIRST_DONE] == 1

    def _take_rest(self) -> None:
        """Once free and the kernels the two shares call are in the cache (`_Typed`), claim
        the rest and compile it in this waiting thread, beside the child's trace kernel:
        left to the first rpd replay, it waited for the threads waiting for the trace
        kernel, and the child, free first, compiled it after that kernel."""
        if self._free and self._state[REST_OPEN] == 1 and _claim(self._state, PARENT):
            with self._compiling:  # by the first thread here; the others wait for it
                rest, self._rest = self._rest, []
                if rest:
                    compile_replays(rest)

    def parent_free(self) -> None:
        """The parent has prepared every timeline: it compiles the rest itself, unless the
        child has started on them (not before the child has the kernels the two share in
        the cache)."""
        self._free = True


def compile_replays_aside(objective_kind: str, runs: list[Run]) -> Aside:
    """Start compiling the replay kernels of `runs` in a child when the cache lacks them and
    a second core can take it (`split_runs`); the parent's share of the kernels they call
    (`ahead_of`) is compiled here, beside the child's. Returns what the runs wait for:
    `Aside.wait`, called from any thread before a replay."""
    if (
        config.DISABLE_JIT
        or not can_compile_aside()
        or not family_cold(replay_family(objective_kind))
    ):
        return Aside()
    first, rest = split_runs(runs)
    ahead = ahead_of(objective_kind, first, rest) if runs else Ahead([], [], False)
    # numba's typing and lowering registries, loaded here once for both processes (each
    # loaded them at its first compilation: 0.4 s of CPU)
    cpu_target.typing_context.refresh()
    cpu_target.target_context.refresh()
    context = multiprocessing.get_context("fork")
    state = context.Array("i", [FREE, 0, 0, 0])
    child = context.Process(target=_compile, args=(first, rest, state, ahead), daemon=True)
    child.start()
    try:  # Ctrl-C meanwhile is noted for the run (`interrupts`)
        for kernel, types in ahead.parent:
            kernel.compile(types)
    finally:
        state[AHEAD_DONE] = 1
    return Aside(child, state, rest)
