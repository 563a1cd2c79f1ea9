"""What the replay kernels share: LocalSGD's average, the count of steps still
running at a sample time, and the divergence test.

A call that passes arrays costs numba a reference-count round trip per
array: fine for these rare operations; the kernels write a stage's
optimizer step out in their loop (see there).
"""

import numpy as np

from pipebench.jit import njit

# A run has diverged when its loss is not finite or exceeds this multiple of the initial loss.
BLOWUP = 1e6


@njit(cache=True)
def diverged(value, initial) -> bool:
    return not np.isfinite(value) or value > BLOWUP * initial


@njit(cache=True)
def average_replicas(off, hist, cur) -> None:
    """AVG: every replica's current weights become the replicas' mean."""
    R, H = hist.shape[0], hist.shape[1]
    for s in range(len(off) - 1):
        for j in range(off[s], off[s + 1]):
            total = 0.0
            for r in range(R):
                total += hist[r, cur[r, s] % H, j]
            for r in range(R):
                hist[r, cur[r, s] % H, j] = total / R


@njit(cache=True)
def steps_running(t, last_u_end) -> int:
    """Optimizer steps that have started but not ended at time t (a sample does not see them)."""
    running = 0
    for r in range(last_u_end.shape[0]):
        for s in range(last_u_end.shape[1]):
            running += last_u_end[r, s] > t
    return running
