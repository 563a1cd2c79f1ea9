"""Statistics of a timeline, computed from the trace alone.

Delay is counted in block updates, the measure of the PipeDream papers
(docs/schedules.md, Statistics): number every block update in time order, k = 0, 1, ...; the
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

from pipebench.jit import njit
from pipebench.timeline.interpret import kernel_for
from pipebench.timeline.loops import smallest, total
from pipebench.timeline.trace import (
    AVERAGE,
    BACKWARD,
    FORWARD,
    INPUT_GRAD,
    PAIR_BACKWARD,
    PAIR_FORWARD,
    UPDATE,
    WEIGHT_GRAD,
    Trace,
)

# A program's F&B pair computes a forward (PAIR_FORWARD row). An activation,
# and the weight version the backward multiplies by, are released by the pass
# that sends the input gradient on: B, I, or an F&B pair's full backward. What
# W still needs after I is counted apart, as pending W's.
FORWARDS = (FORWARD, PAIR_FORWARD)
RELEASES = (BACKWARD, INPUT_GRAD, PAIR_BACKWARD)
_NEVER = np.iinfo(np.int64).max  # later than any iterate


@njit(cache=True)
def _read_iterates(
    S, R, kind, stage, mb, rep, start, v_fwd, u_stage, u_rep, u_version, u_end, reads
):
    """Fill the (M, S) table `reads` with the iterate index each F(j, m) read block j
    from, and return each update's index k."""
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
    finished = np.zeros(R, np.int64)
    p = 0
    for i in range(len(kind)):
        if kind[i] not in FORWARDS:
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
    return k_rep


