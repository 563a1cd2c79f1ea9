"""The kernels' sums (block-linear; the mlp's bias gradients), bit for bit, against the
same sums in plain Python.

The kernels group their additions for speed (several columns or rows per pass), but
each output must still be the one ordered sum a plain loop gives, rounded at the same
steps: that is what keeps every run's CSVs byte-identical across such changes. Python
floats are IEEE doubles, so a plain loop is an exact reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipebench.engine.recorder import sample_loss
from pipebench.objectives.blocklinear import (
    LOSS_SQUARED,
    backward_block,
    forward_point,
    mean_loss,
)
from pipebench.objectives.mlp import _add_column_sums

WIDTHS = [1, 3, 4, 5, 8, 11]  # below, at and around the kernels' group of four


def ordered_sample(XT, w, w_rec, z, off) -> np.ndarray:
    """X (w - w_rec) added to z block by block, each example's block summed column by column."""
    z = z.copy()
    for s in range(len(off) - 1):
        cols = range(off[s], off[s + 1])
        if all(w[j] == w_rec[j] for j in cols):
            continue
        for i in range(XT.shape[1]):
            part = 0.0
            for j in cols:
                part += float(XT[j, i]) * (float(w[j]) - float(w_rec[j]))
            z[i] = float(z[i]) + part
    return z


@pytest.mark.parametrize("width", WIDTHS)
def test_loss_sample_sums_each_block_in_column_order(width):
    rng = np.random.default_rng(width)
    stages, n = 3, 13
    d = stages * width
    off = np.arange(0, d + 1, width, dtype=np.int64)
    XT = rng.standard_normal((d, n))
    y = rng.standard_normal(n)
    w_rec = rng.standard_normal(d)
    z = rng.standard_normal(n) * 1e-3  # small: the blocks' sums set the low bits
    w = w_rec + rng.standard_normal(d)
    w[off[1] : off[2]] = w_rec[off[1] : off[2]]  # a block that did not move
    expected_z = ordered_sample(XT, w, w_rec, z, off)
    z_full, rec = z.copy(), w_rec.copy()
    value = sample_loss(XT, y, LOSS_SQUARED, 0.01, off, w, rec, z_full, np.zeros(n))
    assert np.array_equal(z_full, expected_z)
    assert np.array_equal(rec, w)
    assert value == mean_loss(LOSS_SQUARED, expected_z, y, 0.01, w)


@pytest.mark.parametrize("nrows", [1, 3, 4, 5, 8, 10])
def test_block_gradient_adds_rows_in_order(nrows):
    rng = np.random.default_rng(nrows)
    X = rng.standard_normal((20, 9))
    rows = rng.integers(0, 20, nrows).astype(np.int64)
    g = rng.standard_normal(nrows)
    w = rng.standard_normal(9)
    acc = rng.standard_normal(9)
    lo, hi, l2 = 2, 7, 0.1
    expected = acc.copy()
    for j in range(lo, hi):
        a = float(acc[j])
        for k in range(nrows):
            a += float(X[rows[k], j]) * float(g[k])
        expected[j] = a + l2 * float(w[j])
    backward_block(X, rows, nrows, lo, hi, g, w, l2, 0.0, 0, 0, acc)
    assert np.array_equal(acc, expected)


@pytest.mark.parametrize("nrows", range(1, 12))
@pytest.mark.parametrize("width", [1, 4, 5])
def test_mixed_point_forward_sums_each_row_block_by_block(nrows, width):
    """Every batch size through the groups of four, the pair and the single row: each
    row's z is its blocks' sums, each from 0.0 in column order, added block after block;
    block s read from the weights' row slot[s] (rpd's versions where they are kept)."""
    rng = np.random.default_rng(nrows * 10 + width)
    stages = 5
    d = stages * width
    off = np.arange(0, d + 1, width, dtype=np.int64)
    X = rng.standard_normal((23, d))
    rows = rng.integers(0, 23, nrows).astype(np.int64)
    weights = rng.standard_normal((4, d))
    slot = rng.integers(0, 4, stages).astype(np.int64)
    z = rng.standard_normal(nrows) * 1e-3  # small: the blocks' sums set the low bits
    expected = z.copy()
    for k in range(nrows):
        total = float(z[k])
        for s in range(stages):
            part = 0.0
            for j in range(off[s], off[s + 1]):
                part += float(X[rows[k], j]) * float(weights[slot[s], j])
            total += part
        expected[k] = total
    forward_point(X, rows, nrows, off, weights, slot, z)
    assert np.array_equal(z, expected)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 4)])
def test_mlp_bias_gradient_is_numpys_column_sum_added_once(shape):
    """The mlp backward adds each column's sum, summed from 0 in row order, to the gradient:
    `grad[lo:] += m.sum(axis=0)` as numba and NumPy compute it (-0.0 columns included)."""
    rng = np.random.default_rng(shape[0])
    m = rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 8, shape)
    m[:, 0] = -0.0
    grad = rng.standard_normal(shape[1] + 3)
    grad[1] = -0.0
    expected = grad.copy()
    for j in range(shape[1]):
        total = 0.0
        for i in range(shape[0]):
            total += float(m[i, j])
        expected[1 + j] = float(expected[1 + j]) + total
    _add_column_sums(grad, 1, m)
    assert np.array_equal(grad, expected) and np.signbit(grad[1]) == np.signbit(expected[1])
