"""Discrete-event simulation of a schedule's rules under a cost model.

Greedy list scheduling in global time order: every stage has a candidate
(the earliest time it could start its next operation, and which one); a
tournament tree keyed by (time, stage) picks the globally earliest, ties to the
lowest stage. Scheduling an operation only changes the candidates of its own
stage and one neighbour (plus stage 0 when a flush opens the next
mini-batch, or every stage after an AVG), so each operation costs O(log S).

Because forwards and backwards have positive durations, nothing that is not
yet scheduled can become ready at or before the popped time, so the choice a
stage makes at that time sees everything it should.
"""

from __future__ import annotations

import math

import numpy as np

from pipebench.errors import InputError
from pipebench.hashrng import uniform01
from pipebench.jit import njit
from pipebench.timeline.costs import CostModel
from pipebench.timeline.interpret import kernel_for
from pipebench.timeline.loops import largest
from pipebench.timeline.schedule import (
    BARRIER_AVERAGE,
    BARRIER_NONE,
    VERSIONS_CURRENT,
    VERSIONS_TWO_BW,
    Rules,
)
from pipebench.timeline.tournament import new_tree, set_key
from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, UPDATE, Trace

_INF = np.inf
_NONE = -1
_OK, _DEADLOCK, _VERSION_NOT_READY = 0, 1, 2
# The kinds as int64 scalars, not int literals: numba compiles a called kernel once per
# literal argument (`uniform01` once per kind, the jitter's stream).
_F, _B = np.int64(FORWARD), np.int64(BACKWARD)


@njit(cache=True)
def jitter_factor(jitter: float, seed: int, kind: int, stage: int, mb: int) -> float:
    """Multiplicative factor uniform in [1 - jitter, 1 + jitter] for one operation."""
    if jitter == 0.0:
        return 1.0
    return 1.0 + jitter * (2.0 * uniform01(seed, kind, stage, mb) - 1.0)


