"""Which version of every block rpd's iteration k reads, without a table per iterate.

Iteration k reads block j as it was at iterate k - d_j, and the version it
had then is the number of updates of block j before that iterate. A table of
the S versions at each of the last H iterates (H = largest delay + 1) made
every read a cache miss at depth: 16 MB at S = 128. Instead the versions are
kept every `CHECK` iterations, with one bit per iteration since then saying
which blocks it drew: a read is a checkpoint plus the bits set below its
iterate, a few hundred kilobytes in all, and no scan of the draws.
"""

from __future__ import annotations

import numpy as np

from pipebench.jit import njit

CHECK = 32  # iterations between checkpoints: the bits of one mask word


@njit(cache=True)
def new_checkpoints(depth, stages):
    """(versions, drawn): room for the checkpoints that iterates up to depth - 1
    iterations back can fall after; drawn[row, j] has bit i set when iteration
    row * CHECK + i (of that checkpoint's span) drew block j."""
    rows = (depth - 1) // CHECK + 2
    return np.zeros((rows, stages), np.int64), np.zeros((rows, stages), np.int64)


@njit(cache=True)
def keep_checkpoint(k, drawn_block, version, checkpoints) -> None:
    """At the start of iteration k, which updates block `drawn_block`: the versions
    before its update (every CHECK iterations), and its draw."""
    versions, drawn = checkpoints
    row = (k // CHECK) % len(versions)
    if k % CHECK == 0:
        for j in range(version.shape[1]):
            versions[row, j] = version[0, j]
            drawn[row, j] = 0
    drawn[row, drawn_block] |= 1 << (k % CHECK)


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
    versions, drawn = checkpoints
    n = len(versions)
    for j in range(len(out)):
        at = k - delays[j]
        row = (at // CHECK) % n
        below = (1 << (at % CHECK)) - 1  # the draws of the span before iterate `at`
        out[j] = versions[row, j] + _ones(drawn[row, j] & below)
