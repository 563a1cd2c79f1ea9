"""Statistics of a timeline, computed from the trace alone.

Delay is counted in block updates, the measure of the PipeDream papers
(SCHEDULES.md): number every block update in time order, k = 0, 1, ...; the
delay of block j in the update made from micro-batch m is k minus the index
of the iterate that block j was read from, and the update's delay is the
maximum over blocks. The iterate read is the number of block updates that
had finished when F(j, m) started; when a schedule reads an older version
than the current one (2BW), it is the last iterate that still had that
version. LocalSGD replicas are separate models, so they number their updates
separately.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numba import njit

from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, Trace


@njit(cache=True)
def _read_iterates(S, M, R, kind, stage, mb, rep, start, v_fwd, u_stage, u_rep, u_version, u_end):
    """(M, S) table: the iterate index each F(j, m) read block j from; and each update's k."""
    n_upd = len(u_stage)
    k_rep = np.empty(n_upd, np.int64)
    count = np.zeros(R, np.int64)
    made = np.zeros((S, R), np.int64)
    for u in range(n_upd):
        r = u_rep[u]
        k_rep[u] = count[r]
        count[r] += 1
        made[u_stage[u], r] += 1
    offset = np.zeros((S, R), np.int64)
    total = 0
    for j in range(S):
        for r in range(R):
            offset[j, r] = total
            total += made[j, r]
    maker = np.empty(total, np.int64)  # index k of the update that made version v + 1
    for u in range(n_upd):
        maker[offset[u_stage[u], u_rep[u]] + u_version[u] - 1] = k_rep[u]
    reads = np.empty((M, S), np.int64)
    finished = np.zeros(R, np.int64)
    p = 0
    for i in range(len(kind)):
        if kind[i] != FORWARD:
            continue
        while p < n_upd and u_end[p] <= start[i]:
            finished[u_rep[p]] += 1
            p += 1
        j = stage[i]
        r = rep[i]
        n = finished[r]
        v = v_fwd[i]
        if v < made[j, r]:
            n = min(n, maker[offset[j, r] + v])
        reads[mb[i], j] = n
    return reads, k_rep


