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

The child spreads a layered replay over two processes (`_compile_in_turn`): the
stage kernels and the loss sample, which both replay kernels call, are most of
the work and compile in two processes side by side (`_layered_callees`); then
the trace's and the plan's kernels do, each loading from numba's cache what the
other process compiled (a caller links a cached callee's code, it does not
compile it again).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable

import numpy as np
from numba import typeof, types
from numba.core import config

from pipebench.engine.compiling import can_compile_aside, family_cold, replay_family
from pipebench.engine.replay import SizedReplay, _loss_at, _replay_trace, replay_signature
from pipebench.objectives import BlockLinear, Layered
from pipebench.objectives.layered import stage_backward
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


Signature = tuple[Callable, tuple]  # a kernel and the numba types of its arguments


def replay_signatures(runs: list[Run]) -> list[Signature]:
    """The replay kernels `runs` call, once per distinct signature."""
    signatures = {}
    for setup, *inputs in runs:
        signatures[replay_signature(empty_replay(setup), *inputs)] = None
    return list(signatures)


def compile_replays(runs: list[Run]) -> None:
    """Compile the replay kernels `runs` call, in this process, one after another."""
    for kernel, arg_types in replay_signatures(runs):
        kernel.compile(arg_types)


def _layered_callees(signatures: list[Signature]) -> tuple[list[Signature], list[Signature]]:
    """The layered replay kernels' largest callees, in two groups of about equal work:
    the stage backward, and the loss sample (which compiles the stage forward).

    The argument types are those the replay kernels pass (`_replay_trace`,
    `_replay_plan`): the objective's arrays from its tuple, the rest contiguous
    arrays the kernels slice or allocate (tests/test_precompile.py checks them).
    """
    backward, loss = {}, {}
    vec, rows = types.float64[::1], types.int64[::1]
    for kernel, arg_types in signatures:
        names = kernel.py_func.__code__.co_varnames
        layered = arg_types[names.index("layered")]
        if len(layered) == 0:
            continue
        mlp_arch, lm_arch, _, _, _, _, data_f, data_t, data_i = layered.types[:9]
        stage = (mlp_arch, lm_arch, types.int64, vec, data_f, data_t, data_i, rows, vec, vec)
        backward[stage_backward, (*stage, vec, vec)] = None
        state = (types.float64[:, :, ::1], types.int64[:, ::1], types.float64[:, ::1], vec)
        loss[_loss_at, (types.float64, typeof(()), layered, *state, types.none, vec)] = None
    return list(backward), list(loss)


def _side_by_side(groups: list[list[Signature]]) -> None:
    """Compile the first group here and each other one in a forked process, side by side;
    return when all are done. A process that fails leaves its kernels to the next step,
    which compiles what it does not find in the cache."""
    groups = [group for group in groups if group]
    if not groups:
        return
    here, *aside = groups
    children = []
    for group in aside:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the handler below
            try:
                for kernel, arg_types in group:
                    kernel.compile(arg_types)
            finally:
                os._exit(0)
        children.append(pid)

    def end(*_) -> None:  # the parent ended the child (its exit): end this one's children
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        os._exit(1)

    signal.signal(signal.SIGTERM, end)
    try:
        for kernel, arg_types in here:
            kernel.compile(arg_types)
    finally:
        for pid in children:
            os.waitpid(pid, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _compile_in_turn(runs: list[Run]) -> None:
    """The replay kernels of `runs`, on two processes: their shared layered callees side
    by side, then the trace's kernels beside the plan's (each loads the callees)."""
    signatures = replay_signatures(runs)
    _side_by_side(list(_layered_callees(signatures)))
    traces = [sig for sig in signatures if sig[0] is _replay_trace]
    _side_by_side([traces, [sig for sig in signatures if sig not in traces]])


def _compile(runs: list[Run]) -> None:
    """The child: compile the runs' replay kernels into numba's cache, print nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # Fresh streams: the parent's may have been locked mid-write by another thread (the
    # progress bar's) when it forked, and a warning or the final flush would wait forever.
    with open(os.devnull, "w") as quiet:
        sys.stdout = sys.stderr = quiet
        try:
            _compile_in_turn(runs)
        except Exception:  # the parent then compiles for itself
            os._exit(1)


def compile_replays_aside(objective_kind: str, runs: list[Run]) -> Callable[[np.ndarray], None]:
    """Start compiling the replay kernels of `runs` in a child when the cache lacks them and
    a second core can take it. Returns the wait to call, from any thread, before a replay:
    it returns when the child is done or the run's `stop` flag is set (Ctrl-C)."""
    if (
        config.DISABLE_JIT
        or not can_compile_aside()
        or not family_cold(replay_family(objective_kind))
    ):
        return lambda stop: None
    child = multiprocessing.get_context("fork").Process(target=_compile, args=(runs,), daemon=True)
    child.start()
    lock = threading.Lock()

    def wait(stop: np.ndarray) -> None:
        with lock:  # one join at a time: concurrent waits on one child are not safe
            while child.is_alive() and stop[0] == 0:
                child.join(0.1)

    return wait
