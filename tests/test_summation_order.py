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

from pipebench.engine.recorder import pair_buffers, sample_loss, sample_pair
from pipebench.objectives.blocklinear import (
    LOSS_SQUARED,
    backward_block,
    forward_block,
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


@pytest.mark.parametrize("width", WIDTHS)
def test_two_samples_in_one_pass_are_two_samples(width):
    """`sample_pair` gives what two `sample_loss` calls give, bit for bit: blocks that move
    in the first sample only, the second only, both, neither; -0.0 against 0.0 (equal: not
    a move), NaN (always a move)."""
    rng = np.random.default_rng(10 + width)
    stages, n = 5, 13
    d = stages * width
    off = np.arange(0, d + 1, width, dtype=np.int64)
    XT, y = rng.standard_normal((d, n)), rng.standard_normal(n)
    w_rec = rng.standard_normal(d)
    w_rec[off[4]] = 0.0
    z = rng.standard_normal(n) * 1e-3
    w1, w2 = w_rec + rng.standard_normal(d), w_rec + rng.standard_normal(d)
    first, second = slice(off[1], off[2]), slice(off[2], off[3])
    w1[second] = w_rec[second]  # block 2 moves in the second sample only
    w2[first] = w1[first]  # block 1 in the first only
    w1[off[3] : off[4]] = w2[off[3] : off[4]] = w_rec[off[3] : off[4]]  # block 3 in neither
    w1[off[4] :] = w_rec[off[4] :]
    w1[off[4]] = -0.0  # block 4: -0.0 is no move; NaN in the second is one
    w2[off[4] :] = w1[off[4] :]
    w2[off[4] + width - 1] = np.nan
    want = []
    rec, z_full = w_rec.copy(), z.copy()
    for w in (w1, w2):
        want.append(sample_loss(XT, y, LOSS_SQUARED, 0.01, off, w, rec, z_full, np.zeros(n)))
        if w is w1:
            rec_first = rec.copy()
    pair = pair_buffers(n, d, stages)
    got_rec, got_z = w_rec.copy(), z.copy()
    got = sample_pair(XT, y, LOSS_SQUARED, 0.01, off, w1, w2, (got_rec, got_z, np.zeros(n)), pair)
    assert np.array_equal([got[0]], [want[0]]) and np.array_equal([got[1]], [want[1]], True)
    assert np.array_equal(got_z, z_full, True)
    assert np.array_equal(got_rec, rec, True) and np.array_equal(pair[1], rec_first)
    assert np.signbit(pair[1][off[4]]) == np.signbit(rec_first[off[4]])


@pytest.mark.parametrize("nrows", range(1, 11))
def test_forward_sums_each_row_in_column_order(nrows):
    """Each row's sum from 0 over the columns in order, then added to z; at offsets into
    whole buffers, as the replay passes them (rows and z of slot 1, weight version 2)."""
    rng = np.random.default_rng(nrows)
    X = rng.standard_normal((20, 9))
    rows = rng.integers(0, 20, (3, nrows)).astype(np.int64)
    w = rng.standard_normal((4, 9))
    z = rng.standard_normal((3, nrows))
    lo, hi = 2, 7
    expected = z.copy()
    for k in range(nrows):
        a = 0.0
        for j in range(lo, hi):
            a += float(X[rows[1, k], j]) * float(w[2, j])
        expected[1, k] = float(z[1, k]) + a
    forward_block(X, rows.reshape(-1), nrows, lo, hi, w.reshape(-1), z.reshape(-1), nrows, 18)
    assert np.array_equal(z, expected)


@pytest.mark.parametrize("nrows", range(1, 11))
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


@pytest.mark.parametrize("nrows", [1, 4, 10])
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_block_gradient_at_offsets_is_the_same_gradient(nrows, noise):
    """At offsets into whole buffers, as the replay passes them (rows and g of slot 1,
    weight version 2, replica 1's accumulator), the gradient of those rows alone."""
    rng = np.random.default_rng(nrows)
    X = rng.standard_normal((20, 9))
    rows = rng.integers(0, 20, (3, nrows)).astype(np.int64)
    g, w, acc = rng.standard_normal((3, nrows)), rng.standard_normal((4, 9)), np.ones((2, 9))
    lo, hi = 2, 7
    want = acc[1].copy()
    backward_block(X, rows[1].copy(), nrows, lo, hi, g[1].copy(), w[2].copy(), 0.1, noise, 5, 3,
                   want)  # fmt: skip
    got = acc.copy()
    backward_block(X, rows.reshape(-1), nrows, lo, hi, g.reshape(-1), w.reshape(-1), 0.1, noise,
                   5, 3, got.reshape(-1), nrows, 18, 9)  # fmt: skip
    assert np.array_equal(got[1], want) and np.array_equal(got[0], acc[0])
