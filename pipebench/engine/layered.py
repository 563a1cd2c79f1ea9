"""The replay of layered objectives: activations flow from stage to stage.

The walk over the trace is that of `replay.py`; what differs is the work of
F and B. F(s, m) runs stage s at version vF on the input stage s-1 handed
over, keeps what its backward needs (one slot per micro-batch in flight)
and hands its output on. B(s, m) multiplies by version vB: the stashed
weights for pd and 2bw (vB = vF), the current ones for paci, which reuses
the forward's saved activations, or recomputes them first with the current
weights when `recompute` is set. Loss samples run the whole model at the
visible weights on the objective's fixed evaluation set.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipebench.engine.iterates import keep_checkpoint, new_checkpoints, versions_read
from pipebench.engine.operations import average_replicas, diverged, step_stage, steps_running
from pipebench.engine.recorder import visible_model
from pipebench.engine.staleness import stage_delays
from pipebench.objectives.blocklinear import draw_rows
from pipebench.objectives.layered import Layered, eval_loss, stage_backward, stage_forward
from pipebench.optim.corrections import (
    compensate,
    correction_buffers,
    pipemare_factor,
    predicted,
    remember_update,
    rescale_update,
)
from pipebench.optim.diloco import outer_state, synchronise
from pipebench.optim.step import DC, DELAY_LR, DELAY_LR_WARMUP, OUTER_LR, PREDICT, apply_step
from pipebench.timeline.rpd_draws import fill_delays
from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, UPDATE


@njit(cache=True)
def _sample(t, ob, hist, cur, last_u_end, w_vis, out_model) -> float:
    """The recorded loss at the weights visible at time t (copied to out_model)."""
    code, spec, off, act, saved_size, _, _, df, dt, di, _, ev, _, batch = ob
    visible_model(t, off, hist, cur, last_u_end, w_vis)
    out_model[:] = w_vis
    return eval_loss(code, spec, off, act, saved_size, w_vis, df, dt, di, ev, batch)


@njit(cache=True, nogil=True)
def replay_layered(
    kind, stage, mb, replica, start, end, v_fwd, v_bwd, n_rows, until, S, R,
    ob, recompute, seed, code, hyper, horizon, H, P, tau, times, out_loss, out_updates, out_model,
    stop,
):  # fmt: skip
    """Replay rows [0, n_rows) that end by `until`; returns (samples, updates, micro-batches).

    `tau` is each row's staleness when weights are predicted or the lr follows the
    delay, else empty.
    """
    ocode, spec, off, act, saved_size, mats, init, df, dt, di, examples, _, sampling, batch = ob
    d = len(init)
    hist = np.empty((R, H, d))
    for r in range(R):
        for h in range(H):
            hist[r, h] = init
    cur = np.zeros((R, S), np.int64)
    last_u_end = np.full((R, S), -np.inf)
    acc = np.zeros((R, d))
    count = np.zeros((R, S), np.int64)
    m1 = np.zeros((R, d))
    m2 = np.zeros((R, d))
    last = np.zeros((R, d))
    steps = np.zeros((R, S), np.int64)
    rows = np.zeros((P, batch), np.int64)
    x = np.zeros((P, S + 1, act))  # x[slot, s]: the input of stage s
    g = np.zeros((P, S + 1, act))  # g[slot, s]: dLoss / d(input of stage s)
    so = np.zeros(S + 1, np.int64)  # stage s saves into saved[slot, so[s]:so[s+1]]
    for s in range(S):
        so[s + 1] = so[s] + saved_size[s]
    saved = np.zeros((P, so[S]))
    scratch = np.zeros(act)
    w_vis = np.zeros(d)
    predict = hyper[PREDICT] != 0.0
    pred, update, before = correction_buffers(predict, hyper[DC] != 0.0, P, R, d)
    lag = stage_delays(kind, stage, tau, n_rows, S)
    theta, outer_mu, rounds = outer_state(hyper[OUTER_LR] != 0.0, hist)
    initial = _sample(-np.inf, ob, hist, cur, last_u_end, w_vis, out_model)
    n_pts = len(times)
    p = 0
    updates = 0
    done = 0
    for i in range(n_rows + 1):
        t_next = start[i] if i < n_rows else np.inf
        while p < n_pts and times[p] < t_next:
            value = _sample(times[p], ob, hist, cur, last_u_end, w_vis, out_model)
            out_loss[p] = value
            out_updates[p] = updates - steps_running(times[p], last_u_end)
            p += 1
            if diverged(value, initial):
                return p, updates, done
        if i == n_rows or (i % 256 == 0 and stop[0] != 0):
            break
        if end[i] > until:
            continue
        k = kind[i]
        s = stage[i]
        r = replica[i]
        if k in (FORWARD, BACKWARD):
            slot = mb[i] % P
            store = saved[slot, so[s] : so[s + 1]]
            lo, hi = off[s], off[s + 1]
            if k == FORWARD:
                if s == 0:
                    draw_rows(sampling, seed, examples, batch, mb[i], rows[slot])
                w = hist[r, v_fwd[i] % H, lo:hi]
                if predict:
                    w = predicted(w, tau[i], update[r, lo:hi], 0, hi - lo, pred[slot, lo:hi])
                stage_forward(ocode, spec, s, w, df, dt, di, rows[slot], x[slot, s], store,
                              x[slot, s + 1])  # fmt: skip
            else:
                w = hist[r, v_bwd[i] % H, lo:hi]
                if predict:
                    w = predicted(w, tau[i], update[r, lo:hi], 0, hi - lo, pred[slot, lo:hi])
                if hyper[DC] != 0.0:
                    before[lo:hi] = acc[r, lo:hi]
                if recompute:
                    stage_forward(ocode, spec, s, w, df, dt, di, rows[slot], x[slot, s], store,
                                  scratch)  # fmt: skip
                stage_backward(ocode, spec, s, w, df, dt, di, rows[slot], store, g[slot, s + 1],
                               g[slot, s], acc[r, lo:hi])  # fmt: skip
                if hyper[DC] != 0.0:
                    w_now = hist[r, cur[r, s] % H, lo:hi]
                    compensate(acc[r, lo:hi], before[lo:hi], w_now, w, hyper[DC], 0, hi - lo)
                count[r, s] += 1
                if s == 0:
                    done += 1
        elif k == UPDATE:
            step_stage(r, s, end[i], off, hist, cur, acc, count, m1, m2, last, steps, horizon,
                       code, hyper, mats, last_u_end)  # fmt: skip
            v = cur[r, s]
            if hyper[DELAY_LR] != 0.0:
                f = pipemare_factor(lag[s], steps[r, s], hyper[DELAY_LR_WARMUP])
                rescale_update(hist[r, (v - 1) % H], hist[r, v % H], off[s], off[s + 1], f)
            if predict:
                remember_update(hist[r, (v - 1) % H], hist[r, v % H], off[s], off[s + 1], update[r])
            updates += 1
        elif k == AVERAGE:
            if hyper[OUTER_LR] != 0.0:
                synchronise(off, hist, cur, hyper, theta, outer_mu, rounds)
            else:
                average_replicas(off, hist, cur)
    return p, updates, done


@njit(cache=True, nogil=True)
def replay_layered_plan(
    block, time, n_iter, S, mode, delta, plan_seed, pd_update_mb, pd_reads,
    ob, seed, code, hyper, horizon, H, times, out_loss, out_updates, out_model, stop,
):  # fmt: skip
    """rpd: iteration k steps block[k] with the gradient at the point whose block j is the
    iterate from d_j iterations ago (forward and backward both there)."""
    ocode, spec, off, act, saved_size, mats, init, df, dt, di, examples, _, sampling, batch = ob
    d = len(init)
    hist = np.empty((1, H, d))
    for h in range(H):
        hist[0, h] = init
    version = np.zeros((1, S), np.int64)
    checkpoints = new_checkpoints(H, S)
    read = np.zeros(S, np.int64)  # read[j]: the version of block j iteration k reads
    never = np.full((1, S), -np.inf)
    delays = np.zeros(S, np.int64)
    rows = np.zeros(batch, np.int64)
    point = np.zeros(d)  # the mixed point of an iteration
    saved = np.zeros((S, saved_size.max()))
    x = np.zeros((S + 1, act))
    g = np.zeros((S + 1, act))
    grad = np.zeros(d)
    m1 = np.zeros(d)
    m2 = np.zeros(d)
    last = np.zeros(d)
    steps = np.zeros(S, np.int64)
    predict = hyper[PREDICT] != 0.0
    _, update, before = correction_buffers(predict, hyper[DC] != 0.0, 0, 1, d)
    w_vis = np.zeros(d)
    initial = _sample(-np.inf, ob, hist, version, never, w_vis, out_model)
    n_pts = len(times)
    p = 0
    for k in range(n_iter + 1):
        t_next = time[k] if k < n_iter else np.inf
        while p < n_pts and times[p] < t_next:
            value = _sample(times[p], ob, hist, version, never, w_vis, out_model)
            out_loss[p] = value
            out_updates[p] = k
            p += 1
            if diverged(value, initial):
                return p, k
        if k == n_iter or (k % 64 == 0 and stop[0] != 0):
            break
        keep_checkpoint(k, version, checkpoints)
        fill_delays(mode, delta, plan_seed, k, pd_update_mb, pd_reads, delays)
        versions_read(k, delays, block, checkpoints, read)
        draw_rows(sampling, seed, examples, batch, k, rows)
        for j in range(S):
            v = read[j]
            point[off[j] : off[j + 1]] = hist[0, v % H, off[j] : off[j + 1]]
            if predict:
                predicted(point, version[0, j] - v, update[0], off[j], off[j + 1], point)
        for j in range(S):
            stage_forward(ocode, spec, j, point[off[j] : off[j + 1]], df, dt, di, rows, x[j],
                          saved[j, : saved_size[j]], x[j + 1])  # fmt: skip
        s = block[k]
        for j in range(S - 1, s - 1, -1):  # down to the updated block; only its gradient is kept
            lo, hi = off[j], off[j + 1]
            grad[lo:hi] = 0.0
            stage_backward(ocode, spec, j, point[lo:hi], df, dt, di, rows,
                           saved[j, : saved_size[j]], g[j + 1], g[j], grad[lo:hi])  # fmt: skip
        lo, hi = off[s], off[s + 1]
        v = version[0, s]
        if hyper[DC] != 0.0:  # grad[lo:hi] held nothing before this backward
            compensate(grad, before, hist[0, v % H], point, hyper[DC], lo, hi)
        steps[s] += 1
        apply_step(code, hyper, steps[s], horizon[0, s], hist[0, v % H], grad, 1.0, m1, m2, last,
                   mats, lo, hi, hist[0, (v + 1) % H])  # fmt: skip
        if predict:
            remember_update(hist[0, v % H], hist[0, (v + 1) % H], lo, hi, update[0])
        version[0, s] = v + 1
    return p, n_iter


def objective_tuple(obj: Layered) -> tuple:
    """What the kernels receive of a layered objective, in the order they unpack it."""
    return (
        obj.code, obj.spec, obj.off, obj.act_size, obj.saved_size, obj.matrices, obj.init,
        obj.data_f, obj.data_t, obj.data_i, obj.examples, obj.eval_rows, obj.sampling,
        obj.batch_size,
    )  # fmt: skip
