"""Running an experiment: one timeline per schedule, replayed for every seed and lr.

Timelines are built once per schedule (rpd redraws only its blocks and
delays per seed, on the same pd clock). The replays run on a pool of
threads: the numba kernels release the GIL, so every core works on the
same trace in memory without copying it. Ctrl-C sets a flag the kernels
poll; runs in flight stop within milliseconds and are discarded, runs that
finished are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from pipebench import interrupts
from pipebench.engine.blas import one_blas_thread
from pipebench.engine.precompile import Aside, Run, compile_replays_aside
from pipebench.engine.replay import Curve, SizedReplay, replay, size_replay
from pipebench.experiment import Entry, Experiment, chunk_bytes
from pipebench.timeline import TimelineStats, Trace
from pipebench.timeline.budget import stats_until, timeline_for
from pipebench.timeline.memory import MemoryProfile, memory_profile
from pipebench.timeline.window import first_rounds_end, head


def replay_runs(exp: Experiment) -> list[Run]:
    """What each entry of `exp` calls its replay with (its first lr and seed: the types
    are the same for the others)."""
    return [
        (e.setup, exp.objective_of(e), e.optimizer_code, e.hyper(e.lrs[0]), exp.seeds[0],
         exp.switches)
        for e in exp.entries
    ]  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """One finished run: entry x seed x lr."""

    entry: Entry
    seed: int
    lr: float
    curve: Curve
    stats: TimelineStats
    until: float
    wall_seconds: float
    first_rounds: Trace  # the start of the timeline, for its Gantt chart (rpd: the pd clock)
    # bytes per rank (the scenario gives a model): peaks of the run, samples of its first rounds
    memory: MemoryProfile | None = None


@dataclass(frozen=True)
class EntryReplays:
    """One schedule entry ready to train: per seed, the timeline its runs walk."""

    entry: Entry
    # per seed, the sized replay and its statistics: rpd draws its blocks and
    # delays from the seed (on the same pd clock); a trace is shared by all seeds
    per_seed: dict[int, tuple[SizedReplay, TimelineStats]]
    first_rounds: Trace
    memory: MemoryProfile | None = None


def entry_replays(exp: Experiment, entry: Entry) -> EntryReplays:
    """The timeline of one schedule entry, cut to the budget and sized for every seed."""
    timeline, until, iterations = timeline_for(entry.setup, exp.costs, exp.budget_kind, exp.budget)
    clock = timeline.clock
    first = head(clock, min(first_rounds_end(clock), until))
    made: dict[int, tuple[SizedReplay, TimelineStats]] = {}  # by id of the timeline walked
    per_seed = {}
    for seed in exp.seeds:
        walked = timeline.reseeded(seed)
        if id(walked) not in made:
            sized = size_replay(walked, until, iterations)
            made[id(walked)] = (sized, stats_until(walked, until, sized.length))
        per_seed[seed] = made[id(walked)]
    memory = None
    if exp.machine is not None:  # rpd: the memory of its pd clock
        ran = timeline.cut(until, iterations).clock
        memory = memory_profile(
            ran, chunk_bytes(exp.machine, entry.optimizer), until=first.makespan
        )
    return EntryReplays(entry, per_seed, first, memory)


def run_one(
    exp: Experiment, replays: EntryReplays, seed: int, lr: float, stop: np.ndarray
) -> Outcome:
    """One replay of a prepared entry; `stop[0] = 1` ends it early (Ctrl-C)."""
    started = time.perf_counter()
    sized, stats = replays.per_seed[seed]
    entry = replays.entry
    objective = exp.objective_of(entry)
    hyper = entry.hyper(lr)  # compiled for exp.switches: the kernel the scenario's runs share
    curve = replay(
        sized, objective, entry.optimizer_code, hyper, seed, exp.points, stop, exp.switches
    )
    return Outcome(
        entry=entry,
        seed=seed,
        lr=lr,
        curve=curve,
        stats=stats,
        until=sized.until,
        wall_seconds=time.perf_counter() - started,
        first_rounds=replays.first_rounds,
        memory=replays.memory,
    )


def _run_compiled(
    compiled: Aside,
    exp: Experiment,
    replays: EntryReplays,
    seed: int,
    lr: float,
    stop: np.ndarray,
) -> Outcome | None:
    """`run_one` once the replay kernel compiled aside for it is in numba's cache; None
    when Ctrl-C came first (the run would be discarded)."""
    compiled.wait(stop, replays.entry.setup)
    if stop[0] != 0:
        return None
    return run_one(exp, replays, seed, lr, stop)


def run_experiment(
    exp: Experiment,
    workers: int,
    on_prepared: Callable[[Entry], None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], bool]:
    """Every run of `exp`, in scenario order (entry, seed, lr); and whether Ctrl-C stopped it.

    On Ctrl-C (also one noted before; see `interrupts`), the runs finished so
    far are returned with `True`.
    """
    stop = np.zeros(1, dtype=np.int64)
    # a cold cache: the replay kernels compiled in a child while the timelines are simulated
    compiled = compile_replays_aside(exp.objective.kind, replay_runs(exp))
    done: dict[tuple[int, int, int], Outcome] = {}
    pending: dict[Future, tuple[int, int, int]] = {}
    interrupted = False
    with one_blas_thread(), ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            with interrupts.raising():
                for entry in exp.entries:
                    replays = entry_replays(exp, entry)
                    if on_prepared is not None:
                        on_prepared(entry)
                    for si, seed in enumerate(exp.seeds):
                        for li, lr in enumerate(entry.lrs):
                            future = pool.submit(
                                _run_compiled, compiled, exp, replays, seed, lr, stop
                            )
                            pending[future] = (entry.index, si, li)
                compiled.parent_free()  # every timeline prepared: free to compile a kernel
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        key = pending.pop(future)
                        done[key] = future.result()
                        if on_done is not None:
                            on_done(done[key])
        except KeyboardInterrupt:
            interrupted = True
            stop[0] = 1
            for future in pending:
                future.cancel()
    return [done[key] for key in sorted(done)], interrupted
