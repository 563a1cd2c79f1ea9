"""The replay loop: a timeline walked in causal order with real arithmetic.

`_replay_trace` applies F, B, U and AVG exactly as docs/schedules.md says: a
forward reads the weight version the trace records (vF), a backward
multiplies by vB, an update steps the stage's optimizer with the mean of the
gradients summed since its last step, AVG averages the replicas. A program's
trace is walked the same way, chunk by chunk (its `stage` is the chunk): I
makes the input gradient and keeps the weight gradient for W, which adds it
into the step; the halves of an F&B pair are a forward and a full backward.
`_replay_plan` does the same for rpd's iteration plan. Both sample the loss
at fixed simulated times and stop at the first sign of divergence. Each
kernel serves block-linear and layered objectives (layered.py): the walk is
one, the work of F and B is the form's, chosen by which model argument is
the empty tuple, a choice numba makes at compile time.

Weights live in one array per replica, `hist[r, v % H]` holding version v
of every block, H being the largest version lag the trace has (replay_size.py):
a stage's step writes the next slot, so stashed versions stay readable
without copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import singledispatch

import numpy as np

from pipebench.engine.iterates import keep_checkpoint, new_checkpoints, versions_read
from pipebench.engine.layered import objective_tuple
from pipebench.engine.operations import average_replicas, diverged, steps_running
from pipebench.engine.recorder import (
    block_offsets,
    copy_into,
    new_recorder,
    pair_buffers,
    sample_pair,
    take_sample,
    visible_model,
)
from pipebench.engine.replay_size import replay_needs
from pipebench.engine.staleness import read_delays, stage_delays
from pipebench.jit import njit
from pipebench.objectives.blocklinear import (
    BlockLinear,
    backward_block,
    draw_rows,
    forward_block,
    forward_point,
    output_gradient,
    unsigned_range,
)
from pipebench.objectives.layered import Layered, mean_loss, stage_backward, stage_forward
from pipebench.objectives.sketch import SAMPLE_FULL, SAMPLING_CODES
from pipebench.optim.corrections import (
    compensate,
    correction_buffers,
    pipemare_factor,
    predicted,
    remember_update,
    rescale_update,
)
from pipebench.optim.diloco import merge, outer_state, synchronise
from pipebench.optim.step import (
    ALPHA,
    DC,
    DELAY_LR,
    DELAY_LR_WARMUP,
    EF,
    MUON,
    OUTER_LR,
    PREDICT,
    apply_step,
    moment_buffers,
)
from pipebench.timeline.rpd import RpdPlan
from pipebench.timeline.rpd_draws import fill_delays
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


@njit(cache=True)
def _loss_at(t, linear, layered, hist, cur, last_u_end, w_vis, rec, out_model):
    """The recorded loss at the weights visible at time t (copied to out_model); `rec` is
    the block-linear recorder's state (recorder.py). A layered objective's loss runs the
    whole model at those weights on its fixed evaluation set, here and not in a helper
    of its own: each kernel level recompiles the code of every kernel below it."""
    if len(layered) == 0:
        _, XT, y, loss, l2, _, _, _, off = linear
        return take_sample(t, XT, y, loss, l2, off, hist, cur, last_u_end, w_vis, rec, out_model)
    mlp_arch, lm_arch, off, act, saved_size, _, df, dt, di, _, ev, _, batch = layered
    visible_model(t, off, hist, cur, last_u_end, w_vis)
    for j in range(len(w_vis)):  # a loop: see recorder.take_sample
        out_model[j] = w_vis[j]
    return mean_loss(mlp_arch, lm_arch, off, act, saved_size, w_vis, df, dt, di, ev, batch)


@njit(cache=True, nogil=True)
def _replay_trace(
    kind, stage, mb, replica, start, end, v_fwd, v_bwd, n_rows, until, S, R,
    linear, layered, partition, pair, recompute, seed, hyper, moments, mats, horizon, H, P,
    tau, lag, prediction, compensation, outer, times, out_loss, out_updates, out_model, stop,
):  # fmt: skip
    """Replay rows [0, n_rows) that end by `until`; returns (samples, updates, micro-batches).

    `tau` is each row's staleness when weights are predicted or the lr follows the
    delay, else empty; `lag` each stage's mean staleness (`engine.staleness.stage_delays`)
    when some run of the scenario follows the delay (pipemare's lr), else None.
    `moments` (the optimizer's state, per replica) and `mats` (the
    weight matrices for Muon, else empty) tell `optim.step.apply_step` the optimizer
    at compile time. `prediction`, `compensation` (the staleness corrections'
    buffers: optim.corrections) and `outer` (DiLoCo's state: optim.diloco) are None
    when no run of the scenario uses them (`switches` in `replay`): numba decides
    `is not None` of an argument at compile time, so a scenario compiles only the
    corrections it uses, in one kernel for all its runs.

    One of `linear` (a block-linear objective) and `layered` is the empty
    tuple: numba reads `len()` of a tuple argument as a constant and prunes
    the other form's branches, so each form compiles only its own work.
    `partition` is `draw_rows`' memo of the shuffled partition (-1: not drawn yet),
    `pair` the buffers of the block-linear loss samples taken two at a time
    (recorder.pair_buffers; the empty tuple for a layered objective).
    Returns early, with the work done so far, once `stop[0]` is set (Ctrl-C).
    """
    if len(layered) == 0:
        X, XT, y, loss, l2, noise, sampling, batch, off = linear
        examples, d = X.shape
        nb = examples if sampling == SAMPLE_FULL else batch
        hist = np.zeros((R, H, d))
        z = np.zeros((P, nb))  # z[slot]: the running activations of a micro-batch
        g = np.zeros((P, nb))  # g[slot]: dLoss / dz, divided by the batch size
        w_vis, rec = new_recorder(examples, d)
        # The kernels read these whole, at offsets: a view per call costs two atomic
        # reference counts (blocklinear.forward_block)
        flat_hist = hist.reshape(R * H * d)  # hist[r, h] from (r * H + h) * d
        flat_z = z.reshape(P * nb)  # z[slot] (and g, rows) from slot * nb
        flat_g = g.reshape(P * nb)
    else:
        (mlp_arch, lm_arch, off, act, saved_size, init, df, dt, di, examples, _, sampling,
         batch) = layered  # fmt: skip
        d = len(init)
        nb = batch
        hist = np.empty((R, H, d))
        for r in range(R):
            for h in range(H):
                for j in range(d):  # loops: an array-to-array copy compiles numba's string code
                    hist[r, h, j] = init[j]
        x = np.zeros((P, S + 1, act))  # x[slot, s]: the input of stage s
        gl = np.zeros((P, S + 1, act))  # gl[slot, s]: dLoss / d(input of stage s)
        so = np.zeros(S + 1, np.int64)  # stage s saves into saved[slot, so[s]:so[s+1]]
        for s in range(S):
            so[s + 1] = so[s] + saved_size[s]
        saved = np.zeros((P, so[S]))
        scratch = np.zeros(act)
        w_vis = np.zeros(d)
        rec = None  # the block-linear recorder's state
        # pending[slot]: the weight gradients a program's I passes made and its W's add
        split = False
        for i in range(n_rows):
            split = split or kind[i] == INPUT_GRAD
        pending = np.zeros((P if split else 0, d))
    cur = np.zeros((R, S), np.int64)
    last_u_end = np.full((R, S), -np.inf)
    acc = np.zeros((R, d))
    count = np.zeros((R, S), np.int64)
    last = np.zeros((R, d))
    steps = np.zeros((R, S), np.int64)
    rows = np.zeros((P, nb), np.int64)
    flat_rows, flat_acc = rows.reshape(P * nb), acc.reshape(R * d)  # as flat_hist
    initial = _loss_at(-np.inf, linear, layered, hist, cur, last_u_end, w_vis, rec,
                       out_model)  # fmt: skip
    n_pts = len(times)
    p = 0
    updates = 0
    done = 0
    # Block-linear: a sample's model is held and its loss taken with the next sample's,
    # in one pass over X (recorder.sample_pair); `held` is its index, -1 when none.
    held, held_updates, held_done = -1, 0, 0
    for i in range(n_rows + 1):
        t_next = start[i] if i < n_rows else np.inf
        while p < n_pts and times[p] < t_next:  # sample the loss before anything later starts
            out_updates[p] = updates - steps_running(times[p], last_u_end)
            if len(layered) == 0 and held < 0 and p + 1 < n_pts:
                visible_model(times[p], off, hist, cur, last_u_end, pair[0])  # held
                held, held_updates, held_done = p, updates, done
            elif len(layered) == 0 and held >= 0:
                visible_model(times[p], off, hist, cur, last_u_end, w_vis)
                first, value = sample_pair(XT, y, loss, l2, off, pair[0], w_vis, rec, pair)
                out_loss[held] = first
                if diverged(first, initial):  # as if the replay had stopped there
                    copy_into(pair[1], out_model)  # the first sample's model
                    return held + 1, held_updates, held_done
                copy_into(rec[0], out_model)
                out_loss[p] = value
                held = -1
            else:
                value = _loss_at(times[p], linear, layered, hist, cur, last_u_end, w_vis, rec,
                                 out_model)  # fmt: skip
                out_loss[p] = value
            p += 1
            if held < 0 and diverged(out_loss[p - 1], initial):
                return p, updates, done
        if i == n_rows or (i % 256 == 0 and stop[0] != 0):
            if held >= 0:  # stopped (Ctrl-C) with a sample held: it is not taken
                p = held
            break
        if end[i] > until:
            continue
        k = kind[i]
        s = np.int64(stage[i])  # int64 as in the plan (and mb below): kernels compiled once
        r = replica[i]
        if k in (FORWARD, PAIR_FORWARD):
            slot = mb[i] % P
            if s == 0:
                draw_rows(sampling, seed, examples, batch, np.int64(mb[i]), rows[slot], partition)
            if len(layered) == 0:
                if s == 0:
                    z[slot, :] = 0.0
                w, w_at = flat_hist, (r * H + v_fwd[i] % H) * d
                if prediction is not None and hyper[PREDICT] != 0.0 and tau[i] != 0:
                    pred, update = prediction  # the predicted weights, in pred[slot]
                    predicted(hist[r, v_fwd[i] % H], tau[i], update[r], off[s], off[s + 1],
                              pred[slot])  # fmt: skip
                    w, w_at = pred.reshape(P * d), slot * d
                forward_block(X, flat_rows, nb, off[s], off[s + 1], w, flat_z, slot * nb, w_at)
                if s == S - 1:
                    output_gradient(loss, z[slot], y, rows[slot], nb, g[slot])
            else:
                lo, hi = off[s], off[s + 1]
                w = hist[r, v_fwd[i] % H, lo:hi]
                if prediction is not None and hyper[PREDICT] != 0.0:
                    pred, update = prediction
                    w = predicted(w, tau[i], update[r, lo:hi], 0, hi - lo, pred[slot, lo:hi])
                stage_forward(mlp_arch, lm_arch, s, w, df, dt, di, rows[slot], x[slot, s],
                              saved[slot, so[s] : so[s + 1]], x[slot, s + 1])  # fmt: skip
        elif k in (BACKWARD, PAIR_BACKWARD):
            slot = mb[i] % P
            lo, hi = off[s], off[s + 1]
            if len(layered) == 0:
                w, w_at = flat_hist, (r * H + v_bwd[i] % H) * d
                if prediction is not None and hyper[PREDICT] != 0.0 and tau[i] != 0:
                    pred, update = prediction
                    predicted(hist[r, v_bwd[i] % H], tau[i], update[r], lo, hi, pred[slot])
                    w, w_at = pred.reshape(P * d), slot * d
                if compensation is not None and hyper[DC] != 0.0:
                    before, ms = compensation
                    before[lo:hi] = acc[r, lo:hi]
                backward_block(X, flat_rows, nb, lo, hi, flat_g, w, l2, noise, seed,
                               np.int64(mb[i]), flat_acc, slot * nb, w_at, r * d)  # fmt: skip
                if compensation is not None and hyper[DC] != 0.0:
                    before, ms = compensation
                    compensate(acc[r], before, hist[r, cur[r, s] % H], w[w_at : w_at + d], hyper,
                               ms[r], lo, hi)  # fmt: skip
            else:
                w = hist[r, v_bwd[i] % H, lo:hi]
                if prediction is not None and hyper[PREDICT] != 0.0:
                    pred, update = prediction
                    w = predicted(w, tau[i], update[r, lo:hi], 0, hi - lo, pred[slot, lo:hi])
                if compensation is not None and hyper[DC] != 0.0:
                    before, ms = compensation
                    before[lo:hi] = acc[r, lo:hi]
                store = saved[slot, so[s] : so[s + 1]]
                if recompute:
                    stage_forward(mlp_arch, lm_arch, s, w, df, dt, di, rows[slot], x[slot, s],
                                  store, scratch)  # fmt: skip
                stage_backward(mlp_arch, lm_arch, s, w, df, dt, di, rows[slot], store,
                               gl[slot, s + 1], gl[slot, s], acc[r, lo:hi])  # fmt: skip
                if compensation is not None and hyper[DC] != 0.0:
                    before, ms = compensation
                    w_now = hist[r, cur[r, s] % H, lo:hi]
                    compensate(acc[r, lo:hi], before[lo:hi], w_now, w, hyper, ms[r, lo:hi], 0,
                               hi - lo)  # fmt: skip
            count[r, s] += 1
            if s == 0:
                done += 1
        elif k == INPUT_GRAD:
            # Block-linear: dLoss/dz, the whole input gradient, came with the last forward.
            # Layered: the model's backward makes both gradients at once; the weight
            # gradient waits in the micro-batch's pending buffer for its W.
            if len(layered) != 0:
                slot = mb[i] % P
                lo, hi = off[s], off[s + 1]
                w = hist[r, v_bwd[i] % H, lo:hi]
                pending[slot, lo:hi] = 0.0
                stage_backward(mlp_arch, lm_arch, s, w, df, dt, di, rows[slot],
                               saved[slot, so[s] : so[s + 1]], gl[slot, s + 1], gl[slot, s],
                               pending[slot, lo:hi])  # fmt: skip
        elif k == WEIGHT_GRAD:
            slot = mb[i] % P
            lo, hi = off[s], off[s + 1]
            if len(layered) == 0:
                backward_block(X, flat_rows, nb, lo, hi, flat_g, flat_hist, l2, noise, seed,
                               np.int64(mb[i]), flat_acc, slot * nb, (r * H + v_bwd[i] % H) * d,
                               r * d)  # fmt: skip
            else:
                acc[r, lo:hi] += pending[slot, lo:hi]
            count[r, s] += 1
            if s == 0:
                done += 1
        elif k == UPDATE:
            # The stage's step written out: in this loop, tens of millions of updates,
            # a helper with its 17 arguments cost 230 ns each (+50% time).
            v = cur[r, s]
            steps[r, s] += 1
            lo, hi = off[s], off[s + 1]
            apply_step(
                hyper, steps[r, s], horizon[r, s], hist[r, v % H], acc[r], 1.0 / count[r, s],
                moments, last, np.int64(r), mats, lo, hi, hist[r, (v + 1) % H],
            )  # fmt: skip
            if lag is not None and hyper[DELAY_LR] != 0.0:
                f = pipemare_factor(lag[s], steps[r, s], hyper[DELAY_LR_WARMUP])
                rescale_update(hist[r, v % H], hist[r, (v + 1) % H], lo, hi, f)
            if prediction is not None and hyper[PREDICT] != 0.0:
                remember_update(hist[r, v % H], hist[r, (v + 1) % H], lo, hi, prediction[1][r])
            if outer is not None:
                theta, _, _, due = outer
                if due[r, s] > 0:  # streaming DiLoCo: the overlapped average arrives
                    due[r, s] -= 1
                    if due[r, s] == 0:
                        merge(hist[r, (v + 1) % H], theta, hyper[ALPHA], lo, hi)
            acc[r, lo:hi] = 0.0
            count[r, s] = 0
            cur[r, s] = v + 1
            last_u_end[r, s] = end[i]
            updates += 1
        elif k == AVERAGE:
            if outer is not None and hyper[OUTER_LR] != 0.0:
                theta, outer_mu, rounds, due = outer
                synchronise(off, hist, cur, hyper, theta, outer_mu, rounds, due)
            else:
                average_replicas(off, hist, cur)
    return p, updates, done


@njit(cache=True, nogil=True)
def _replay_plan(
    block, time, n_iter, S, mode, delta, plan_seed, pd_update_mb, pd_reads, lookback,
    linear, layered, partition, seed, hyper, moments, mats, horizon, H, prediction,
    compensation, times, out_loss, out_updates, out_model, stop,
):  # fmt: skip
    """rpd: iteration k steps block[k] with the gradient at a point whose block j is
    the iterate from d_j iterations ago (forward and backward both there).
    Returns (samples, iterations done). One of `linear` and `layered` is ();
    `partition` is `draw_rows`' memo, as in `_replay_trace`.

    Version v of a block is kept in `hist[0, v & (H - 1)]`, H being the most versions
    of one block its reads can need at once rounded up to a power of two (a mask,
    not a division, per block read), and the delays reach `lookback` - 1 iterations
    back (see `_size_plan`)."""
    if len(layered) == 0:
        X, _, y, loss, l2, noise, sampling, batch, off = linear
        examples, d = X.shape
        nb = examples if sampling == SAMPLE_FULL else batch
        hist = np.zeros((1, H, d))
        z = np.zeros(nb)
        g = np.zeros(nb)
        w_vis, rec = new_recorder(examples, d)
    else:
        (mlp_arch, lm_arch, off, act, saved_size, init, df, dt, di, examples, _, sampling,
         batch) = layered  # fmt: skip
        d = len(init)
        nb = batch
        hist = np.empty((1, H, d))
        for h in range(H):
            for j in range(d):
                hist[0, h, j] = init[j]
        saved = np.zeros((S, saved_size.max()))
        x = np.zeros((S + 1, act))
        gl = np.zeros((S + 1, act))
        w_vis = np.zeros(d)
        rec = None  # the block-linear recorder's state
    ring = H - 1  # version v's slot: v & ring
    version = np.zeros((1, S), np.int64)
    checkpoints = new_checkpoints(lookback, S)
    read = np.zeros(S, np.int64)  # read[j]: the version of block j iteration k reads
    point = np.zeros(d)  # the mixed point of an iteration, when it is gathered
    # Block j of the point is weights[slot[j], off[j]:off[j + 1]]. A block-linear run
    # without prediction or compensation reads the versions where they are kept
    # (weights = hist[0], slot[j] = read[j] & ring); otherwise the point is gathered
    # into `point` first (weights = `point` as one row, slot = 0).
    gather = (len(layered) != 0 or (prediction is not None and hyper[PREDICT] != 0.0)
              or (compensation is not None and hyper[DC] != 0.0))  # fmt: skip
    weights = point.reshape(1, d) if gather else hist[0]
    slot = np.zeros(S, np.int64)
    never = np.full((1, S), -np.inf)
    delays = np.zeros(S, np.int64)
    rows = np.zeros(nb, np.int64)
    grad = np.zeros(d)
    last = np.zeros((1, d))
    steps = np.zeros(S, np.int64)
    initial = _loss_at(-np.inf, linear, layered, hist, version, never, w_vis, rec,
                       out_model)  # fmt: skip
    n_pts = len(times)
    p = 0
    for k in range(n_iter + 1):
        t_next = time[k] if k < n_iter else np.inf
        while p < n_pts and times[p] < t_next:
            value = _loss_at(times[p], linear, layered, hist, version, never, w_vis, rec,
                             out_model)  # fmt: skip
            out_loss[p] = value
            out_updates[p] = k
            p += 1
            if diverged(value, initial):
                return p, k
        if k == n_iter or (k % 64 == 0 and stop[0] != 0):
            break
        keep_checkpoint(k, block[k], version, checkpoints)
        fill_delays(mode, delta, plan_seed, k, pd_update_mb, pd_reads, delays)
        versions_read(k, delays, checkpoints, read)
        draw_rows(sampling, seed, examples, batch, k, rows, partition)
        for j in range(S):
            if not gather:
                slot[j] = read[j] & ring
                continue
            for c in unsigned_range(off[j], off[j + 1]):
                point[c] = hist[0, read[j] & ring, c]
            if prediction is not None and hyper[PREDICT] != 0.0:
                tau = version[0, j] - read[j]
                predicted(point, tau, prediction[1][0], off[j], off[j + 1], point)
        s = block[k]
        lo, hi = off[s], off[s + 1]
        if len(layered) == 0:
            z[:] = 0.0
            forward_point(X, rows, nb, off, weights, slot, z)
            output_gradient(loss, z, y, rows, nb, g)
            backward_block(X, rows, nb, lo, hi, g, weights[slot[s]], l2, noise, seed, k, grad)
        else:
            for j in range(S):
                stage_forward(mlp_arch, lm_arch, j, point[off[j] : off[j + 1]], df, dt, di, rows,
                              x[j], saved[j, : saved_size[j]], x[j + 1])  # fmt: skip
            for j in range(S - 1, s - 1, -1):  # down to the updated block, whose gradient is kept
                grad[off[j] : off[j + 1]] = 0.0
                stage_backward(mlp_arch, lm_arch, j, point[off[j] : off[j + 1]], df, dt, di, rows,
                               saved[j, : saved_size[j]], gl[j + 1], gl[j],
                               grad[off[j] : off[j + 1]])  # fmt: skip
        v = version[0, s]
        if compensation is not None and hyper[DC] != 0.0:  # grad[lo:hi] was 0 before
            before, ms = compensation
            compensate(grad, before, hist[0, v & ring], point, hyper, ms[0], lo, hi)
        steps[s] += 1
        apply_step(hyper, steps[s], horizon[0, s], hist[0, v & ring], grad, 1.0, moments, last,
                   np.int64(0), mats, lo, hi, hist[0, (v + 1) & ring])  # fmt: skip
        if prediction is not None and hyper[PREDICT] != 0.0:
            remember_update(hist[0, v & ring], hist[0, (v + 1) & ring], lo, hi, prediction[1][0])
        grad[lo:hi] = 0.0
        version[0, s] = v + 1
    return p, n_iter


@dataclass(frozen=True)
class Curve:
    """One training run: loss samples on the simulated clock, and how far it got."""

    times: np.ndarray
    loss: np.ndarray
    updates: np.ndarray  # block updates finished by each sample time
    block_updates: int  # block updates applied in the whole run
    microbatches: int  # micro-batches whose backward finished (rpd: minibatch gradients)
    diverged_at: float | None  # simulated time of the sample that showed divergence
    model: np.ndarray  # the weights at the last sample (the replica average for LocalSGD)


@dataclass(frozen=True)
class SizedReplay:
    """A timeline cut to a budget, with the buffer sizes its replay needs (computed once)."""

    timeline: Trace | RpdPlan
    until: float  # simulated end of the run
    length: int  # rows of the trace, or rpd iterations, that start by `until`
    depth: int  # weight versions kept per stage
    slots: int  # micro-batches in flight (1 for rpd)
    horizon: np.ndarray  # (replicas, stages): optimizer steps each stage takes (cosine decay)
    lookback: int = 1  # rpd: the largest delay it can draw, plus one


@singledispatch
def size_replay(
    timeline: Trace | RpdPlan, until: float, iterations: int | None = None
) -> SizedReplay:
    """Size the replay of `timeline` up to time `until` (rpd: its first `iterations`)."""
    raise TypeError(f"no replay for {type(timeline).__name__}")


@size_replay.register(Trace)
def _size_trace(timeline: Trace, until: float, iterations: int | None = None) -> SizedReplay:
    n_rows = int(np.searchsorted(timeline.start, until, side="right"))
    depth, slots = replay_needs(timeline, n_rows, until)
    steps = np.flatnonzero((timeline.kind[:n_rows] == UPDATE) & (timeline.end[:n_rows] <= until))
    horizon = np.zeros((timeline.replicas, timeline.stages), np.int64)
    np.add.at(horizon, (timeline.replica[steps], timeline.stage[steps]), 1)
    return SizedReplay(timeline, until, n_rows, depth, slots, horizon)


@size_replay.register(RpdPlan)
def _size_plan(plan: RpdPlan, until: float, iterations: int | None = None) -> SizedReplay:
    n = iterations if iterations is not None else int(np.searchsorted(plan.time, until, "right"))
    # steps per stage: they depend on the seed's block draws
    horizon = np.bincount(plan.block[:n], minlength=plan.stages).reshape(1, -1).astype(np.int64)
    lookback = _plan_depth(plan, n)
    needed = _versions_needed(plan.block[:n], lookback - 1)
    depth = 1 << (needed - 1).bit_length()  # a power of two: `_replay_plan` masks, not divides
    return SizedReplay(plan, until, n, depth, 1, horizon, lookback)


def _plan_depth(plan: RpdPlan, n: int) -> int:
    """Iterates rpd must remember: the largest delay it can draw in n iterations, plus one."""
    if n == 0:
        return 1
    if plan.delays == "zero":
        return 1
    if plan.delays == "pd":
        return _largest_pd_delay(plan.pd_reads, plan.pd_update_mb, n) + 1
    return min(plan.delta, n - 1) + 1


def _versions_needed(block: np.ndarray, window: int) -> int:
    """The most versions of one block rpd reads at once, when delays reach `window` back:
    one more than the most updates of a block within `window` consecutive iterations.

    Far fewer than `window` + 1 (about window / S + 1): the versions of every block
    then fit in a ring of that many models, which the gathers of each iteration read
    from cache (at S = 128: 1 MB, where one model per iterate took 67 MB).
    """
    if window == 0 or len(block) == 0:
        return 1
    order = np.argsort(block, kind="stable")  # the iterations, grouped by block
    span = len(block) + window + 1  # keys below: blocks never overlap
    key = block[order].astype(np.int64) * span + order
    oldest = np.searchsorted(key, key - window + 1)  # first update of the window ending here
    return int((np.arange(len(key)) - oldest).max()) + 2


@njit(cache=True)
def _largest_pd_delay(pd_reads, pd_update_mb, n):
    worst = 0
    for k in range(n):
        worst = max(worst, k - pd_reads[pd_update_mb[k]].min())
    return worst


def _kernel_inputs(
    sized: SizedReplay,
    objective: BlockLinear | Layered,
    optimizer_code: int,
    hyper: np.ndarray,
    seed: int,
    points: int,
    stop: np.ndarray | None,
) -> tuple[tuple, tuple]:
    """(optimizer, record): the kernels' arguments about the step and the loss samples."""
    times = np.linspace(0.0, sized.until, points + 1)
    out_loss = np.full(points + 1, np.nan)
    out_updates = np.zeros(points + 1, dtype=np.int64)
    out_model = np.zeros(objective.dim)
    stop = np.zeros(1, dtype=np.int64) if stop is None else stop
    # ef, predict and delay_lr read each update as old - new weights: two separate versions
    two = hyper[EF] != 0.0 or hyper[PREDICT] != 0.0 or hyper[DELAY_LR] != 0.0
    depth = max(sized.depth, 2) if two else sized.depth
    moments = moment_buffers(optimizer_code, sized.horizon.shape[0], objective.dim)
    muon = optimizer_code == MUON and isinstance(objective, Layered)
    mats = (objective.matrices,) if muon else ()
    return (seed, hyper, moments, mats, sized.horizon, depth), (
        times, out_loss, out_updates, out_model, stop,
    )  # fmt: skip


def replay(
    sized: SizedReplay,
    objective: BlockLinear | Layered,
    optimizer_code: int,
    hyper: np.ndarray,
    seed: int,
    points: int,
    stop: np.ndarray | None = None,
    switches: np.ndarray | None = None,
) -> Curve:
    """Train `objective` along the sized timeline; the loss is sampled `points` times
    evenly over the run (after time 0) and once at time 0.

    `switches` (laid out as `hyper`; default `hyper`) says which corrections the
    kernel is compiled for, those whose field is not 0: a scenario passes the union
    of its runs' (`Experiment.switches`), so that they share one
    kernel; a run uses those its own `hyper` turns on.
    """
    optimizer, record = _kernel_inputs(sized, objective, optimizer_code, hyper, seed, points, stop)
    times, out_loss, out_updates, out_model, _ = record
    on = hyper if switches is None else switches
    kernel, args = _kernel(sized.timeline, sized, objective, optimizer, record, on)
    n_pts, updates, *rest = kernel(*args)
    microbatches = rest[0] if rest else updates  # rpd: one minibatch gradient per iteration
    blew_up = bool(diverged(out_loss[n_pts - 1], out_loss[0]))
    return Curve(
        times=times[:n_pts],
        loss=out_loss[:n_pts],
        updates=out_updates[:n_pts],
        block_updates=int(out_updates[n_pts - 1]) if blew_up else int(updates),
        microbatches=int(microbatches),
        diverged_at=float(times[n_pts - 1]) if blew_up else None,
        model=out_model,
    )


def replay_signature(
    sized: SizedReplay,
    objective: BlockLinear | Layered,
    optimizer_code: int,
    hyper: np.ndarray,
    seed: int,
    switches: np.ndarray | None = None,
) -> tuple[Callable, tuple]:
    """The replay kernel `replay` would call for these inputs, and its numba argument
    types: what compiling it ahead of the run needs (engine.precompile)."""
    from numba import typeof  # numba only where kernels are compiled (pipebench/jit.py)

    optimizer, record = _kernel_inputs(sized, objective, optimizer_code, hyper, seed, 1, None)
    on = hyper if switches is None else switches
    kernel, args = _kernel(sized.timeline, sized, objective, optimizer, record, on)
    return kernel, tuple(typeof(a) for a in args)


def trace_callees(
    stages: int, objective: BlockLinear, optimizer_code: int, hyper: np.ndarray, seed: int
) -> dict[str, tuple[Callable, tuple]]:
    """The block-linear trace kernel's callees, by name, with the numba argument types
    `_replay_trace` calls them with: the objective's own arrays, the optimizer's state,
    buffers made as the kernel makes them (any size). engine/precompile.py compiles them
    ahead, split between two processes, and the trace kernel then loads them from
    numba's cache (tests/test_precompile.py checks that it compiles none again)."""
    from numba import typeof  # numba only where kernels are compiled (pipebench/jit.py)

    linear, _ = _models(objective, stages)
    X, XT, y, loss, l2, noise, sampling, batch, off = linear
    i, t = np.int64(0), 0.0  # int64 and float64 scalars
    w, z, rows = np.zeros(objective.dim), np.zeros(0), np.zeros(0, np.int64)
    hist, cur = np.zeros((1, 1, objective.dim)), np.zeros((1, stages), np.int64)
    ends = np.zeros((1, stages))
    moments = moment_buffers(optimizer_code, 1, objective.dim)
    pair = pair_buffers(0, objective.dim, stages)
    calls = {
        _loss_at: (t, linear, (), hist, cur, ends, w, (w, z, z), w),
        new_recorder: (i, i),
        sample_pair: (XT, y, loss, l2, off, w, w, (w, z, z), pair),
        copy_into: (w, w),
        steps_running: (t, ends),
        diverged: (t, t),
        draw_rows: (sampling, seed, i, batch, i, rows, rows),
        forward_block: (X, rows, i, i, i, w, z, i, i),
        output_gradient: (loss, z, y, rows, i, z),
        backward_block: (X, rows, i, i, i, z, w, l2, noise, seed, i, w, i, i, i),
        apply_step: (hyper, i, i, w, w, t, moments, hist[0], i, (), i, i, w),
        average_replicas: (off, hist, cur),
    }
    return {k.__name__: (k, tuple(map(typeof, args))) for k, args in calls.items()}


def plan_callees(
    sized: SizedReplay, objective: BlockLinear, optimizer_code: int, hyper: np.ndarray, seed: int
) -> dict[str, tuple[Callable, tuple]]:
    """rpd's plan kernel's own callees (the trace kernel calls the others), by name, with
    the numba argument types `_replay_plan` calls them with: its own arguments for
    `sized`, buffers made as it makes them. Compiled ahead as `trace_callees` are."""
    from numba import typeof, types  # numba only where kernels are compiled (pipebench/jit.py)

    optimizer, record = _kernel_inputs(sized, objective, optimizer_code, hyper, seed, 1, None)
    _, args = _kernel(sized.timeline, sized, objective, optimizer, record, hyper)
    block, _, _, S, mode, delta, plan_seed, pd_update_mb, pd_reads, lookback, linear = args[:11]
    X, _, _, _, l2, noise, _, _, _ = linear
    i, w = np.int64(0), np.zeros(objective.dim)
    version, delays = np.zeros((1, S), np.int64), np.zeros(S, np.int64)
    calls = {
        new_checkpoints: (lookback, S),
        keep_checkpoint: (i, block.dtype.type(0), version, version),
        fill_delays: (mode, delta, plan_seed, i, pd_update_mb, pd_reads, delays),
        versions_read: (i, delays, version, delays),
        forward_point: (linear[0], delays, i, linear[-1], version.astype(float), delays, w),
    }
    typed = {k.__name__: (k, tuple(map(typeof, args))) for k, args in calls.items()}
    # The plan calls this one without the trace kernel's offsets: compiled apart from the
    # trace's, for the defaults left out (numba types them `Omitted`).
    grads = (X, delays, i, i, i, w, w, l2, noise, seed, i, w)
    typed["backward_block"] = (backward_block, (*map(typeof, grads), *[types.Omitted(0)] * 3))
    return typed


def _models(objective: BlockLinear | Layered, stages: int) -> tuple[tuple, tuple]:
    """(linear, layered): what the kernels read of the objective, the other form empty."""
    if isinstance(objective, Layered):
        return (), objective_tuple(objective)
    linear = (
        objective.X, objective.XT, objective.y, objective.loss, objective.l2,
        objective.grad_noise, objective.sampling, objective.batch_size,
        block_offsets(objective.dim, stages),
    )  # fmt: skip
    return linear, ()


def _initial(objective: BlockLinear | Layered) -> np.ndarray:
    """The weights a replay starts from (block-linear: zero)."""
    return objective.init if isinstance(objective, Layered) else np.zeros(objective.dim)


@singledispatch
def _kernel(timeline, sized, objective, optimizer, record, on) -> tuple[Callable, tuple]:
    """The replay kernel of `timeline`'s form and its arguments."""
    raise TypeError(f"no replay for {type(timeline).__name__}")


@_kernel.register(Trace)
def _trace_kernel(t: Trace, sized, objective, optimizer, record, on) -> tuple[Callable, tuple]:
    trace = (
        t.kind, t.stage, t.mb, t.replica, t.start, t.end, t.v_fwd, t.v_bwd,
        sized.length, sized.until, t.stages, t.replicas,
    )  # fmt: skip
    linear, layered = _models(objective, t.stages)
    if layered and objective.stages != t.stages:
        raise ValueError(f"the objective has {objective.stages} blocks, the trace {t.stages}")
    hyper = optimizer[1]
    stale = hyper[PREDICT] != 0.0 or hyper[DELAY_LR] != 0.0
    tau = read_delays(t, sized.length) if stale else np.zeros(0, np.int64)
    # None unless a run follows the delay: the kernel then compiles no pipemare
    lag = stage_delays(t.kind, t.stage, tau, sized.length, t.stages) if on[DELAY_LR] else None
    d = objective.dim
    corrections = correction_buffers(on, sized.slots, t.replicas, d)
    outer = outer_state(on, _initial(objective), t.replicas, t.stages)
    partition = np.full(objective.examples, -1)
    pair = () if layered else pair_buffers(objective.examples, d, t.stages)
    args = (*trace, linear, layered, partition, pair, t.recompute, *optimizer, sized.slots,
            tau, lag, *corrections, outer, *record)  # fmt: skip
    return _replay_trace, args


@_kernel.register(RpdPlan)
def _plan_kernel(plan: RpdPlan, sized, objective, optimizer, record, on) -> tuple[Callable, tuple]:
    if plan.sampling != "objective":
        objective = replace(objective, sampling=SAMPLING_CODES[plan.sampling])
    steps = (
        plan.block, plan.time, sized.length, plan.stages, plan.mode,
        plan.delta, plan.seed, plan.pd_update_mb, plan.pd_reads, sized.lookback,
    )  # fmt: skip
    depth = optimizer[-1]
    if depth & (depth - 1):
        raise ValueError(f"rpd keeps its versions in a ring of a power of two, not {depth}")
    linear, layered = _models(objective, plan.stages)
    corrections = correction_buffers(on, 0, 1, objective.dim)
    partition = np.full(objective.examples, -1)  # draw_rows' memo, as the trace kernel's
    args = (*steps, linear, layered, partition, *optimizer, *corrections, *record)
    return _replay_plan, args
