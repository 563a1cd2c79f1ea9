"""Which version of every block rpd's iteration k reads, without a table per iterate.

Iteration k reads block j as it was at iterate k - d_j, and the version it
had then is the number of updates of block j before that iterate. A table of
the S versions at each of the last H iterates (H = largest delay + 1) made
every read a cache miss at depth: 16 MB at S = 128. Instead the versions are
kept every `CHECK` iterations, with one bit per iteration since then saying
which blocks it drew: a read is a checkpoint plus the bits set below its
iterate, a few hundred kilobytes in all, and no scan of the draws.

One int64 holds both, the version in the high 32 bits and the span's bits in
the low 32 (versions stay far below 2^31), so a read loads one word, from one
cache line; the rows are a power of two, so the row of an iterate is a mask of
its span number, not a division by a size known only at run time.
"""

from __future__ import annotations

import numpy as np

from pipebench.jit import njit

SPAN_BITS = 5
CHECK = 1 << SPAN_BITS  # iterations between checkpoints: the bits of one mask word
_IN_SPAN = CHECK - 1  # k & _IN_SPAN: iteration k's place in its span
_VERSION_SHIFT = 32  # a checkpoint's version sits above the span's 32 bits


@njit(cache=True)
def new_checkpoints(depth, stages):
    """Room for the checkpoints that iterates up to depth - 1 iterations back can
    fall after, rounded up to a power of two of rows: row (k >> SPAN_BITS) & (rows - 1)
    holds the span of iteration k; entry [row, j] is block j's version at the span's
    start << 32, plus bit i when iteration i of the span drew block j."""
    rows = 1
    while rows < (depth - 1) // CHECK + 2:
        rows *= 2
    return np.zeros((rows, stages), np.int64)


@njit(cache=True)
def keep_checkpoint(k, drawn_block, version, checkpoints) -> None:
    """At the start of iteration k, which updates block `drawn_block`: the versions
    before its update (every CHECK iterations), and its draw."""
    row = (k >> SPAN_BITS) & (len(checkpoints) - 1)
    if k & _IN_SPAN == 0:
        for j in range(version.shape[1]):
            checkpoints[row, j] = version[0, j] << _VERSION_SHIFT
    checkpoints[row, drawn_block] |= 1 << (k & _IN_SPAN)


@njit(cache=True)
def _ones(x):
    """The bits set in x, 0 <= x < 2^32 (a branch-free population count)."""
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    return ((x * 0x01010101) & 0xFFFFFFFF) >> 24


@njit(cache=True)
def versions_read(k, delays, checkpoints, out) -> None:
    """out[j]: the version of block j at iterate k - delays[j]."""
    last = len(checkpoints) - 1
    for j in range(len(out)):
        at = k - delays[j]
        entry = checkpoints[(at >> SPAN_BITS) & last, j]
        below = (1 << (at & _IN_SPAN)) - 1  # the draws of the span before iterate `at`
        out[j] = (entry >> _VERSION_SHIFT) + _ones(entry & below)
