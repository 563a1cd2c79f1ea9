"""Time a program (per-rank action lists) under a cost model, mini-batch after mini-batch.

Each rank runs its actions in the program's order, each as soon as its inputs
have arrived: F(c, m) after F(c-1, m), I or B of (c, m) after the input
gradient from c+1 (and after its own F, which the order puts earlier on the
same rank), W after I. A result crossing ranks pays `comm`. After its last
action of a mini-batch a rank steps each of its chunks (U); under a flush the
next mini-batch starts when every rank has stepped, otherwise each rank goes
on right after its own steps (zb-h2).

The kernel works in global time order, as the greedy simulator does: a
tournament tree over ranks keyed by (start of the rank's next action, rank),
inf while that action waits for an input or the flush, picks the next action
to run, so rows come out in start order, ties to the lowest rank. Running an
action changes the key of its own rank and at most the two ranks holding the
neighbouring chunks (every rank when a flush opens), O(log p) per action.
Every action waits only for actions that end after they start (a step may take
no time, but only a flush waits for it), so nothing unscheduled can start before the popped
time.
"""

from __future__ import annotations

import numpy as np

from pipebench.errors import InputError
from pipebench.jit import njit
from pipebench.schedules.base import PAIR, Program
from pipebench.timeline.costs import CostModel
from pipebench.timeline.interpret import kernel_for
from pipebench.timeline.simulate import in_update_order, jitter_factor
from pipebench.timeline.tournament import new_tree, set_key
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
    n_rows, n_upd,
):  # fmt: skip
    # One function on purpose, as in simulate.py: numba pays a reference-count
    # round trip for every array handed to a helper.
    P = len(offsets) - 1
    C = len(chunk_rank)
    o_kind = np.empty(n_rows, np.int8)
    o_stage = np.empty(n_rows, np.int16)
    o_mb = np.empty(n_rows, np.int32)
    o_start = np.empty(n_rows)
    o_end = np.empty(n_rows)
    o_v = np.empty(n_rows, np.int32)  # version read: by F and by the backward passes
    o_vb = np.empty(n_rows, np.int32)  # version a backward pass multiplies by (-1 on F, U)
    u_op = np.empty(n_upd, np.int64)
    u_first = np.empty(n_upd, np.int32)
    u_version = np.empty(n_upd, np.int32)
    # A rank's run: mini-batch after mini-batch, its program's actions, then one
    # step per chunk it holds; rank r is at action `at[r]` of mini-batch `batch[r]`.
    length = np.empty(P, np.int64)
    for r in range(P):
        length[r] = offsets[r + 1] - offsets[r] + rank_first[r + 1] - rank_first[r]
    # End of F(c, m) and of the input gradient of (c, m), for the two mini-batches
    # that can be in flight at once (slot (g & 1) * m + j), tagged with g.
    fend = np.empty((C, 2 * m))
    bend = np.empty((C, 2 * m))
    ftag = np.empty((C, 2 * m), np.int64)
    btag = np.empty((C, 2 * m), np.int64)
    for c in range(C):  # loops, not np.full: each array implementation compiles apart
        for i in range(2 * m):
            ftag[c, i] = -1
            btag[c, i] = -1
    free = np.zeros(P)
    batch = np.zeros(P, np.int64)
    at = np.zeros(P, np.int64)
    stepped = np.zeros(G, np.int64)  # ranks that stepped for each mini-batch
    gate = np.zeros(G)  # when the last of them finished
    # Tournament tree over ranks by (start of the rank's next action, rank); a
    # rank waiting for an input or for the flush has key inf.
    key, win = new_tree(P)
    dirty = np.empty(P + 2, np.int64)  # ranks whose key must be recomputed
    n_dirty = P
    for r in range(P):
        dirty[r] = r
    row = 0
    n_u = 0
    while True:
        for q in range(n_dirty):
            r = dirty[q]
            kr = np.inf
            if batch[r] < G:
                g = batch[r]
                k = at[r]
                kr = free[r]
                if k == 0 and flush and g > 0:
                    kr = max(kr, gate[g - 1]) if stepped[g - 1] == P else np.inf
                if kr < np.inf and k < offsets[r + 1] - offsets[r]:
                    a = offsets[r] + k
                    kd = kind[a]
                    slot = (g & 1) * m
                    c = chunk[a]
                    if kd in (FORWARD, PAIR_FORWARD) and c > 0:
                        i = slot + mb[a]
                        if ftag[c - 1, i] != g:
                            kr = np.inf
                        else:
                            hop = comm if chunk_rank[c - 1] != r else 0.0
                            kr = max(kr, fend[c - 1, i] + hop)
                    if kd == PAIR_FORWARD:
                        c = pchunk[a]
                        i = slot + pmb[a]
                    else:
                        i = slot + mb[a]
                    if kd in (BACKWARD, INPUT_GRAD, PAIR_FORWARD) and c < C - 1:
                        if btag[c + 1, i] != g:
                            kr = np.inf
                        else:
                            hop = comm if chunk_rank[c + 1] != r else 0.0
                            kr = max(kr, bend[c + 1, i] + hop)
            if kr != key[r]:
                set_key(key, win, r, kr)
        r = win[1]
        t = key[r]
        if t == np.inf:
            break
        g = batch[r]
        k = at[r]
        L = offsets[r + 1] - offsets[r]
        at[r] += 1
        if at[r] == length[r]:
            at[r] = 0
            batch[r] += 1
        dirty[0] = r
        n_dirty = 1
        if k >= L:  # a step of one of the rank's chunks
            d = ucost[r]
            o_kind[row] = UPDATE
            o_stage[row] = rank_chunks[rank_first[r] + k - L]
            o_mb[row] = g * m + m - 1
            o_v[row] = -1
            o_vb[row] = -1
            u_op[n_u] = row
            u_first[n_u] = g * m
            u_version[n_u] = g + 1
            n_u += 1
            if k == length[r] - 1:
                stepped[g] += 1
                gate[g] = max(gate[g], t + d)
                if flush and stepped[g] == P:
                    n_dirty = P
                    for q in range(P):
                        dirty[q] = q
        else:
            a = offsets[r] + k
            kd = kind[a]
            c = chunk[a]
            slot = (g & 1) * m
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
            d *= jitter_factor(jitter, seed, kd, c, g * m + mb[a])
            o_kind[row] = kd
            o_stage[row] = c
            o_mb[row] = g * m + mb[a]
            o_v[row] = g
            o_vb[row] = -1 if kd in (FORWARD, PAIR_FORWARD) else g
            if kd in (FORWARD, PAIR_FORWARD):
                fend[c, slot + mb[a]] = t + d
                ftag[c, slot + mb[a]] = g
                if c < C - 1 and chunk_rank[c + 1] != r:
                    dirty[n_dirty] = chunk_rank[c + 1]
                    n_dirty += 1
            if kd == PAIR_FORWARD:  # its backward half: a row of its own, same span
                o_start[row] = t
                o_end[row] = t + d
                row += 1
                c = pchunk[a]
                o_kind[row] = PAIR_BACKWARD
                o_stage[row] = c
                o_mb[row] = g * m + pmb[a]
                o_v[row] = g
                o_vb[row] = g
                i = slot + pmb[a]
            else:
                i = slot + mb[a]
            if kd in (BACKWARD, INPUT_GRAD, PAIR_FORWARD):
                bend[c, i] = t + d
                btag[c, i] = g
                if c > 0 and chunk_rank[c - 1] != r:
                    dirty[n_dirty] = chunk_rank[c - 1]
                    n_dirty += 1
        o_start[row] = t
        o_end[row] = t + d
        free[r] = t + d
        row += 1
    status = _OK if row == n_rows else _DEADLOCK
    return status, o_kind, o_stage, o_mb, o_start, o_end, o_v, o_vb, u_op, u_first, u_version