def read_iterates(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Iterate index read by each F(j, m) as an (M, S) table, and each update's index k
    in its replica's numbering."""
    reads = np.empty((trace.microbatches, trace.stages), dtype=np.int64)
    k = kernel_for(_read_iterates, len(trace.kind))(
        trace.stages, trace.replicas, trace.kind, trace.stage, trace.mb, trace.replica,
        trace.start, trace.v_fwd, trace.upd_stage, trace.upd_replica, trace.upd_version,
        trace.upd_time, reads,
    )  # fmt: skip
    return reads, k


@njit(cache=True)
def _delays(reads, first, last, k):
    """Per update u, its delay: k[u] minus the oldest iterate any block was read from for
    its micro-batches first[u] .. last[u]; and per block j, the sum over updates of
    k[u] - min(reads[first[u] : last[u] + 1, j]), block j's own delay."""
    delays = np.empty(len(first), np.int64)
    sums = np.zeros(reads.shape[1], np.int64)
    for u in range(len(first)):
        oldest = _NEVER
        for j in range(reads.shape[1]):
            read = smallest(reads[first[u] : last[u] + 1, j])
            sums[j] += k[u] - read
            oldest = min(oldest, read)
        delays[u] = k[u] - oldest
    return delays, sums


def delay_tables(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Delay of every update in block updates, in update order; and per block j, the sum
    over updates of its own delay (k minus the iterate block j was read from, the oldest
    over the update's micro-batches), whose mean over updates is `stage_mean_delay`."""
    reads, k = read_iterates(trace)
    return kernel_for(_delays, len(trace.kind))(reads, trace.upd_first, trace.upd_last, k)


def update_delays(trace: Trace) -> np.ndarray:
    """Delay of every update in block updates, in update order."""
    return delay_tables(trace)[0]


def steady_updates(trace: Trace) -> np.ndarray:
    """Mask of updates whose micro-batches all lie in the steady state S <= m < M - S."""
    S, M = trace.stages, trace.microbatches
    return (trace.upd_first >= S) & (trace.upd_last < M - S)


@njit(cache=True)
def _update_staleness(S, M, kind, stage, mb, v_fwd, upd_stage, upd_first, upd_last, upd_version):
    """Per update its staleness, and per stage the largest (0 where it has no update)."""
    read = np.zeros((S, M), np.int32)
    for i in range(len(kind)):
        if kind[i] in FORWARDS:
            read[stage[i], mb[i]] = v_fwd[i]
    out = np.empty(len(upd_stage), np.int64)
    worst = np.zeros(S, np.int64)
    for u in range(len(upd_stage)):
        s = upd_stage[u]
        out[u] = upd_version[u] - 1 - smallest(read[s, upd_first[u] : upd_last[u] + 1])
        worst[s] = max(worst[s], out[u])
    return out, worst


def staleness_tables(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Per update: the stage's version before the step minus the oldest version it read;
    per stage, the largest of its updates' (0 where it has none)."""
    return kernel_for(_update_staleness, len(trace.kind))(
        trace.stages, trace.microbatches, trace.kind, trace.stage, trace.mb, trace.v_fwd,
        trace.upd_stage, trace.upd_first, trace.upd_last, trace.upd_version,
    )  # fmt: skip


def update_staleness(trace: Trace) -> np.ndarray:
    """Per update: the stage's version before the step minus the oldest version it read."""
    return staleness_tables(trace)[0]


@njit(cache=True)
def version_uses(S, R, kind, stage, replica, v_bwd, upd_stage, upd_replica):
    """The backwards that multiply by each weight version: `uses[offset[s, r] + v]` for
    version v of stage s's block in replica r (versions 0 to its last)."""
    made = np.zeros((S, R), np.int64)
    for u in range(len(upd_stage)):
        made[upd_stage[u], upd_replica[u]] += 1
    offset = np.zeros((S, R), np.int64)
    total = 0
    for s in range(S):
        for r in range(R):
            offset[s, r] = total
            total += made[s, r] + 1
    uses = np.zeros(total, np.int64)
    for i in range(len(kind)):
        if kind[i] in RELEASES:
            uses[offset[stage[i], replica[i]] + v_bwd[i]] += 1
    return offset, uses


@njit(cache=True)
def _stage_sweep(S, R, kind, stage, replica, v_fwd, v_bwd, upd_stage, upd_replica):
    """Per stage: max drift vB - vF, peak activations, peak weight versions held.

    Each stage runs one operation at a time, so walking the rows in causal
    order visits a stage's events in time order: per-stage counters give
    exact peaks without sorting. An activation is held from the start of
    F(s, m) to the end of B(s, m). A version is held from the step that makes
    it until it is superseded or its last backward ends, whichever is later.
    """
    offset, uses = version_uses(S, R, kind, stage, replica, v_bwd, upd_stage, upd_replica)
    current = np.zeros((S, R), np.int64)
    held = np.empty(S, np.int64)  # every replica's current version to start with
    peak_versions = np.empty(S, np.int64)
    for s in range(S):
        held[s] = R
        peak_versions[s] = R
    level = np.zeros(S, np.int64)
    peak_act = np.zeros(S, np.int64)
    drift = np.zeros(S, np.int64)
    for i in range(len(kind)):
        s = stage[i]
        r = replica[i]
        if kind[i] in FORWARDS:
            level[s] += 1
            peak_act[s] = max(peak_act[s], level[s])
        elif kind[i] in RELEASES:
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
def _inside_average(i, kind, rank, start, end, until, out) -> None:
    """Add to out[rank] the time each rank computes during AVG row i, counted once: only
    an overlapped AVG (localsgd's `overlap_steps`) has any, the rows after it that start
    before it ends (rows are in start order)."""
    j = i + 1
    while j < len(kind) and start[j] < min(end[i], until):
        if kind[j] != AVERAGE and kind[j] != PAIR_BACKWARD:
            out[rank[j]] += min(end[j], end[i], until) - start[j]
        j += 1


@njit(cache=True)
def _busy_time(S, kind, rank, start, end, until):
    busy = 0.0
    inside = np.zeros(S)
    for i in range(len(kind)):
        if start[i] < until and kind[i] != PAIR_BACKWARD:  # an F&B is timed by its F row
            busy += (min(end[i], until) - start[i]) * (S if kind[i] == AVERAGE else 1)
            if kind[i] == AVERAGE:
                for r in range(S):
                    inside[r] = 0.0
                _inside_average(i, kind, rank, start, end, until, inside)
                busy -= total(inside)
    return busy


def busy_time(trace: Trace, until: float = np.inf) -> float:
    """Rank-time spent working before `until`: every operation, AVG once per rank (less
    what a rank computes while an overlapped AVG runs)."""
    busy = kernel_for(_busy_time, len(trace.kind))
    return float(busy(trace.ranks, trace.kind, trace.rank, trace.start, trace.end, until))


@njit(cache=True)
def _rank_sweep(P, kind, rank, start, end):
    """Per rank: busy time, peak activations over its chunks, peak pending W's.

    Rows are in start order and a rank runs one action at a time (an F&B is
    one action written as two rows), so per-rank counters give exact peaks.
    A pending W is an I whose W has not yet run: the buffers W still needs.
    """
    busy = np.zeros(P)
    inside = np.empty(P)
    level = np.zeros(P, np.int64)
    peak = np.zeros(P, np.int64)
    pending = np.zeros(P, np.int64)
    peak_w = np.zeros(P, np.int64)
    for i in range(len(kind)):
        r = rank[i]
        if r < 0:  # AVG occupies every rank, less what it overlaps
            for q in range(P):
                inside[q] = 0.0
            _inside_average(i, kind, rank, start, end, np.inf, inside)
            for q in range(P):
                busy[q] += end[i] - start[i]
                busy[q] -= inside[q]
            continue
        k = kind[i]
        if k != PAIR_BACKWARD:
            busy[r] += end[i] - start[i]
        if k in FORWARDS:
            level[r] += 1
            peak[r] = max(peak[r], level[r])
        elif k in RELEASES:
            level[r] -= 1
        if k == INPUT_GRAD:
            pending[r] += 1
            peak_w[r] = max(peak_w[r], pending[r])
        elif k == WEIGHT_GRAD:
            pending[r] -= 1
    return busy, peak, peak_w


def iteration_time(trace: Trace) -> float | None:
    """Steady-state time per mini-batch: between rank 0's consecutive optimizer steps
    (the last of its chunks' steps for one range of micro-batches) in the middle of the
    run; None with fewer than two."""
    on_rank0 = trace.rank[trace.upd_op] == 0
    first = trace.upd_first[on_rank0]
    ends = trace.upd_time[on_rank0]
    order = np.lexsort((ends, first))
    last_of_group = np.flatnonzero(np.diff(first[order], append=-1) != 0)
    times = np.sort(ends[order][last_of_group])
    if len(times) < 2:
        return None
    k = (len(times) - 1) // 2
    return float(times[k + 1] - times[k])


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
    # Per rank (device; one per stage unless chunks share ranks), and the
    # steady-state time per mini-batch; None where they do not apply (rpd).
    ranks: int | None = None
    iteration_time: float | None = None
    rank_bubble_fraction: list[float] | None = None
    rank_peak_activations: list[int] | None = None
    rank_peak_pending_w: list[int] | None = None

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
    P = trace.ranks
    makespan = trace.makespan
    n = len(trace.kind)
    busy, rank_activations, pending_w = kernel_for(_rank_sweep, n)(
        P, trace.kind, trace.rank, trace.start, trace.end
    )
    drift, activations, versions = kernel_for(_stage_sweep, n)(
        S, trace.replicas, trace.kind, trace.stage, trace.replica, trace.v_fwd, trace.v_bwd,
        trace.upd_stage, trace.upd_replica,
    )  # fmt: skip
    staleness = staleness_tables(trace)[1]
    delays, block_sums = delay_tables(trace)
    block_means = block_sums / trace.n_updates if trace.n_updates else np.zeros(S)
    max_d, mean_d, steady_max, steady_mean = delay_summary(delays, steady_updates(trace))
    return TimelineStats(
        schedule=trace.schedule,
        stages=S,
        microbatches=trace.microbatches,
        makespan=makespan,
        bubble_fraction=1.0 - busy_time(trace) / (P * makespan),
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
        ranks=P,
        iteration_time=iteration_time(trace),
        rank_bubble_fraction=(1.0 - busy / makespan).tolist(),
        rank_peak_activations=rank_activations.tolist(),
        rank_peak_pending_w=pending_w.tolist(),
    )
