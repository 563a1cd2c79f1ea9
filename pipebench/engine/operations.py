"""What the replay kernels share: an optimizer step of one stage, LocalSGD's average,
the count of steps still running at a sample time, and the divergence test.

A call that passes arrays costs numba a reference-count round trip per
array: fine for the layered replay, whose operations are matrix products,
and for the rare averages and samples; the block-linear kernel writes
`step_stage` out (see there).
"""

import numpy as np
from numba import njit

from pipebench.optim.step import apply_step

# A run has diverged when its loss is not finite or exceeds this multiple of the initial loss.
BLOWUP = 1e6


@njit(cache=True)
def diverged(value, initial) -> bool:
    return not np.isfinite(value) or value > BLOWUP * initial


@njit(cache=True)
def step_stage(r, s, t_end, off, hist, cur, acc, count, m1, m2, last, steps, horizon,
               code, hyper, mats, last_u_end) -> None:  # fmt: skip
    """U(s) of replica r: step its block with the mean of the gradients summed since the last."""
    H = hist.shape[1]
    v = cur[r, s]
    steps[r, s] += 1
    lo, hi = off[s], off[s + 1]
    apply_step(
        code, hyper, steps[r, s], horizon[r, s], hist[r, v % H], acc[r], 1.0 / count[r, s],
        m1[r], m2[r], last[r], mats, lo, hi, hist[r, (v + 1) % H],
    )  # fmt: skip
    acc[r, lo:hi] = 0.0
    count[r, s] = 0
    cur[r, s] = v + 1
    last_u_end[r, s] = t_end


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
