"""Loss samples on the simulated clock, updated incrementally.

A sample needs f at the current model on the whole dataset. The recorder
keeps the activations `z = X w_rec` of the model it last sampled and, at the
next sample, adds `X[:, block] (w - w_rec)[block]` for the blocks that
changed only: never more work than recomputing `X w`, and much less when
samples are frequent or few blocks moved (rpd). It reads X^T (the
objective's `XT`), so that the examples' sums run side by side.
"""

from __future__ import annotations

import numpy as np

from pipebench.jit import njit
from pipebench.objectives.blocklinear import mean_loss, unsigned_range


@njit(cache=True)
def visible_model(t, off, hist, cur, last_u_end, out) -> None:
    """The model at time t into `out`: each block at its latest finished version,
    averaged over replicas (LocalSGD reports the replica average)."""
    R, H = hist.shape[0], hist.shape[1]
    for s in range(len(off) - 1):
        lo, hi = off[s], off[s + 1]
        out[lo:hi] = 0.0
        for r in range(R):
            v = cur[r, s]
            if last_u_end[r, s] > t:  # this stage's step is still running at t
                v -= 1
            w = hist[r, v % H]
            for j in range(lo, hi):
                out[j] += w[j]
        if R > 1:
            for j in range(lo, hi):
                out[j] /= R


@njit(cache=True)
def sample_loss(XT, y, loss, l2, off, w, w_rec, z_full, part) -> float:
    """f(w) on the whole dataset; w_rec and z_full = X w_rec are advanced to w.

    Each example's change is summed over a moved block's columns in order, as
    a dot product would, but the examples run side by side along a row of
    `XT` = X^T: the inner loop is a contiguous, vectorisable axpy. Four
    columns are added per pass over `part`, in their order (the same sums,
    rounded at the same steps): a quarter of the loads and stores of `part`.
    """
    n = XT.shape[1]
    for s in range(len(off) - 1):
        lo, hi = off[s], off[s + 1]
        moved = False
        for j in range(lo, hi):
            if w[j] != w_rec[j]:
                moved = True
                break
        if not moved:
            continue
        part[:] = 0.0  # part[i]: example i's change over this block
        j = lo
        while hi - j >= 4:
            c0, c1 = w[j] - w_rec[j], w[j + 1] - w_rec[j + 1]
            c2, c3 = w[j + 2] - w_rec[j + 2], w[j + 3] - w_rec[j + 3]
            for i in unsigned_range(0, n):
                a = part[i] + XT[j, i] * c0
                a = a + XT[j + 1, i] * c1
                a = a + XT[j + 2, i] * c2
                part[i] = a + XT[j + 3, i] * c3
            j += 4
        for col in range(j, hi):  # the block's last width % 4 columns
            change = w[col] - w_rec[col]
            for i in unsigned_range(0, n):
                part[i] += XT[col, i] * change
        for i in range(n):
            z_full[i] += part[i]
        for j in range(lo, hi):
            w_rec[j] = w[j]
    return mean_loss(loss, z_full, y, l2, w_rec)


@njit(cache=True)
def new_recorder(n: int, d: int):
    """Buffers of a recorder at w = 0: the visible model, and what `take_sample` keeps
    (the last sampled model, X @ it, one block's change per example)."""
    return np.zeros(d), (np.zeros(d), np.zeros(n), np.zeros(n))


@njit(cache=True)
def take_sample(t, XT, y, loss, l2, off, hist, cur, last_u_end, w_vis, rec, out_model):
    """f at the model visible at time t; the model is also copied to `out_model`.
    `rec` is what `new_recorder` made."""
    w_rec, z_full, part = rec
    visible_model(t, off, hist, cur, last_u_end, w_vis)
    value = sample_loss(XT, y, loss, l2, off, w_vis, w_rec, z_full, part)
    for j in range(len(w_rec)):  # a loop: `out_model[:] = w_rec` compiles numba's shape
        out_model[j] = w_rec[j]  # check, whose message takes seconds of string code to build
    return value


def block_offsets(dim: int, stages: int) -> np.ndarray:
    """Column ranges of the stages: block s is [off[s], off[s+1]), sizes differing by at most 1."""
    return np.array([s * dim // stages for s in range(stages + 1)], dtype=np.int64)
