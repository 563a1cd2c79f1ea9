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

Two means are reported: `mean_delay`, the mean over updates of that maximum,
and `mean_block_delay`, the mean over (update, block) pairs of block j's
delay, which is what the Randomized PipeDream paper calls the mean delay
(about S^2/2 for pd, where the maximum is floor(S^2 - S/2)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from numba import njit

from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, UPDATE, Trace


@njit(cache=True)
def _read_iterates(
    S, R, kind, stage, mb, rep, start, v_fwd, u_stage, u_rep, u_version, u_end, reads
):
    """Fill `reads` with the iterate index each F(j, m) read block j from, and return
    each update's index k. `reads` is (M, S), or (M, 1) to keep only the minimum over j."""
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
    keep_all = reads.shape[1] > 1
    if not keep_all:
        reads[:] = np.iinfo(np.int64).max
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
        if keep_all:
            reads[mb[i], j] = n
        else:
            reads[mb[i], 0] = min(reads[mb[i], 0], n)
    return k_rep


def read_iterates(trace: Trace, per_block: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Iterate index read by each F(j, m) as an (M, S) table (or (M, 1): the minimum
    over blocks), and each update's index k in its replica's numbering."""
    reads = np.empty((trace.microbatches, trace.stages if per_block else 1), dtype=np.int64)
    k = _read_iterates(
        trace.stages, trace.replicas, trace.kind, trace.stage, trace.mb, trace.replica,
        trace.start, trace.v_fwd, trace.upd_stage, trace.upd_replica, trace.upd_version,
        trace.upd_time, reads,
    )  # fmt: skip
    return reads, k


@njit(cache=True)
def _range_min(values, first, last):
    """min(values[first[i] : last[i] + 1]) for every i."""
    out = np.empty(len(first), values.dtype)
    for i in range(len(first)):
        out[i] = values[first[i] : last[i] + 1].min()
    return out


def update_delays(trace: Trace) -> np.ndarray:
    """Delay of every update in block updates, in update order."""
    oldest, k = read_iterates(trace, per_block=False)
    return k - _range_min(oldest[:, 0], trace.upd_first, trace.upd_last)


@njit(cache=True)
def _block_delay_sums(reads, first, last, k):
    """Per block j, the sum over updates u of k[u] - min(reads[first[u] : last[u] + 1, j])."""
    out = np.zeros(reads.shape[1], np.int64)
    for u in range(len(first)):
        for j in range(reads.shape[1]):
            out[j] += k[u] - reads[first[u] : last[u] + 1, j].min()
    return out


def block_delay_means(trace: Trace) -> np.ndarray:
    """Per block j, its mean delay over updates: k minus the iterate block j was read
    from (the oldest over the update's micro-batches). Their mean is `mean_block_delay`."""
    if trace.n_updates == 0:
        return np.zeros(trace.stages)
    reads, k = read_iterates(trace, per_block=True)
    return _block_delay_sums(reads, trace.upd_first, trace.upd_last, k) / trace.n_updates


def steady_updates(trace: Trace) -> np.ndarray:
    """Mask of updates whose micro-batches all lie in the steady state S <= m < M - S."""
    S, M = trace.stages, trace.microbatches
    return (trace.upd_first >= S) & (trace.upd_last < M - S)


@njit(cache=True)
def _update_staleness(S, M, kind, stage, mb, v_fwd, upd_stage, upd_first, upd_last, upd_version):
    read = np.zeros((S, M), np.int32)
    for i in range(len(kind)):
        if kind[i] == FORWARD:
            read[stage[i], mb[i]] = v_fwd[i]
    out = np.empty(len(upd_stage), np.int64)
    for u in range(len(upd_stage)):
        s = upd_stage[u]
        out[u] = upd_version[u] - 1 - read[s, upd_first[u] : upd_last[u] + 1].min()
    return out


def update_staleness(trace: Trace) -> np.ndarray:
    """Per update: the stage's version before the step minus the oldest version it read."""
    return _update_staleness(
        trace.stages, trace.microbatches, trace.kind, trace.stage, trace.mb, trace.v_fwd,
        trace.upd_stage, trace.upd_first, trace.upd_last, trace.upd_version,
    )  # fmt: skip


@njit(cache=True)
def _stage_sweep(S, R, kind, stage, replica, v_fwd, v_bwd, upd_stage, upd_replica):
    """Per stage: max drift vB - vF, peak activations, peak weight versions held.

    Each stage runs one operation at a time, so walking the rows in causal
    order visits a stage's events in time order: per-stage counters give
    exact peaks without sorting. An activation is held from the start of
    F(s, m) to the end of B(s, m). A version is held from the step that makes
    it until it is superseded or its last backward ends, whichever is later.
    """
    made = np.zeros((S, R), np.int64)
    for u in range(len(upd_stage)):
        made[upd_stage[u], upd_replica[u]] += 1
    offset = np.zeros((S, R), np.int64)
    total = 0
    for s in range(S):
        for r in range(R):
            offset[s, r] = total
            total += made[s, r] + 1
    uses = np.zeros(total, np.int64)  # backwards still to multiply by each version
    for i in range(len(kind)):
        if kind[i] == BACKWARD:
            uses[offset[stage[i], replica[i]] + v_bwd[i]] += 1
    current = np.zeros((S, R), np.int64)
    held = np.full(S, R, np.int64)
    peak_versions = np.full(S, R, np.int64)
    level = np.zeros(S, np.int64)
    peak_act = np.zeros(S, np.int64)
    drift = np.zeros(S, np.int64)
    for i in range(len(kind)):
        s = stage[i]
        r = replica[i]
        if kind[i] == FORWARD:
            level[s] += 1
            peak_act[s] = max(peak_act[s], level[s])
        elif kind[i] == BACKWARD:
            level[s] -= 1
            drift[s] = max(drift[s], v_bwd[i] - v_fwd[i])
            v = offset[s, r] + v_bwd[i]
            uses[v] -= 1
            if uses[v] == 0 and v_bwd[i] != current[s, r]:
                held[s] -= 1
        elif kind[i] == UPDATE:
            old = offset[s, r] + current[s, r]
            current[s, r] += 1
            if uses[old] > 0:  # still stashed for a backward: both copies are held
                held[s] += 1
                peak_versions[s] = max(peak_versions[s], held[s])
    return drift, peak_act, peak_versions


@njit(cache=True)
def _busy_time(S, kind, start, end, until):
    busy = 0.0
    for i in range(len(kind)):
        if start[i] < until:
            busy += (min(end[i], until) - start[i]) * (S if kind[i] == AVERAGE else 1)
    return busy


def busy_time(trace: Trace, until: float = np.inf) -> float:
    """Stage-time spent working before `until`: every F, B and U, and AVG once per stage."""
    return float(_busy_time(trace.stages, trace.kind, trace.start, trace.end, until))


@njit(cache=True)
def _max_by(group, values, n):
    """out[g] = max of values where group == g (0 where there are none)."""
    out = np.zeros(n, np.int64)
    for i in range(len(group)):
        out[group[i]] = max(out[group[i]], values[i])
    return out


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
    mean_block_delay: float  # over (update, block) pairs: the mean of stage_mean_delay
    steady_max_delay: int | None
    steady_mean_delay: float | None
    stage_max_drift: list[int]
    stage_max_staleness: list[int]
    stage_mean_delay: list[float]  # per block, its own delay's mean over updates
    peak_versions: list[int]
    peak_activations: list[int] | None
    # updates with each delay (index = delay in block updates): the histogram
    # behind max and mean; left out of `as_dict`, which is what --json prints
    delay_counts: np.ndarray = field(repr=False, compare=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "delay_counts"}


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
    drift, activations, versions = _stage_sweep(
        S, trace.replicas, trace.kind, trace.stage, trace.replica, trace.v_fwd, trace.v_bwd,
        trace.upd_stage, trace.upd_replica,
    )  # fmt: skip
    staleness = _max_by(trace.upd_stage, update_staleness(trace), S)
    delays = update_delays(trace)
    block_means = block_delay_means(trace)
    max_d, mean_d, steady_max, steady_mean = delay_summary(delays, steady_updates(trace))
    return TimelineStats(
        schedule=trace.schedule,
        stages=S,
        microbatches=trace.microbatches,
        makespan=makespan,
        bubble_fraction=1.0 - busy_time(trace) / (S * makespan),
        updates=trace.n_updates,
        max_delay=max_d,
        mean_delay=mean_d,
        mean_block_delay=float(block_means.mean()),
        steady_max_delay=steady_max,
        steady_mean_delay=steady_mean,
        stage_max_drift=drift.tolist(),
        stage_max_staleness=staleness.tolist(),
        stage_mean_delay=block_means.tolist(),
        peak_versions=versions.tolist(),
        peak_activations=activations.tolist(),
        delay_counts=np.bincount(delays),
    )
