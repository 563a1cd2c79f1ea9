"""Time a program (per-rank action lists) under a cost model, mini-batch after mini-batch.

Each rank runs its actions in the program's order, each as soon as its inputs
have arrived: F(c, m) after F(c-1, m), I or B of (c, m) after the input
gradient from c+1 (and after its own F, which the order puts earlier on the
same rank), W after I. A result crossing ranks pays `comm`. After its last
action of a mini-batch a rank steps each of its chunks (U); under a flush the
next mini-batch starts when every rank has stepped, otherwise each rank goes
on right after its own steps (zb-h2).

With a fixed order per rank, start times are the longest paths of a DAG, so
they do not depend on the order in which ranks are visited: the kernel runs a
rank as far as its inputs allow, parks it, and wakes it when the action it
waits for ends. Times are kept per rank; a second pass merges the ranks into
one trace in (start, rank) order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipebench.errors import InputError
from pipebench.schedules.base import PAIR, Program
from pipebench.timeline.costs import CostModel
from pipebench.timeline.simulate import _in_update_order, jitter_factor
from pipebench.timeline.trace import (
    BACKWARD,
    FORWARD,
    INPUT_GRAD,
    PAIR_BACKWARD,
    PAIR_FORWARD,
    UPDATE,
    WEIGHT_GRAD,
    Trace,
)

_OK, _DEADLOCK = 0, 1


@njit(cache=True)
def _execute(
    kind, chunk, mb, pchunk, pmb, offsets, chunk_rank, rank_chunks, rank_first,
    fcost, icost, wcost, bcost, paircost, ucost, comm, jitter, seed, G, m, flush,
):  # fmt: skip
    """Start and end of every action and step, per rank: rank r's run is rows
    base[r] + g * (L_r + v_r) + k, k < L_r its program's actions, then its v_r steps."""
    P = len(offsets) - 1
    C = len(chunk_rank)
    length = np.empty(P, np.int64)
    base = np.zeros(P + 1, np.int64)
    for r in range(P):
        length[r] = offsets[r + 1] - offsets[r] + rank_first[r + 1] - rank_first[r]
        base[r + 1] = base[r] + G * length[r]
    start = np.empty(base[P])
    end = np.empty(base[P])
    # End of F(c, m) and of the input gradient of (c, m), for the two mini-batches
    # that can be in flight at once (slot (g & 1) * m + j), tagged with g.
    fend = np.empty((C, 2 * m))
    bend = np.empty((C, 2 * m))
    ftag = np.full((C, 2 * m), -1, np.int64)
    btag = np.full((C, 2 * m), -1, np.int64)
    free = np.zeros(P)
    pos = np.zeros(P, np.int64)
    parked = np.zeros(P, np.bool_)
    stepped = np.zeros(G, np.int64)  # ranks that stepped for each mini-batch
    gate = np.zeros(G)  # when the last of them finished
    stack = np.empty(P, np.int64)
    top = 0
    for r in range(P - 1, -1, -1):
        stack[top] = r
        top += 1
        parked[r] = True  # on the stack
    while top > 0:
        top -= 1
        r = stack[top]
        parked[r] = False
        L = offsets[r + 1] - offsets[r]
        while pos[r] < G * length[r]:
            g = pos[r] // length[r]
            k = pos[r] - g * length[r]
            t = free[r]
            if k == 0 and flush and g > 0:
                if stepped[g - 1] < P:
                    break
                t = max(t, gate[g - 1])
            row = base[r] + pos[r]
            if k >= L:  # a step of one of the rank's chunks
                d = ucost[r]
                start[row] = t
                end[row] = t + d
                free[r] = t + d
                pos[r] += 1
                if k == length[r] - 1:
                    stepped[g] += 1
                    gate[g] = max(gate[g], t + d)
                    if flush and stepped[g] == P:
                        for q in range(P):
                            if q != r and not parked[q]:
                                parked[q] = True
                                stack[top] = q
                                top += 1
                continue
            a = offsets[r] + k
            kd = kind[a]
            slot = (g & 1) * m
            fwd_c = -1  # the forward computed by this action, if any
            bwd_c = -1  # the chunk whose input gradient it computes, if any
            if kd in (FORWARD, PAIR_FORWARD):
                fwd_c = chunk[a]
                if fwd_c > 0:
                    i = slot + mb[a]
                    if ftag[fwd_c - 1, i] != g:
                        break
                    hop = comm if chunk_rank[fwd_c - 1] != r else 0.0
                    t = max(t, fend[fwd_c - 1, i] + hop)
            if kd in (BACKWARD, INPUT_GRAD, PAIR_FORWARD):
                bwd_c = pchunk[a] if kd == PAIR_FORWARD else chunk[a]
                bmb = pmb[a] if kd == PAIR_FORWARD else mb[a]
                if bwd_c < C - 1:
                    i = slot + bmb
                    if btag[bwd_c + 1, i] != g:
                        break
                    hop = comm if chunk_rank[bwd_c + 1] != r else 0.0
                    t = max(t, bend[bwd_c + 1, i] + hop)
            c = chunk[a]
            gmb = g * m + mb[a]
            if kd == FORWARD:
                d = fcost[c]
            elif kd == INPUT_GRAD:
                d = icost[c]
            elif kd == WEIGHT_GRAD:
                d = wcost[c]
            elif kd == BACKWARD:
                d = bcost[c]
            else:
                d = paircost[r]
            d *= jitter_factor(jitter, seed, kd, c, gmb)
            start[row] = t
            end[row] = t + d
            free[r] = t + d
            pos[r] += 1
            if fwd_c >= 0:
                fend[fwd_c, slot + mb[a]] = t + d
                ftag[fwd_c, slot + mb[a]] = g
                if fwd_c < C - 1:
                    q = chunk_rank[fwd_c + 1]
                    if q != r and not parked[q]:
                        parked[q] = True
                        stack[top] = q
                        top += 1
            if bwd_c >= 0:
                bend[bwd_c, slot + bmb] = t + d
                btag[bwd_c, slot + bmb] = g
                if bwd_c > 0:
                    q = chunk_rank[bwd_c - 1]
                    if q != r and not parked[q]:
                        parked[q] = True
                        stack[top] = q
                        top += 1
    status = _OK
    for r in range(P):
        if pos[r] < G * length[r]:
            status = _DEADLOCK
    return status, start, end, base, length


