"""Discrete-event simulation of a schedule's rules under a cost model.

Greedy list scheduling in global time order: every stage has a candidate
(the earliest time it could start its next operation, and which one); a
binary heap keyed by (time, stage) picks the globally earliest, ties to the
lowest stage. Scheduling an operation only changes the candidates of its own
stage and its two neighbours (plus stage 0 when a flush opens the next
mini-batch, or every stage after an AVG), so each operation costs O(log S).

Because forwards and backwards have positive durations, nothing that is not
yet scheduled can become ready at or before the popped time, so the choice a
stage makes at that time sees everything it should.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipebench.timeline.costs import CostModel, jitter_factor
from pipebench.timeline.schedule import (
    BARRIER_AVERAGE,
    BARRIER_NONE,
    VERSIONS_CURRENT,
    VERSIONS_TWO_BW,
    Rules,
)
from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, UPDATE, Trace

_INF = np.inf
_NONE = -1
_OK, _DEADLOCK, _VERSION_NOT_READY = 0, 1, 2


@njit(cache=True)
def _before(key, a, b):
    return key[a] < key[b] or (key[a] == key[b] and a < b)


@njit(cache=True)
def _set_key(heap, pos, key, s, value):
    """Change stage s's key and restore the heap order around it."""
    n = len(heap)
    key[s] = value
    i = pos[s]
    while i > 0:  # sift up
        p = (i - 1) >> 1
        y = heap[p]
        if not _before(key, s, y):
            break
        heap[i] = y
        pos[y] = i
        i = p
    while True:  # sift down
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _before(key, heap[c + 1], heap[c]):
            c += 1
        y = heap[c]
        if not _before(key, y, s):
            break
        heap[i] = y
        pos[y] = i
        i = c
    heap[i] = s
    pos[s] = i


