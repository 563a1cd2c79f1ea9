"""The replay loop: a timeline walked in causal order with real arithmetic.

`_replay_trace` applies F, B, U and AVG exactly as SCHEDULES.md says: a
forward reads the weight version the trace records (vF), a backward
multiplies by vB, an update steps the stage's optimizer with the mean of the
gradients summed since its last step, AVG averages the replicas.
`_replay_plan` does the same for rpd's iteration plan. Both sample the loss
at fixed simulated times and stop at the first sign of divergence.

Weights live in one array per replica, `hist[r, v % H]` holding version v
of every block, H being the largest version lag the trace has (replay_size.py):
a stage's step writes the next slot, so stashed versions stay readable
without copies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import singledispatch

import numpy as np
from numba import njit

from pipebench.engine.iterates import keep_checkpoint, new_checkpoints, versions_read
from pipebench.engine.layered import objective_tuple, replay_layered, replay_layered_plan
from pipebench.engine.operations import average_replicas, diverged, steps_running
from pipebench.engine.recorder import block_offsets, new_recorder, take_sample
from pipebench.engine.replay_size import replay_needs
from pipebench.objectives.blocklinear import (
    SAMPLE_FULL,
    SAMPLING_CODES,
    BlockLinear,
    backward_block,
    draw_rows,
    forward_block,
    forward_point,
    mean_loss,
    output_gradient,
)
from pipebench.objectives.layered import Layered
from pipebench.optim.step import EF, apply_step
from pipebench.timeline.rpd import RpdPlan
from pipebench.timeline.rpd_draws import fill_delays
from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, UPDATE, Trace


@njit(cache=True, nogil=True)
def _replay_trace(
    kind, stage, mb, replica, start, end, v_fwd, v_bwd, n_rows, until, S, R,
    X, y, loss, l2, noise, sampling, batch, off,
    seed, code, hyper, horizon, H, P, times, out_loss, out_updates, out_model, stop,
):  # fmt: skip
    """Replay rows [0, n_rows) that end by `until`; returns (samples, updates, micro-batches).

    Returns early, with the work done so far, once `stop[0]` is set (Ctrl-C).
    """
    n, d = X.shape
    nb = n if sampling == SAMPLE_FULL else batch
    hist = np.zeros((R, H, d))
    cur = np.zeros((R, S), np.int64)
    last_u_end = np.full((R, S), -np.inf)
    acc = np.zeros((R, d))
    count = np.zeros((R, S), np.int64)
    m1 = np.zeros((R, d))
    m2 = np.zeros((R, d))
    last = np.zeros((R, d))
    mats = np.zeros((0, 4), np.int64)  # no weight matrices (Muon is for layered objectives)
    steps = np.zeros((R, S), np.int64)
    rows = np.zeros((P, nb), np.int64)
    z = np.zeros((P, nb))
    g = np.zeros((P, nb))
    w_vis, w_rec, z_full = new_recorder(n, d)
    initial = mean_loss(loss, z_full, y, l2, w_rec)
    n_pts = len(times)
    p = 0
    updates = 0
    done = 0
    for i in range(n_rows + 1):
        t_next = start[i] if i < n_rows else np.inf
        while p < n_pts and times[p] < t_next:  # sample the loss before anything later starts
            value = take_sample(
                times[p], X, y, loss, l2, off, hist, cur, last_u_end, w_vis, w_rec, z_full,
                out_model,
            )  # fmt: skip
            out_loss[p] = value
            out_updates[p] = updates - steps_running(times[p], last_u_end)
            p += 1
            if diverged(value, initial):
                return p, updates, done
        if i == n_rows or (i % 4096 == 0 and stop[0] != 0):
            break
        if end[i] > until:
            continue
        k = kind[i]
        s = stage[i]
        r = replica[i]
        if k == FORWARD:
            slot = mb[i] % P
            if s == 0:
                draw_rows(sampling, seed, n, batch, mb[i], rows[slot])
                z[slot, :] = 0.0
            w = hist[r, v_fwd[i] % H]
            forward_block(X, rows[slot], nb, off[s], off[s + 1], w, z[slot])
            if s == S - 1:
                output_gradient(loss, z[slot], y, rows[slot], nb, g[slot])
        elif k == BACKWARD:
            slot = mb[i] % P
            w = hist[r, v_bwd[i] % H]
            backward_block(
                X, rows[slot], nb, off[s], off[s + 1], g[slot], w, l2, noise, seed, mb[i], acc[r]
            )
            count[r, s] += 1
            if s == 0:
                done += 1
        elif k == UPDATE:
            # operations.step_stage written out: in this loop, tens of millions of
            # updates, a call with its 17 arguments costs 230 ns each (+50% time).
            v = cur[r, s]
            steps[r, s] += 1
            lo, hi = off[s], off[s + 1]
            apply_step(
                code, hyper, steps[r, s], horizon[r, s], hist[r, v % H], acc[r], 1.0 / count[r, s],
                m1[r], m2[r], last[r], mats, lo, hi, hist[r, (v + 1) % H],
            )  # fmt: skip
            acc[r, lo:hi] = 0.0
            count[r, s] = 0
            cur[r, s] = v + 1
            last_u_end[r, s] = end[i]
            updates += 1
        elif k == AVERAGE:
            average_replicas(off, hist, cur)
    return p, updates, done


@njit(cache=True, nogil=True)
def _replay_plan(
    block, time, n_iter, S, mode, delta, plan_seed, pd_update_mb, pd_reads,
    X, y, loss, l2, noise, sampling, batch, off,
    seed, code, hyper, horizon, H, times, out_loss, out_updates, out_model, stop,
):  # fmt: skip
    """rpd: iteration k steps block[k] with the gradient at a point whose block j is
    the iterate from d_j iterations ago. Returns (samples, iterations done)."""
    n, d = X.shape
    nb = n if sampling == SAMPLE_FULL else batch
    hist = np.zeros((1, H, d))
    version = np.zeros((1, S), np.int64)
    checkpoints = new_checkpoints(H, S)
    read = np.zeros(S, np.int64)  # read[j]: the version of block j iteration k reads
    point = np.zeros(d)  # the mixed point of an iteration
    never = np.full((1, S), -np.inf)
    delays = np.zeros(S, np.int64)
    rows = np.zeros(nb, np.int64)
    z = np.zeros(nb)
    g = np.zeros(nb)
    acc = np.zeros(d)
    m1 = np.zeros(d)
    m2 = np.zeros(d)
    last = np.zeros(d)
    mats = np.zeros((0, 4), np.int64)
    steps = np.zeros(S, np.int64)
    w_vis, w_rec, z_full = new_recorder(n, d)
    initial = mean_loss(loss, z_full, y, l2, w_rec)
    n_pts = len(times)
    p = 0
    for k in range(n_iter + 1):
        t_next = time[k] if k < n_iter else np.inf
        while p < n_pts and times[p] < t_next:
            value = take_sample(
                times[p], X, y, loss, l2, off, hist, version, never, w_vis, w_rec, z_full,
                out_model,
            )  # fmt: skip
            out_loss[p] = value
            out_updates[p] = k
            p += 1
            if diverged(value, initial):
                return p, k
        if k == n_iter or (k % 256 == 0 and stop[0] != 0):
            break
        keep_checkpoint(k, version, checkpoints)
        fill_delays(mode, delta, plan_seed, k, pd_update_mb, pd_reads, delays)
        versions_read(k, delays, block, checkpoints, read)
        draw_rows(sampling, seed, n, batch, k, rows)
        for j in range(S):
            slot = read[j] % H
            for c in range(off[j], off[j + 1]):
                point[c] = hist[0, slot, c]
        z[:] = 0.0
        forward_point(X, rows, nb, off, point, z)
        output_gradient(loss, z, y, rows, nb, g)
        s = block[k]
        lo, hi = off[s], off[s + 1]
        backward_block(X, rows, nb, lo, hi, g, point, l2, noise, seed, k, acc)
        v = version[0, s]
        steps[s] += 1
        apply_step(code, hyper, steps[s], horizon[0, s], hist[0, v % H], acc, 1.0, m1, m2, last,
                   mats, lo, hi, hist[0, (v + 1) % H])  # fmt: skip
        acc[lo:hi] = 0.0
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
    return SizedReplay(plan, until, n, _plan_depth(plan, n), 1, horizon)


def _plan_depth(plan: RpdPlan, n: int) -> int:
    """Iterates rpd must remember: the largest delay it can draw in n iterations, plus one."""
    if n == 0:
        return 1
    if plan.delays == "zero":
        return 1
    if plan.delays == "pd":
        return _largest_pd_delay(plan.pd_reads, plan.pd_update_mb, n) + 1
    return min(plan.delta, n - 1) + 1


@njit(cache=True)
def _largest_pd_delay(pd_reads, pd_update_mb, n):
    worst = 0
    for k in range(n):
        worst = max(worst, k - pd_reads[pd_update_mb[k]].min())
    return worst


def replay(
    sized: SizedReplay,
    objective: BlockLinear | Layered,
    optimizer_code: int,
    hyper: np.ndarray,
    seed: int,
    points: int,
    stop: np.ndarray | None = None,
) -> Curve:
    """Train `objective` along the sized timeline; the loss is sampled `points` times
    evenly over the run (after time 0) and once at time 0.
    """
    times = np.linspace(0.0, sized.until, points + 1)
    out_loss = np.full(points + 1, np.nan)
    out_updates = np.zeros(points + 1, dtype=np.int64)
    out_model = np.zeros(objective.dim)
    stop = np.zeros(1, dtype=np.int64) if stop is None else stop
    # ef reads each update as old - new weights: the two must be separate versions
    depth = max(sized.depth, 2) if hyper[EF] != 0.0 else sized.depth
    optimizer = (seed, optimizer_code, hyper, sized.horizon, depth)
    record = (times, out_loss, out_updates, out_model, stop)
    n_pts, updates, microbatches = _walk(sized.timeline, sized, objective, optimizer, record)
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


def _linear_model(objective: BlockLinear, stages: int) -> tuple:
    """What the block-linear kernels read of the objective."""
    return (
        objective.X, objective.y, objective.loss, objective.l2, objective.grad_noise,
        objective.sampling, objective.batch_size, block_offsets(objective.dim, stages),
    )  # fmt: skip


@singledispatch
def _walk(timeline, sized, objective, optimizer, record) -> tuple[int, int, int]:
    """Run the replay kernel of `timeline`'s form; (samples, updates, micro-batches)."""
    raise TypeError(f"no replay for {type(timeline).__name__}")