@njit(cache=True)
def _merge(
    kind, chunk, mb, pchunk, pmb, offsets, rank_chunks, rank_first, G, m,
    start, end, base, length, n_rows, n_upd,
):  # fmt: skip
    """The trace rows: every rank's run merged in (start, rank) order; an F&B gives
    its forward row, then its backward row."""
    P = len(offsets) - 1
    o_kind = np.empty(n_rows, np.int8)
    o_stage = np.empty(n_rows, np.int16)
    o_mb = np.empty(n_rows, np.int32)
    o_start = np.empty(n_rows)
    o_end = np.empty(n_rows)
    o_v = np.empty(n_rows, np.int32)
    u_op = np.empty(n_upd, np.int64)
    u_first = np.empty(n_upd, np.int32)
    u_version = np.empty(n_upd, np.int32)
    # Tournament tree over ranks keyed by the start of each rank's next row.
    T = 1
    while T < P:
        T *= 2
    key = np.full(T, np.inf)
    win = np.empty(2 * T, np.int64)
    win[T:] = np.arange(T)
    nxt = np.zeros(P, np.int64)
    for r in range(P):
        if length[r] > 0 and G > 0:
            key[r] = start[base[r]]
    for i in range(T - 1, 0, -1):
        a = win[2 * i]
        b = win[2 * i + 1]
        win[i] = b if key[b] < key[a] else a
    row = 0
    n_u = 0
    while True:
        r = win[1]
        if key[r] == np.inf:
            break
        p = nxt[r]
        src = base[r] + p
        g = p // length[r]
        k = p - g * length[r]
        L = offsets[r + 1] - offsets[r]
        if k >= L:
            o_kind[row] = UPDATE
            o_stage[row] = rank_chunks[rank_first[r] + k - L]
            o_mb[row] = g * m + m - 1
            o_v[row] = -1
            u_op[n_u] = row
            u_first[n_u] = g * m
            u_version[n_u] = g + 1
            n_u += 1
        else:
            a = offsets[r] + k
            o_kind[row] = kind[a]
            o_stage[row] = chunk[a]
            o_mb[row] = g * m + mb[a]
            o_v[row] = g
            if kind[a] == PAIR_FORWARD:
                o_start[row] = start[src]
                o_end[row] = end[src]
                row += 1
                o_kind[row] = PAIR_BACKWARD
                o_stage[row] = pchunk[a]
                o_mb[row] = g * m + pmb[a]
                o_v[row] = g
        o_start[row] = start[src]
        o_end[row] = end[src]
        row += 1
        nxt[r] = p + 1
        key[r] = start[src + 1] if p + 1 < G * length[r] else np.inf
        i = (r + T) >> 1
        while i > 0:
            a = win[2 * i]
            b = win[2 * i + 1]
            win[i] = b if key[b] < key[a] else a
            i >>= 1
    return o_kind, o_stage, o_mb, o_start, o_end, o_v, u_op, u_first, u_version