@njit(cache=True)
def _candidate(
    s, S, M, comm, cap, group, forwards_first, replicas, chain,
    free, next_f, next_b, inflight, pending_u, fend, bend, open_group, gate,
    ready_f, ready_b,
):  # fmt: skip
    """Earliest time stage s can start something; records when its next F and B are ready."""
    if pending_u[s] != _NONE:
        ready_f[s] = _INF
        ready_b[s] = _INF
        return free[s]
    tf = _INF
    m = next_f[s]
    if m < M and inflight[s] < cap[s]:
        if s == 0:
            if group == 0 or m // group <= open_group:
                tf = gate
        else:
            tf = fend[s - 1, m] + comm
        if chain and m >= replicas:
            tf = max(tf, bend[s, m - replicas])
    tb = _INF
    m = next_b[s]
    if m < next_f[s]:
        tb = fend[s, m]
        if s < S - 1:
            tb = max(tb, bend[s + 1, m] + comm)
        if forwards_first and next_f[s] < min((m // group + 1) * group, M):
            tb = _INF
    ready_f[s] = tf
    ready_b[s] = tb
    t = min(tf, tb)
    return _INF if t == _INF else max(free[s], t)


@njit(cache=True)
def _simulate(
    fwd, bwd, comm, upd_cost, avg_cost, jitter, seed, M,
    cap, accumulate, group, barrier, forwards_first, replicas, chain, versions, recompute,
    n_ops, n_upd,
):  # fmt: skip
    S = len(fwd)
    R = replicas
    kind = np.empty(n_ops, np.int8)
    stage = np.empty(n_ops, np.int32)
    mbs = np.empty(n_ops, np.int32)
    rep = np.empty(n_ops, np.int32)
    start = np.empty(n_ops, np.float64)
    end = np.empty(n_ops, np.float64)
    vf = np.empty(n_ops, np.int32)
    vb = np.empty(n_ops, np.int32)
    u_op = np.empty(n_upd, np.int64)
    u_first = np.empty(n_upd, np.int32)
    u_version = np.empty(n_upd, np.int32)

    fend = np.full((S, M), _INF)
    bend = np.full((S, M), _INF)
    fver = np.zeros((S, M), np.int32)
    free = np.zeros(S)
    next_f = np.zeros(S, np.int64)
    next_b = np.zeros(S, np.int64)
    inflight = np.zeros(S, np.int64)
    last_fb = np.full(S, _NONE, np.int64)
    pending_u = np.full(S, _NONE, np.int64)  # replica whose step is due, or -1
    version = np.zeros((S, R), np.int32)
    acc_count = np.zeros((S, R), np.int64)
    acc_first = np.zeros((S, R), np.int64)
    ready_f = np.empty(S)
    ready_b = np.empty(S)
    open_group = 0  # groups up to this one may enter stage 0
    gate = 0.0  # time the open group may enter
    closed = 0  # stages that have stepped for the open group's last micro-batch

    key = np.empty(S)
    heap = np.arange(S)
    pos = np.arange(S)
    for s in range(S):
        key[s] = _candidate(
            s, S, M, comm, cap, group, forwards_first, R, chain, free, next_f, next_b,
            inflight, pending_u, fend, bend, open_group, gate, ready_f, ready_b,
        )  # fmt: skip
    for s in range(S - 1, -1, -1):
        _set_key(heap, pos, key, s, key[s])

    row = 0
    n_u = 0
    status = _OK
    while True:
        s = heap[0]
        t = key[s]
        if t == _INF:
            break
        if pending_u[s] != _NONE:  # the step a backward made due; it has priority
            r = pending_u[s]
            pending_u[s] = _NONE
            version[s, r] += 1
            kind[row] = UPDATE
            stage[row] = s
            mbs[row] = acc_first[s, r] + acc_count[s, r] - 1
            rep[row] = r
            start[row] = t
            end[row] = t + upd_cost
            vf[row] = _NONE
            vb[row] = _NONE
            u_op[n_u] = row
            u_first[n_u] = acc_first[s, r]
            u_version[n_u] = version[s, r]
            last = mbs[row]
            acc_count[s, r] = 0
            free[s] = end[row]
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
                    gate = free.max()
                    if barrier == BARRIER_AVERAGE:
                        kind[row] = AVERAGE
                        stage[row] = _NONE
                        mbs[row] = _NONE
                        rep[row] = _NONE
                        start[row] = gate
                        end[row] = gate + avg_cost
                        vf[row] = _NONE
                        vb[row] = _NONE
                        gate = end[row]
                        free[:] = gate
                        row += 1
                        lo, hi = 0, S
                    else:
                        lo = 0
        else:
            do_b = ready_b[s] <= t and (last_fb[s] != BACKWARD or not ready_f[s] <= t)
            if do_b:
                m = next_b[s]
                r = m % R
                d = bwd[s] + (fwd[s] if recompute else 0.0)
                d *= jitter_factor(jitter, seed, BACKWARD, s, m)
                kind[row] = BACKWARD
                vf[row] = fver[s, m]
                vb[row] = version[s, r] if versions == VERSIONS_CURRENT else fver[s, m]
                bend[s, m] = t + d
                next_b[s] += 1
                inflight[s] -= 1
                if acc_count[s, r] == 0:
                    acc_first[s, r] = m
                acc_count[s, r] += 1
                if acc_count[s, r] == accumulate or m == M - 1:
                    pending_u[s] = r
            else:
                m = next_f[s]
                r = m % R
                d = fwd[s] * jitter_factor(jitter, seed, FORWARD, s, m)
                v = version[s, r]
                if versions == VERSIONS_TWO_BW:
                    v = max(m // accumulate - 1, 0)
                    if v > version[s, r]:
                        status = _VERSION_NOT_READY
                        break
                kind[row] = FORWARD
                vf[row] = v
                vb[row] = _NONE
                fver[s, m] = v
                fend[s, m] = t + d
                next_f[s] += 1
                inflight[s] += 1
            stage[row] = s
            mbs[row] = m
            rep[row] = r
            start[row] = t
            end[row] = t + d
            free[s] = t + d
            last_fb[s] = kind[row]
            row += 1
            lo, hi = max(s - 1, 0), min(s + 2, S)
        for j in range(lo, hi):
            kj = _candidate(
                j, S, M, comm, cap, group, forwards_first, R, chain, free, next_f, next_b,
                inflight, pending_u, fend, bend, open_group, gate, ready_f, ready_b,
            )  # fmt: skip
            _set_key(heap, pos, key, j, kj)

    if status == _OK and np.any(next_b != M):
        status = _DEADLOCK
    return status, row, n_u, kind, stage, mbs, rep, start, end, vf, vb, u_op, u_first, u_version


def simulate(name: str, rules: Rules, costs: CostModel, microbatches: int) -> Trace:
    """Run the event simulation of `rules` for `microbatches` micro-batches."""
    stages = costs.stages
    if rules.replicas > 1 and rules.accumulate != 1:
        raise ValueError("replicas step after every backward: accumulate must be 1")
    n_upd = stages * math.ceil(microbatches / rules.accumulate)
    n_avg = math.ceil(microbatches / rules.group) if rules.barrier == BARRIER_AVERAGE else 0
    n_ops = 2 * stages * microbatches + n_upd + n_avg
    with np.errstate(over="ignore"):  # the jitter hash wraps on purpose without the JIT
        status, n_rows, n_u, *arrays = _simulate(
            costs.forward, costs.backward, costs.comm, costs.update, costs.allreduce,
            costs.jitter, costs.seed, microbatches,
            rules.cap, rules.accumulate, rules.group, rules.barrier, rules.forwards_first,
            rules.replicas, rules.chain_replicas, rules.versions, rules.recompute,
            n_ops, n_upd,
        )  # fmt: skip
    if status == _DEADLOCK:
        raise RuntimeError(f"{name}: the simulation stopped before every micro-batch finished")
    if status == _VERSION_NOT_READY:
        raise RuntimeError(f"{name}: a forward needed a weight version not produced yet")
    assert n_rows == n_ops and n_u == n_upd, (n_rows, n_ops, n_u, n_upd)
    kind, stage, mb, replica, start, end, v_fwd, v_bwd, upd_op, upd_first, upd_version = arrays
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
        upd_stage=stage[upd_op],
        upd_replica=replica[upd_op],
        upd_first=upd_first,
        upd_last=mb[upd_op],
        upd_version=upd_version,
    )
