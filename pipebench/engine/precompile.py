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
compiles the trace kernel and the parent rpd's plan kernel, once its own
timelines are done: the child was the longer side by about twice, and the
kernels the two share (sampling, the loss, the step) are in the cache by then
(benchmarks/perf/README.md, "Issue 16, seventh round: blc").
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable

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


def child_share(runs: list[Run]) -> list[Run]:
    """The runs whose replay kernel the child compiles: the timeline schedules' where the
    runs have some (the parent compiles rpd's plan kernel itself), else all."""
    traced = [run for run in runs if run[0].form is not None]
    return traced or runs


def _compile(runs: list[Run]) -> None:
    """The child: compile the runs' replay kernels into numba's cache, print nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # Fresh streams: the parent's may have been locked mid-write by another thread (the
    # progress bar's) when it forked, and a warning or the final flush would wait forever.
    with open(os.devnull, "w") as quiet:
        sys.stdout = sys.stderr = quiet
        try:
            compile_replays(runs)
        except Exception:  # the parent then compiles for itself
            os._exit(1)


def compile_replays_aside(
    objective_kind: str, runs: list[Run]
) -> Callable[[np.ndarray, Setup], None]:
    """Start compiling the replay kernels of `runs` (`child_share`) in a child when the cache
    lacks them and a second core can take it. Returns the wait to call, from any thread,
    before a replay of a schedule (its `Setup`): it returns at once when the child does not
    compile that schedule's kernel, else when the child is done or the run's `stop` flag
    is set (Ctrl-C)."""
    if (
        config.DISABLE_JIT
        or not can_compile_aside()
        or not family_cold(replay_family(objective_kind))
    ):
        return lambda stop, setup: None
    share = child_share(runs)
    child = multiprocessing.get_context("fork").Process(target=_compile, args=(share,), daemon=True)
    child.start()
    lock = threading.Lock()
    forms = {run[0].form is None for run in share}  # rpd's plan (True) and/or traces

    def wait(stop: np.ndarray, setup: Setup) -> None:
        if (setup.form is None) not in forms:  # the parent compiles this kernel itself
            return
        with lock:  # one join at a time: concurrent waits on one child are not safe
            while child.is_alive() and stop[0] == 0:
                child.join(0.1)

    return wait
