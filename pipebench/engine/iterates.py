"""Which version of every block rpd's iteration k reads, without a table per iterate.

Iteration k reads block j as it was at iterate k - d_j, and the version it
had then is the number of updates of block j before that iterate. A table of
the S versions at each of the last H iterates (H = largest delay + 1) made
every read a cache miss at depth: 16 MB at S = 128. Instead the versions are
kept every `CHECK` iterations, and the block draws since that checkpoint are
counted: a few hundred kilobytes, read where the delays point.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CHECK = 32  # iterations between checkpoints: scans of up to CHECK - 1 draws per block


@njit(cache=True)
def new_checkpoints(depth, stages):
    """Room for the checkpoints that iterates up to depth - 1 iterations back can fall after."""
    return np.zeros(((depth - 1) // CHECK + 2, stages), np.int64)


@njit(cache=True)
def keep_checkpoint(k, version, checkpoints) -> None:
    """At the start of iteration k: the versions before its update (every CHECK iterations)."""
    if k % CHECK == 0:
        row = (k // CHECK) % len(checkpoints)
        for j in range(version.shape[1]):
            checkpoints[row, j] = version[0, j]


@njit(cache=True)
def versions_read(k, delays, block, checkpoints, out) -> None:
    """out[j]: the version of block j at iterate k - delays[j]."""
    n = len(checkpoints)
    for j in range(len(out)):
        at = k - delays[j]
        c = at // CHECK
        v = checkpoints[c % n, j]
        for i in range(c * CHECK, at):
            if block[i] == j:
                v += 1
        out[j] = v