def _per_rank(value: object, default: np.ndarray, cost: np.ndarray, slowdown: np.ndarray):
    """A schedule's duration option, or its default, on every rank.

    The one number is given for a rank of the typical `cost` (the mean of the
    costs given, before the straggler's slow-down; exactly the one cost when
    one was given) and scales with each rank's cost, the straggler's included.
    """
    if isinstance(value, str):
        return default
    given = cost / slowdown
    typical = given[0] if np.all(given == given[0]) else given.mean()
    return float(value) * (cost / typical)


def chunk_costs(
    costs: CostModel, program: Program, weight_grad: object = "half", overlap: object = "sum"
) -> dict[str, np.ndarray]:
    """Durations per chunk: each rank's forward, backward, W and F&B split evenly over its chunks.

    `weight_grad` is the W part of a rank's backward (default: the cost
    model's, else half; I is the rest); `overlap` the time of the rank's F&B
    pairs (default forward + backward, i.e. no gain from overlapping). Both,
    given as one number, scale with each rank's backward (forward + backward)
    like a straggler's passes.
    """
    P = program.ranks
    if costs.stages != P:
        raise InputError("stages", f"the program has {P} ranks, the costs {costs.stages}")
    per_rank = np.bincount(program.chunk_rank, minlength=P).astype(np.float64)
    slow = np.asarray(costs.slowdown)
    forward, backward = np.asarray(costs.forward), np.asarray(costs.backward)
    default = backward / 2 if costs.weight_grad is None else np.asarray(costs.weight_grad)
    wg = _per_rank(weight_grad, default, backward, slow)
    bad = np.flatnonzero(wg >= backward)
    if len(bad):
        raise InputError(
            "weight_grad",
            f"must be less than the backward ({backward[bad[0]]:g} on rank {bad[0]}), "
            f"got {wg[bad[0]]:g} there: the input-gradient part I = backward - W must stay > 0",
        )
    both = forward + backward
    pair = _per_rank(overlap, both, both, slow)
    share = per_rank[program.chunk_rank]
    return {
        "fcost": forward[program.chunk_rank] / share,
        "bcost": backward[program.chunk_rank] / share,
        "wcost": wg[program.chunk_rank] / share,
        "icost": (backward - wg)[program.chunk_rank] / share,
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
    n_upd = G * p.chunks
    n_rows = G * (len(p.kind) + int(np.count_nonzero(p.kind == PAIR))) + n_upd
    run = kernel_for(_execute, n_rows)
    status, kind, stage, mb, t0, t1, v, v_bwd, upd_op, upd_first, upd_version = run(
        p.kind, p.chunk, p.mb, p.pair_chunk, p.pair_mb, p.offsets, p.chunk_rank, by_rank,
        rank_first, c["fcost"], c["icost"], c["wcost"], c["bcost"], c["paircost"], c["ucost"],
        costs.comm, costs.jitter, costs.seed, G, m, p.flush, n_rows, n_upd,
    )  # fmt: skip
    if status == _DEADLOCK:
        raise RuntimeError(f"{name}: the program stopped before every action ran (deadlock)")
    upd_op, upd_first, upd_version = in_update_order(upd_op, upd_first, upd_version, stage, t1)
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