def _per_rank(value: object, default: np.ndarray, ranks: int) -> np.ndarray:
    """A schedule's duration option (one number for every rank) or its default."""
    if isinstance(value, str):
        return default
    return np.full(ranks, float(value))


def chunk_costs(
    costs: CostModel, program: Program, weight_grad: object = "half", overlap: object = "sum"
) -> dict[str, np.ndarray]:
    """Durations per chunk: each rank's forward, backward, W and F&B split evenly over its chunks.

    `weight_grad` is the W part of a rank's backward (default half; I is the
    rest); `overlap` the time of the rank's F&B pairs (default forward +
    backward, i.e. no gain from overlapping).
    """
    P = program.ranks
    if costs.stages != P:
        raise InputError("stages", f"the program has {P} ranks, the costs {costs.stages}")
    per_rank = np.bincount(program.chunk_rank, minlength=P).astype(np.float64)
    wg = _per_rank(weight_grad, costs.backward / 2, P)
    bad = np.flatnonzero(wg >= costs.backward)
    if len(bad):
        raise InputError(
            "weight_grad",
            f"must be less than the backward ({costs.backward[bad[0]]:g} on rank {bad[0]}), "
            f"got {wg[bad[0]]:g}: the input-gradient part I = backward - W must stay > 0",
        )
    pair = _per_rank(overlap, costs.forward + costs.backward, P)
    share = per_rank[program.chunk_rank]
    return {
        "fcost": costs.forward[program.chunk_rank] / share,
        "bcost": costs.backward[program.chunk_rank] / share,
        "wcost": wg[program.chunk_rank] / share,
        "icost": (costs.backward - wg)[program.chunk_rank] / share,
        "paircost": pair / per_rank,
        "ucost": costs.update / per_rank,
    }


def execute(
    name: str,
    program: Program,
    costs: CostModel,
    microbatches: int,
    weight_grad: object = "half",
    overlap: object = "sum",
) -> Trace:
    """The trace of `program` repeated over `microbatches` (a whole number of mini-batches)."""
    m = program.microbatches
    if microbatches % m:
        raise InputError(
            "microbatches",
            f"{name} runs whole mini-batches of {m} micro-batches; give a multiple of {m}, "
            f"got {microbatches}",
        )
    clock = costs.clock_check(microbatches)
    if clock is not None:
        raise InputError(*clock)
    G = microbatches // m
    by_rank = np.argsort(program.chunk_rank, kind="stable")
    rank_first = np.concatenate([[0], np.cumsum(np.bincount(program.chunk_rank))]).astype(np.int64)
    c = chunk_costs(costs, program, weight_grad, overlap)
    p = program
    status, start, end, base, length = _execute(
        p.kind, p.chunk, p.mb, p.pair_chunk, p.pair_mb, p.offsets, p.chunk_rank, by_rank,
        rank_first, c["fcost"], c["icost"], c["wcost"], c["bcost"], c["paircost"], c["ucost"],
        costs.comm, costs.jitter, costs.seed, G, m, p.flush,
    )  # fmt: skip
    if status == _DEADLOCK:
        raise RuntimeError(f"{name}: the program stopped before every action ran (deadlock)")
    n_upd = G * p.chunks
    n_rows = G * (len(p.kind) + int(np.count_nonzero(p.kind == PAIR))) + n_upd
    kind, stage, mb, t0, t1, v, upd_op, upd_first, upd_version = _merge(
        p.kind, p.chunk, p.mb, p.pair_chunk, p.pair_mb, p.offsets, by_rank, rank_first, G, m,
        start, end, base, length, n_rows, n_upd,
    )  # fmt: skip
    upd_op, upd_first, upd_version = _in_update_order(upd_op, upd_first, upd_version, stage, t1)
    v_bwd = np.where((kind == FORWARD) | (kind == PAIR_FORWARD), -1, v).astype(np.int32)
    return Trace(
        schedule=name,
        stages=p.chunks,
        microbatches=microbatches,
        replicas=1,
        kind=kind,
        stage=stage,
        mb=mb,
        replica=np.zeros(len(kind), np.int16),
        start=t0,
        end=t1,
        v_fwd=v,
        v_bwd=v_bwd,
        upd_op=upd_op,
        upd_first=upd_first,
        upd_version=upd_version,
        chunk_rank=p.chunk_rank,
    )