@njit(cache=True)
def _simulate(
    fwd, bwd, comm, upd_cost, avg_cost, jitter, seed, M,
    cap, accumulate, group, barrier, forwards_first, replicas, chain, versions, recompute,
    overlap, fragments, n_ops, n_upd,
):  # fmt: skip
    """`overlap` (streaming DiLoCo's τ): the AVG does not hold the next round back; the
    τ-th step after it of each stage it syncs (round k: s mod `fragments` = k mod
    `fragments`), in each replica, starts no earlier than its end."""
    # One function on purpose: numba pays a reference-count round trip for
    # every array handed to a helper, which would triple the cost per operation.
    S = len(fwd)
    R = replicas
    kind = np.empty(n_ops, np.int8)
    stage = np.empty(n_ops, np.int16)
    mbs = np.empty(n_ops, np.int32)
    rep = np.empty(n_ops, np.int16)
    start = np.empty(n_ops, np.float64)
    end = np.empty(n_ops, np.float64)
    vf = np.empty(n_ops, np.int32)
    vb = np.empty(n_ops, np.int32)
    u_op = np.empty(n_upd, np.int64)
    u_first = np.empty(n_upd, np.int32)
    u_version = np.empty(n_upd, np.int32)

    # End of F(s, m) and B(s, m), and the version F(s, m) read, in ring buffers
    # indexed by m & (W - 1): a stage never looks further back than its
    # in-flight cap plus the replica count, so W larger than both is enough.
    W = 1
    while largest(cap) + R + 2 > W:
        W *= 2
    ring = W - 1
    fend = np.empty((S, W))
    bend = np.empty((S, W))
    fver = np.zeros((S, W), np.int32)
    free = np.zeros(S)  # when each stage finishes its last operation
    next_f = np.zeros(S, np.int64)  # forwards and backwards run in micro-batch order
    next_b = np.zeros(S, np.int64)
    inflight = np.zeros(S, np.int64)
    last_fb = np.empty(S, np.int64)
    pending_u = np.empty(S, np.int64)  # replica whose step is due, or -1
    ready_f = np.empty(S)  # when the stage's next F and B are ready
    ready_b = np.empty(S)
    for j in range(S):  # loops, not np.full: each array implementation compiles apart
        last_fb[j] = _NONE
        pending_u[j] = _NONE
        ready_f[j] = _INF
        ready_b[j] = _INF
    version = np.zeros((S, R), np.int32)
    acc_count = np.zeros((S, R), np.int64)
    acc_first = np.zeros((S, R), np.int64)
    open_group = 0  # groups up to this one may enter stage 0
    gate = 0.0  # when the open group may enter
    closed = 0  # stages that have stepped for the open group's last micro-batch
    merge_left = np.zeros((S, R), np.int64)  # steps until the overlapped AVG is merged
    avg_end = 0.0
    rounds = 0

    # Tournament tree over stages by (key, stage), key = earliest start of the
    # stage's next operation.
    key, win = new_tree(S)

    row = 0
    n_u = 0
    status = _OK
    lo, hi = 0, S  # stages whose candidate must be recomputed
    while True:
        for j in range(lo, hi):
            if pending_u[j] != _NONE:  # a due step goes first
                tf = _INF
                tb = _INF
                kj = free[j]
                if merge_left[j, pending_u[j]] == 1:  # it merges the average: wait for it
                    kj = max(kj, avg_end)
            else:
                tf = _INF
                m = next_f[j]
                if m < M and inflight[j] < cap[j]:
                    if j > 0:
                        if next_f[j - 1] > m:
                            tf = fend[j - 1, m & ring] + comm
                    elif group == 0 or m // group <= open_group:
                        tf = gate
                    if chain and m >= R:
                        tf = max(tf, bend[j, (m - R) & ring] if next_b[j] > m - R else _INF)
                tb = _INF
                m = next_b[j]
                if m < next_f[j]:
                    tb = fend[j, m & ring]
                    if j < S - 1:
                        tb = max(tb, bend[j + 1, m & ring] + comm if next_b[j + 1] > m else _INF)
                    if forwards_first and next_f[j] < min((m // group + 1) * group, M):
                        tb = _INF
                kj = min(tf, tb)
                if kj < _INF:
                    kj = max(kj, free[j])
            ready_f[j] = tf
            ready_b[j] = tb
            if kj != key[j]:
                set_key(key, win, j, kj)

        s = win[1]
        t = key[s]
        if t == _INF:
            break
        if pending_u[s] != _NONE:
            r = pending_u[s]
            pending_u[s] = _NONE
            if merge_left[s, r] > 0:
                merge_left[s, r] -= 1
            version[s, r] += 1
            last = acc_first[s, r] + acc_count[s, r] - 1
            kind[row] = UPDATE
            stage[row] = s
            mbs[row] = last
            rep[row] = r
            start[row] = t
            end[row] = t + upd_cost
            vf[row] = _NONE
            vb[row] = _NONE
            u_op[n_u] = row
            u_first[n_u] = acc_first[s, r]
            u_version[n_u] = version[s, r]
            acc_count[s, r] = 0
            free[s] = t + upd_cost
            row += 1
            n_u += 1
            lo, hi = s, s + 1
            if barrier != BARRIER_NONE and last == min((open_group + 1) * group, M) - 1:
                # Steps are due in micro-batch order at each stage, so once every
                # stage has stepped for the group's last micro-batch, the group is done.
                closed += 1
                if closed == S:
                    closed = 0
                    open_group += 1
                    gate = largest(free)
                    if barrier == BARRIER_AVERAGE:
                        kind[row] = AVERAGE
                        stage[row] = _NONE
                        mbs[row] = _NONE
                        rep[row] = _NONE
                        start[row] = gate
                        end[row] = gate + avg_cost
                        vf[row] = _NONE
                        vb[row] = _NONE
                        avg_end = gate + avg_cost
                        if overlap == 0:
                            gate = avg_end
                            for j in range(S):
                                free[j] = gate
                        else:
                            for j in range(rounds % fragments, S, fragments):
                                for q in range(R):
                                    merge_left[j, q] = overlap
                        rounds += 1
                        row += 1
                        lo, hi = 0, S
                    else:
                        lo = 0
            continue
        if ready_b[s] <= t and (last_fb[s] != BACKWARD or not ready_f[s] <= t):
            m = next_b[s]
            r = m % R
            d = bwd[s] + (fwd[s] if recompute else 0.0)
            d *= jitter_factor(jitter, seed, _B, s, m)
            kind[row] = BACKWARD
            vf[row] = fver[s, m & ring]
            vb[row] = version[s, r] if versions == VERSIONS_CURRENT else fver[s, m & ring]
            bend[s, m & ring] = t + d
            next_b[s] += 1
            inflight[s] -= 1
            if acc_count[s, r] == 0:
                acc_first[s, r] = m
            acc_count[s, r] += 1
            if acc_count[s, r] == accumulate or m == M - 1:
                pending_u[s] = r
            lo = max(s - 1, 0)  # a backward can make the previous stage's backward ready
            hi = s + 1
        else:
            m = next_f[s]
            r = m % R
            d = fwd[s] * jitter_factor(jitter, seed, _F, s, m)
            v = version[s, r]
            if versions == VERSIONS_TWO_BW:
                v = max(m // accumulate - 1, 0)
                if v > version[s, r]:
                    status = _VERSION_NOT_READY
                    break
            kind[row] = FORWARD
            vf[row] = v
            vb[row] = _NONE
            fver[s, m & ring] = v
            fend[s, m & ring] = t + d
            next_f[s] += 1
            inflight[s] += 1
            lo = s  # a forward can make the next stage's forward ready
            hi = min(s + 2, S)
        stage[row] = s
        mbs[row] = m
        rep[row] = r
        start[row] = t
        end[row] = t + d
        free[s] = t + d
        last_fb[s] = kind[row]
        row += 1

    if status == _OK:
        for j in range(S):
            if next_b[j] != M:
                status = _DEADLOCK
    return status, row, n_u, kind, stage, mbs, rep, start, end, vf, vb, u_op, u_first, u_version


def in_update_order(upd_op, upd_first, upd_version, stage, end):
    """The update rows ordered by (end, stage), the global order of block updates.

    Steps are scheduled in (start, stage) order, which is the same unless
    rounding makes two steps that start 1 ulp apart end at the same time;
    checking costs one pass, sorting only happens then.
    """
    t, s = end[upd_op], stage[upd_op]
    if np.all((t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (s[1:] > s[:-1]))):
        return upd_op, upd_first, upd_version
    order = np.lexsort((s, t))
    return upd_op[order], upd_first[order], upd_version[order]


def simulate(name: str, rules: Rules, costs: CostModel, microbatches: int) -> Trace:
    """Run the event simulation of `rules` for `microbatches` micro-batches."""
    stages = costs.stages
    clock = costs.clock_check(microbatches, rules.recompute)
    if clock is not None:
        raise InputError(*clock)
    if rules.replicas > 1 and rules.accumulate != 1:
        raise ValueError("replicas step after every backward: accumulate must be 1")
    n_upd = stages * math.ceil(microbatches / rules.accumulate)
    n_avg = math.ceil(microbatches / rules.group) if rules.barrier == BARRIER_AVERAGE else 0
    n_ops = 2 * stages * microbatches + n_upd + n_avg
    # A stage never holds more than every micro-batch: the ring buffers need no more
    # (a mini-batch of 10^12 in a run of 20 micro-batches is 20).
    cap = np.minimum(np.asarray(rules.cap, dtype=np.int64), microbatches)
    status, n_rows, n_u, *arrays = kernel_for(_simulate, n_ops)(
        np.asarray(costs.forward), np.asarray(costs.backward), costs.comm, costs.update,
        costs.allreduce * rules.avg_share, costs.jitter, costs.seed, microbatches,
        cap, rules.accumulate, rules.group, rules.barrier, rules.forwards_first,
        rules.replicas, rules.chain_replicas, rules.versions, rules.recompute,
        rules.avg_overlap, rules.avg_fragments, n_ops, n_upd,
    )  # fmt: skip
    if status == _DEADLOCK:
        raise RuntimeError(f"{name}: the simulation stopped before every micro-batch finished")
    if status == _VERSION_NOT_READY:
        raise RuntimeError(f"{name}: a forward needed a weight version not produced yet")
    assert n_rows == n_ops and n_u == n_upd, (n_rows, n_ops, n_u, n_upd)
    kind, stage, mb, replica, start, end, v_fwd, v_bwd, upd_op, upd_first, upd_version = arrays
    upd_op, upd_first, upd_version = in_update_order(upd_op, upd_first, upd_version, stage, end)
    return Trace(
        schedule=name,
        stages=stages,
        microbatches=microbatches,
        replicas=rules.replicas,
        kind=kind,
        stage=stage,
        mb=mb,
        replica=replica,
        start=start,
        end=end,
        v_fwd=v_fwd,
        v_bwd=v_bwd,
        upd_op=upd_op,
        upd_first=upd_first,
        upd_version=upd_version,
        recompute=rules.recompute,
    )
