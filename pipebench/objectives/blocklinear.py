"""Block-linear objectives: a linear model split column-wise into one block per stage.

Stage s adds `X[rows, block s] @ w_s` to a running activation `z`; the last
stage applies the loss; the backward sends the same output gradient `g` to
every stage, whose block gradient is `X[rows, block s]^T g` (docs/schedules.md).
Least squares and logistic regression differ only in the per-example loss,
so one set of kernels serves both. The kernels take the whole parameter
vector and a column range, so the replay can hand them any stored version.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pipebench.hashrng import normal01, permuted_run, uniform01
from pipebench.jit import njit
from pipebench.objectives.sketch import (  # defined without NumPy (`validate`)
    SAMPLE_FULL,
    SAMPLE_SEQUENTIAL,
    SAMPLE_SHUFFLE,
    SAMPLE_UNIFORM,
)

LOSS_SQUARED = 0  # 1/2 (z - y)^2
LOSS_LOGISTIC = 1  # log(1 + e^z) - y z, labels in {0, 1}


# int64 scalars, not int literals: numba compiles a called kernel once per literal argument
# (`uniform01` was compiled three times and `permuted` twice for the replay)
_BATCH_STREAM = np.int64(21)
_NOISE_STREAM = np.int64(22)
_ORDER_STREAM = np.int64(23)
_PICK_STREAM = np.int64(24)
_FIRST = np.int64(0)  # the first epoch, or a batch's first column
_ONE = np.int64(1)  # one position of a permutation


@njit(cache=True)
def draw_rows(
    mode: int, seed: int, n: int, b: int, draw: int, out: np.ndarray, partition=None
) -> None:
    """The examples of minibatch number `draw`, written to out[:b] (out[:n] when full).

    `partition` (n int64, -1 where not yet known), when given, keeps the shuffled
    partition's rows as a batch's are first drawn: a replay then permutes each batch's
    rows once, not once per micro-batch (the walks were 9% of a pd replay).
    """
    if mode == SAMPLE_FULL:
        for k in range(n):
            out[k] = k
    elif mode == SAMPLE_UNIFORM:
        for k in range(b):
            out[k] = min(int(uniform01(seed, _BATCH_STREAM, draw, k) * n), n - 1)
    elif mode == SAMPLE_SHUFFLE:
        # A fixed partition (one seeded shuffle of the examples, cut into n // b
        # batches), its batches visited in a new seeded order every epoch.
        per_epoch = n // b
        epoch, pos = divmod(draw, per_epoch)
        permuted_run(seed, _ORDER_STREAM, epoch, pos, per_epoch, _ONE, out)  # out[0]: the batch
        first = out[0] * b
        if partition is None:
            permuted_run(seed, _BATCH_STREAM, _FIRST, first, n, b, out)
        elif partition[first] < 0:  # a batch's rows are drawn and kept together
            permuted_run(seed, _BATCH_STREAM, _FIRST, first, n, b, out)
            for k in range(b):
                partition[first + k] = out[k]
        else:
            for k in range(b):
                out[k] = partition[first + k]
    else:
        # The partition of the Randomized PipeDream simulator: rows in their
        # stored order, cut into n // b batches (a remainder is never drawn).
        per_epoch = n // b
        if mode == SAMPLE_SEQUENTIAL:
            batch = draw % per_epoch
        else:
            batch = min(int(uniform01(seed, _PICK_STREAM, draw, _FIRST) * per_epoch), per_epoch - 1)
        for k in range(b):
            out[k] = batch * b + k


@njit(cache=True)
def unsigned_range(lo: int, hi: int):
    """range(lo, hi), 0 <= lo <= hi, as unsigned integers: numba adds the length to a
    negative signed index before each load, a select that costs instructions per load
    and stops a loop from vectorising; an unsigned index has no such fix-up."""
    return range(np.uint64(lo), np.uint64(hi))


@njit(cache=True)
def forward_block(X, rows, nrows, lo, hi, w, z, at=0, w_at=0) -> None:
    """z[at + k] += X[rows[at + k], lo:hi] . w[w_at + lo : w_at + hi], k < nrows:
    one stage's forward.

    Four rows' sums advance side by side, each over the columns in order
    (the same sums as one dot product per row): four independent chains of
    additions that the processor overlaps, where one would wait on each add.
    A batch's last nrows % 4 rows run as one more group of four, the last row
    repeated past the end and its extra sums discarded, not one row at a time.
    The offsets let the replay pass its whole buffers (every micro-batch slot's
    rows and activations, every weight version), not views into them: a view
    costs two atomic reference counts per call. Columns are unsigned indices
    (`unsigned_range`): numba then skips the negative-index fix-up on every load.
    """
    last = at + nrows - 1
    shift = np.uint64(w_at)
    for k in range(at, at + nrows, 4):
        r0, r1 = rows[k], rows[min(k + 1, last)]
        r2, r3 = rows[min(k + 2, last)], rows[min(k + 3, last)]
        a0 = a1 = a2 = a3 = 0.0  # X[row, j], not row views (as above)
        for j in unsigned_range(lo, hi):
            wj = w[shift + j]
            a0 += X[r0, j] * wj
            a1 += X[r1, j] * wj
            a2 += X[r2, j] * wj
            a3 += X[r3, j] * wj
        z[k] += a0  # (written out: a helper is one more kernel to compile)
        if k + 1 <= last:
            z[k + 1] += a1
        if k + 2 <= last:
            z[k + 2] += a2
        if k + 3 <= last:
            z[k + 3] += a3


@njit(cache=True)
def forward_point(X, rows, nrows, off, weights, slot, z) -> None:
    """z[k] += X[rows[k]] . w summed block by block, block s of w being
    weights[slot[s], off[s]:off[s + 1]]: S `forward_block` calls, in one. rpd reads
    each block's version where it is kept, with no copy into one vector first.

    Rows run side by side, four, then two, then one at a time, their z kept in
    registers across the blocks; each row's sum is the same as one at a time. At
    S = 128 a block is 4 columns and loop overhead dominates: a batch of 10 as
    4 + 4 + 2 takes 0.9x the time of 4 + 4 + 1 + 1. Blocks and columns are unsigned
    indices (`unsigned_range`), as in `forward_block`: the fix-ups took a quarter.
    """
    quads = nrows - nrows % 4
    for k in range(0, quads, 4):
        r0, r1, r2, r3 = rows[k], rows[k + 1], rows[k + 2], rows[k + 3]
        z0, z1, z2, z3 = z[k], z[k + 1], z[k + 2], z[k + 3]
        for s in unsigned_range(0, len(off) - 1):
            v = slot[s]
            a0 = a1 = a2 = a3 = 0.0
            for j in unsigned_range(off[s], off[s + 1]):
                wj = weights[v, j]
                a0 += X[r0, j] * wj
                a1 += X[r1, j] * wj
                a2 += X[r2, j] * wj
                a3 += X[r3, j] * wj
            z0 += a0
            z1 += a1
            z2 += a2
            z3 += a3
        z[k], z[k + 1], z[k + 2], z[k + 3] = z0, z1, z2, z3
    pairs = nrows - nrows % 2
    for k in range(quads, pairs, 2):  # at most one pair
        r0, r1 = rows[k], rows[k + 1]
        z0, z1 = z[k], z[k + 1]
        for s in unsigned_range(0, len(off) - 1):
            v = slot[s]
            a0 = a1 = 0.0
            for j in unsigned_range(off[s], off[s + 1]):
                wj = weights[v, j]
                a0 += X[r0, j] * wj
                a1 += X[r1, j] * wj
            z0 += a0
            z1 += a1
        z[k], z[k + 1] = z0, z1
    if pairs < nrows:
        row = rows[pairs]
        zk = z[pairs]
        for s in unsigned_range(0, len(off) - 1):
            v = slot[s]
            acc = 0.0
            for j in unsigned_range(off[s], off[s + 1]):
                acc += X[row, j] * weights[v, j]
            zk += acc
        z[pairs] = zk


@njit(cache=True)
def loss_derivative(loss: int, z: float, y: float) -> float:
    if loss == LOSS_SQUARED:
        return z - y
    if z >= 0.0:  # sigmoid(z) - y, evaluated without overflow
        return 1.0 / (1.0 + math.exp(-z)) - y
    e = math.exp(z)
    return e / (1.0 + e) - y


@njit(cache=True)
def example_loss(loss: int, z: float, y: float) -> float:
    if loss == LOSS_SQUARED:
        return 0.5 * (z - y) * (z - y)
    # softplus(z) - y z, stable for large |z|
    return max(z, 0.0) + math.log1p(math.exp(-abs(z))) - y * z


@njit(cache=True)
def output_gradient(loss, z, y, rows, nrows, g) -> None:
    """g[k] = dloss/dz for example k of the minibatch, divided by the batch size."""
    for k in range(nrows):
        g[k] = loss_derivative(loss, z[k], y[rows[k]]) / nrows


@njit(cache=True)
def backward_block(
    X, rows, nrows, lo, hi, g, w, l2, noise, seed, draw, acc, at=0, w_at=0, acc_at=0
) -> None:
    """acc[acc_at + j] += sum over k < nrows of X[rows[at + k], j] g[at + k], then
    + l2 w[w_at + j] (+ seeded Gaussian noise), for lo <= j < hi.

    Each acc[j] adds its rows' products in the rows' order; four rows are added
    per pass over acc[lo:hi] (the same sums, rounded at the same steps), so acc
    is loaded and stored once per four rows. The offsets are `forward_block`'s:
    whole buffers, no views. A call that leaves them out (rpd's plan) is compiled
    apart, with them as constants: the same code as without offsets (passed as
    zeros, they cost the plan 4% in its loops). The column loops are unsigned
    (`unsigned_range`): no index fix-up, so they vectorise.
    """
    into, shift = np.uint64(acc_at), np.uint64(w_at)
    quads = nrows - nrows % 4
    for k in range(at, at + quads, 4):
        r0, r1, r2, r3 = rows[k], rows[k + 1], rows[k + 2], rows[k + 3]
        g0, g1, g2, g3 = g[k], g[k + 1], g[k + 2], g[k + 3]
        for j in unsigned_range(lo, hi):
            a = acc[into + j] + X[r0, j] * g0
            a = a + X[r1, j] * g1
            a = a + X[r2, j] * g2
            acc[into + j] = a + X[r3, j] * g3
    for k in range(at + quads, at + nrows):
        row = rows[k]
        gk = g[k]
        for j in unsigned_range(lo, hi):
            acc[into + j] += X[row, j] * gk
    for j in unsigned_range(lo, hi):
        acc[into + j] += l2 * w[shift + j]
    if noise > 0.0:
        for j in range(lo, hi):
            acc[acc_at + j] += noise * normal01(seed, _NOISE_STREAM, draw, j)


@njit(cache=True)
def mean_loss(loss, z, y, l2, w) -> float:
    """The full objective from the activations of every example, plus the l2 term."""
    total = 0.0
    for i in range(len(z)):
        total += example_loss(loss, z[i], y[i])
    sq = 0.0
    for j in range(len(w)):
        sq += w[j] * w[j]
    return total / len(z) + 0.5 * l2 * sq


@dataclass(frozen=True, eq=False)
class BlockLinear:
    """A linear model on a dataset, with what a report needs to know about it.

    `smoothness` is L (the largest Hessian eigenvalue bound); `f_star` the
    optimal value and `w_star` the minimiser, or None when none exists (for
    example logistic regression without l2 on separable data). Both are
    computed when first read, by `optimum`: `validate` never needs them.
    """

    kind: str
    description: str
    X: np.ndarray  # (examples, dim), C-contiguous float64
    y: np.ndarray
    loss: int
    l2: float
    grad_noise: float
    sampling: int
    batch_size: int
    smoothness: float
    optimum: Callable[[BlockLinear], np.ndarray | None]  # computes w_star

    @cached_property
    def w_star(self) -> np.ndarray | None:
        return self.optimum(self)

    @cached_property
    def f_star(self) -> float | None:
        return None if self.w_star is None else self.value(self.w_star)

    @property
    def examples(self) -> int:
        return self.X.shape[0]

    @property
    def dim(self) -> int:
        return self.X.shape[1]

    @cached_property
    def XT(self) -> np.ndarray:
        """X^T, C-contiguous: the replay's loss samples read the examples side by side."""
        return np.ascontiguousarray(self.X.T)

    @property
    def rows_per_batch(self) -> int:
        return self.examples if self.sampling == SAMPLE_FULL else self.batch_size

    def value(self, w: np.ndarray) -> float:
        """f(w) on the whole dataset."""
        return float(mean_loss(self.loss, self.X @ w, self.y, self.l2, w))

    def full_gradient(self, w: np.ndarray) -> np.ndarray:
        """The exact gradient of f at w (no sampling, no noise)."""
        z = self.X @ w
        # sigmoid(z) - y for logistic, written with tanh so it cannot overflow
        squared = self.loss == LOSS_SQUARED
        g = z - self.y if squared else 0.5 * (1.0 + np.tanh(0.5 * z)) - self.y
        return self.X.T @ g / self.examples + self.l2 * w

    def batch_rows(self, draw: int, seed: int) -> np.ndarray:
        out = np.empty(self.rows_per_batch, dtype=np.int64)
        draw_rows(self.sampling, seed, self.examples, self.batch_size, draw, out)
        return out

    def batch_gradient(self, w: np.ndarray, draw: int, seed: int) -> np.ndarray:
        """The stochastic gradient of minibatch `draw` at w, through the stage kernels."""
        rows = self.batch_rows(draw, seed)
        z = np.zeros(len(rows))
        forward_block(self.X, rows, len(rows), 0, self.dim, w, z)
        g = np.empty(len(rows))
        output_gradient(self.loss, z, self.y, rows, len(rows), g)
        out = np.zeros(self.dim)
        backward_block(
            self.X, rows, len(rows), 0, self.dim, g, w, self.l2, self.grad_noise, seed, draw, out
        )
        return out