def read_iterates(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Iterate index read by each F(j, m) as an (M, S) table, and each update's index k."""
    return _read_iterates(
        trace.stages, trace.microbatches, trace.replicas, trace.kind, trace.stage, trace.mb,
        trace.replica, trace.start, trace.v_fwd, trace.upd_stage, trace.upd_replica,
        trace.upd_version, trace.upd_time,
    )  # fmt: skip


@njit(cache=True)
def _range_min(values, first, last):
    """min(values[first[i] : last[i] + 1]) for every i."""
    out = np.empty(len(first), values.dtype)
    for i in range(len(first)):
        out[i] = values[first[i] : last[i] + 1].min()
    return out


def update_delays(trace: Trace) -> np.ndarray:
    """Delay of every update in block updates, in update order."""
    reads, k = read_iterates(trace)
    return k - _range_min(reads.min(axis=1), trace.upd_first, trace.upd_last)


def steady_updates(trace: Trace) -> np.ndarray:
    """Mask of updates whose micro-batches all lie in the steady state S <= m < M - S."""
    S, M = trace.stages, trace.microbatches
    return (trace.upd_first >= S) & (trace.upd_last < M - S)


def update_staleness(trace: Trace) -> np.ndarray:
    """Per update: the stage's version before the step minus the oldest version it read."""
    fwd = trace.rows(FORWARD)
    read = np.zeros((trace.stages, trace.microbatches), dtype=np.int64)
    read[trace.stage[fwd], trace.mb[fwd]] = trace.v_fwd[fwd]
    staleness = np.empty(trace.n_updates, dtype=np.int64)
    for s in range(trace.stages):
        mine = np.flatnonzero(trace.upd_stage == s)
        oldest = _range_min(read[s], trace.upd_first[mine], trace.upd_last[mine])
        staleness[mine] = trace.upd_version[mine] - 1 - oldest
    return staleness


def _peak_overlap(stages: int, stage: np.ndarray, begin: np.ndarray, finish: np.ndarray):
    """Per stage, the most intervals [begin, finish) open at one instant."""
    s = np.concatenate([stage, stage])
    t = np.concatenate([begin, finish])
    delta = np.concatenate([np.ones(len(begin), np.int64), -np.ones(len(finish), np.int64)])
    order = np.lexsort((delta, t, s))  # at a tie, a release comes before an acquisition
    level = np.cumsum(delta[order])  # every interval closes, so each stage starts from 0
    peak = np.zeros(stages, dtype=np.int64)
    np.maximum.at(peak, s[order], level)
    return peak


def peak_activations(trace: Trace) -> np.ndarray:
    """Per stage, most micro-batches held between the start of F and the end of B."""
    f = trace.op_index(FORWARD).ravel()
    b = trace.op_index(BACKWARD).ravel()
    return _peak_overlap(trace.stages, trace.stage[f], trace.start[f], trace.end[b])


def peak_versions(trace: Trace) -> np.ndarray:
    """Per stage, most weight versions held at once (all replicas counted).

    A version is held from the step that made it until it is superseded, or
    until the last backward that multiplies by it ends, whichever is later.
    """
    S, R = trace.stages, trace.replicas
    made = np.zeros((S, R), dtype=np.int64)
    np.add.at(made, (trace.upd_stage, trace.upd_replica), 1)
    count = (made + 1).ravel()  # versions 0 .. made per (stage, replica)
    offset = np.concatenate([[0], np.cumsum(count)[:-1]]).reshape(S, R)
    n = int(count.sum())
    owner = np.repeat(np.arange(S * R) // R, count)
    created = np.zeros(n)
    superseded = np.full(n, np.inf)
    index = offset[trace.upd_stage, trace.upd_replica] + trace.upd_version
    created[index] = trace.upd_time
    superseded[index - 1] = trace.upd_time
    b = trace.rows(BACKWARD)
    last_use = np.zeros(n)
    np.maximum.at(last_use, offset[trace.stage[b], trace.replica[b]] + trace.v_bwd[b], trace.end[b])
    released = np.maximum(superseded, last_use)
    return _peak_overlap(S, owner, created, released)


def busy_time(trace: Trace) -> float:
    """Stage-time spent working: every F, B and U, and AVG once per stage."""
    duration = trace.end - trace.start
    avg = trace.kind == AVERAGE
    return float(duration[~avg].sum() + trace.stages * duration[avg].sum())


@dataclass(frozen=True)
class TimelineStats:
    """The figures `pipebench schedule` reports; lists have one entry per stage."""

    schedule: str
    stages: int
    microbatches: int
    makespan: float
    bubble_fraction: float
    updates: int
    max_delay: int
    mean_delay: float
    steady_max_delay: int | None
    steady_mean_delay: float | None
    stage_max_drift: list[int]
    stage_max_staleness: list[int]
    peak_versions: list[int]
    peak_activations: list[int] | None

    def as_dict(self) -> dict:
        return asdict(self)


def delay_summary(delays: np.ndarray, steady: np.ndarray) -> tuple:
    """max and mean over all updates, then over the steady ones (None if there are none)."""
    if not steady.any():
        return int(delays.max()), float(delays.mean()), None, None
    d = delays[steady]
    return int(delays.max()), float(delays.mean()), int(d.max()), float(d.mean())


def timeline_stats(trace: Trace) -> TimelineStats:
    """Every statistic of `trace`."""
    S = trace.stages
    makespan = trace.makespan
    b = trace.rows(BACKWARD)
    drift = np.zeros(S, dtype=np.int64)
    np.maximum.at(drift, trace.stage[b], trace.v_bwd[b] - trace.v_fwd[b])
    staleness = np.zeros(S, dtype=np.int64)
    np.maximum.at(staleness, trace.upd_stage, update_staleness(trace))
    max_d, mean_d, steady_max, steady_mean = delay_summary(
        update_delays(trace), steady_updates(trace)
    )
    return TimelineStats(
        schedule=trace.schedule,
        stages=S,
        microbatches=trace.microbatches,
        makespan=makespan,
        bubble_fraction=1.0 - busy_time(trace) / (S * makespan),
        updates=trace.n_updates,
        max_delay=max_d,
        mean_delay=mean_d,
        steady_max_delay=steady_max,
        steady_mean_delay=steady_mean,
        stage_max_drift=drift.tolist(),
        stage_max_staleness=staleness.tolist(),
        peak_versions=peak_versions(trace).tolist(),
        peak_activations=peak_activations(trace).tolist(),
    )