@_walk.register(Trace)
def _walk_trace(t: Trace, sized, objective, optimizer, record) -> tuple[int, int, int]:
    trace = (
        t.kind, t.stage, t.mb, t.replica, t.start, t.end, t.v_fwd, t.v_bwd,
        sized.length, sized.until, t.stages, t.replicas,
    )  # fmt: skip
    if isinstance(objective, Layered):
        model = objective_tuple(objective)
        return replay_layered(*trace, model, t.recompute, *optimizer, sized.slots, *record)
    model = _linear_model(objective, t.stages)
    return _replay_trace(*trace, *model, *optimizer, sized.slots, *record)


@_walk.register(RpdPlan)
def _walk_plan(plan: RpdPlan, sized, objective, optimizer, record) -> tuple[int, int, int]:
    if plan.sampling != "objective":
        objective = replace(objective, sampling=SAMPLING_CODES[plan.sampling])
    steps = (
        plan.block, plan.time, sized.length, plan.stages, plan.mode,
        plan.delta, plan.seed, plan.pd_update_mb, plan.pd_reads,
    )  # fmt: skip
    if isinstance(objective, Layered):
        n_pts, done = replay_layered_plan(*steps, objective_tuple(objective), *optimizer, *record)
    else:
        model = _linear_model(objective, plan.stages)
        n_pts, done = _replay_plan(*steps, *model, *optimizer, *record)
    return n_pts, done, done
