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
def _moved(w, w_rec, lo, hi) -> bool:
    """Whether block [lo, hi) of w differs from the recorded model's."""
    for j in range(lo, hi):  # noqa: SIM110 (a loop numba compiles to a loop, not a generator)
        if w[j] != w_rec[j]:
            return True
    return False


@njit(cache=True)
def _block_change(XT, lo, hi, w, w_rec, part) -> None:
    """part[i] = example i's change over block [lo, hi): X[i, lo:hi] . (w - w_rec)[lo:hi].

    Each example's change is summed over the block's columns in order, as a dot
    product would, but the examples run side by side along a row of `XT` = X^T:
    the inner loop is a contiguous, vectorisable axpy. Four columns are added per
    pass over `part`, in their order (the same sums, rounded at the same steps):
    a quarter of the loads and stores of `part`.
    """
    n = XT.shape[1]
    part[:] = 0.0
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


@njit(cache=True)
def _block_changes(XT, lo, hi, w, w_rec, part, w2, w_mid, part2) -> None:
    """`_block_change` of w from w_rec into part and of w2 from w_mid into part2, the
    same sums, with one read of the block's rows of XT for both."""
    n = XT.shape[1]
    part[:] = 0.0
    part2[:] = 0.0
    j = lo
    while hi - j >= 4:
        c0, c1 = w[j] - w_rec[j], w[j + 1] - w_rec[j + 1]
        c2, c3 = w[j + 2] - w_rec[j + 2], w[j + 3] - w_rec[j + 3]
        e0, e1 = w2[j] - w_mid[j], w2[j + 1] - w_mid[j + 1]
        e2, e3 = w2[j + 2] - w_mid[j + 2], w2[j + 3] - w_mid[j + 3]
        for i in unsigned_range(0, n):
            x0, x1, x2, x3 = XT[j, i], XT[j + 1, i], XT[j + 2, i], XT[j + 3, i]
            a = part[i] + x0 * c0
            a = a + x1 * c1
            a = a + x2 * c2
            part[i] = a + x3 * c3
            b = part2[i] + x0 * e0
            b = b + x1 * e1
            b = b + x2 * e2
            part2[i] = b + x3 * e3
        j += 4
    for col in range(j, hi):
        change, change2 = w[col] - w_rec[col], w2[col] - w_mid[col]
        for i in unsigned_range(0, n):
            x = XT[col, i]
            part[i] += x * change
            part2[i] += x * change2


@njit(cache=True)
def sample_loss(XT, y, loss, l2, off, w, w_rec, z_full, part) -> float:
    """f(w) on the whole dataset; w_rec and z_full = X w_rec are advanced to w, block
    by block (`_block_change`), for the blocks that moved."""
    n = XT.shape[1]
    for s in range(len(off) - 1):
        lo, hi = off[s], off[s + 1]
        if not _moved(w, w_rec, lo, hi):
            continue
        _block_change(XT, lo, hi, w, w_rec, part)
        for i in range(n):
            z_full[i] += part[i]
        for j in range(lo, hi):
            w_rec[j] = w[j]
    return mean_loss(loss, z_full, y, l2, w_rec)


@njit(cache=True)
def sample_pair(XT, y, loss, l2, off, w, w2, rec, pair):
    """(f(w), f(w2)), the recorder advanced to w2: two `sample_loss` calls, bit for bit,
    with one pass over X^T where a block moved in both.

    A sample reads all of X^T (2.5 MB in the benchmark, from L3: half of a pd replay's
    time); the replay holds a sample's model until the next sample's and takes both
    here. The second's changes wait in pair's part2[s] until the first's
    activations are complete, then are added in the blocks' order, as before.
    `pair` is what `pair_buffers` made; w_mid is left holding the first sample's model.
    """
    w_rec, z_full, part = rec
    _, w_mid, part2, moved2 = pair
    n = XT.shape[1]
    for s in range(len(off) - 1):
        lo, hi = off[s], off[s + 1]
        moved = _moved(w, w_rec, lo, hi)
        for j in range(lo, hi):
            w_mid[j] = w[j] if moved else w_rec[j]
        moved2[s] = _moved(w2, w_mid, lo, hi)
        if moved and moved2[s]:
            _block_changes(XT, lo, hi, w, w_rec, part, w2, w_mid, part2[s])
        elif moved:
            _block_change(XT, lo, hi, w, w_rec, part)
        elif moved2[s]:
            _block_change(XT, lo, hi, w2, w_mid, part2[s])
        if moved:
            for i in range(n):
                z_full[i] += part[i]
    first = mean_loss(loss, z_full, y, l2, w_mid)
    for s in range(len(off) - 1):
        lo, hi = off[s], off[s + 1]
        if moved2[s]:
            for i in range(n):
                z_full[i] += part2[s, i]
        for j in range(lo, hi):
            w_rec[j] = w2[j] if moved2[s] else w_mid[j]
    return first, mean_loss(loss, z_full, y, l2, w_rec)


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
    copy_into(w_rec, out_model)
    return value


@njit(cache=True)
def copy_into(a, out) -> None:
    """out[:] = a, as a loop: `out[:] = a` compiles numba's shape check, whose message
    takes seconds of string code to build."""
    for j in range(len(a)):
        out[j] = a[j]


def pair_buffers(n: int, d: int, blocks: int) -> tuple:
    """What `sample_pair` keeps, made here, not in a kernel (one allocation less to
    compile): the held model (the replay writes it: `visible_model`), the first
    sample's model, the second's change per block and example, whether each block moved."""
    return np.zeros(d), np.zeros(d), np.zeros((blocks, n)), np.zeros(blocks, np.bool_)


def block_offsets(dim: int, stages: int) -> np.ndarray:
    """Column ranges of the stages: block s is [off[s], off[s+1]), sizes differing by at most 1."""
    return np.array([s * dim // stages for s in range(stages + 1)], dtype=np.int64)
