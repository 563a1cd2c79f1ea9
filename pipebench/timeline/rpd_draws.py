"""rpd's random draws: the block of each iteration and the delays of its blocks (numba).

Draws come from a counter-based hash of (seed, stream, k, j), so any
iteration's delays can be regenerated without storing K x S numbers.
"""

from __future__ import annotations

import numpy as np

from pipebench.hashrng import uniform01
from pipebench.jit import njit
from pipebench.timeline.loops import largest

# int64 scalars, not int literals: numba would compile `uniform01` once per literal
_STAGE_STREAM = np.int64(11)
_DELAY_STREAM = np.int64(12)
_NO_COLUMN = np.int64(0)


@njit(cache=True)
def fill_delays(mode, delta, seed, k, pd_update_mb, pd_reads, out):
    """Delays d_j of iteration k for every block j, written into `out`."""
    bound = min(delta, k)
    for j in range(len(out)):
        if mode == 0:  # uniform on {0 .. min(delta, k)}
            out[j] = int(uniform01(seed, _DELAY_STREAM, k, j) * (bound + 1))
        elif mode == 1:  # max
            out[j] = bound
        elif mode == 2:  # zero
            out[j] = 0
        else:  # pd: the delays PipeDream's update k really had
            out[j] = k - pd_reads[pd_update_mb[k], j]


@njit(cache=True)
def draw_blocks(seed, stages, iterations):
    """The block each of `iterations` iterations updates, uniform over the stages."""
    out = np.empty(iterations, np.int32)
    for k in range(iterations):
        out[k] = int(uniform01(seed, _STAGE_STREAM, k, _NO_COLUMN) * stages)
    return out


@njit(cache=True)
def plan_delays(mode, delta, seed, block, pd_update_mb, pd_reads, stages):
    """Per iteration, the largest block delay; per stage, the largest delay of its own
    block, and the sum of its block's delays over all iterations."""
    n = len(block)
    worst = np.empty(n, np.int64)
    own = np.zeros(stages, np.int64)
    total = np.zeros(stages, np.int64)
    d = np.empty(stages, np.int64)
    for k in range(n):
        fill_delays(mode, delta, seed, k, pd_update_mb, pd_reads, d)
        worst[k] = largest(d)
        own[block[k]] = max(own[block[k]], d[block[k]])
        for j in range(stages):
            total[j] += d[j]
    return worst, own, total
