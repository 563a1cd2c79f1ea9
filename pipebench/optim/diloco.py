"""DiLoCo's outer step for LocalSGD (Douillard et al., 2023; streaming: Douillard et al., 2025).

At each averaging round the replicas' mean is not taken as the new global
weights; the pseudo-gradient Δ = θ − mean (θ the last global weights) is
stepped by an outer optimizer: SGD (heavy-ball momentum μ, none by default)
or Nesterov momentum (DiLoCo's choice: lr 0.7, μ 0.9), and every replica
restarts from the new θ. Written as θ' = mean + (Δ − lr · d), d the outer
direction, so that outer lr 1 without momentum gives the mean bit for bit.

With `fragments: F` (streaming DiLoCo) stage s belongs to fragment s mod F
and round k synchronises fragment k mod F only; the others keep training
locally. One fragment is plain DiLoCo. With `quantize: b`, each replica sends
its pseudo-gradient θ − w_r rounded to b bits: a symmetric uniform grid of
2^(b−1) − 1 steps each side of 0, scaled per stage block to its largest
magnitude (streaming DiLoCo sends 4-bit floats; this is the plain integer grid).
With `overlap_steps: τ` (streaming DiLoCo's overlapping communication) the
replicas do not wait for the new θ: each goes on from its own weights and
merges θ into a synced stage's block after its τ-th next step of that stage,
w ← α·w + (1 − α)·θ with `alpha` (0, the default: θ replaces w, as without
overlap).
"""

from __future__ import annotations

import numpy as np

from pipebench.jit import njit
from pipebench.optim.step import (
    ALPHA,
    FRAGMENTS,
    OUTER_LR,
    OUTER_MU,
    OUTER_NESTEROV,
    OVERLAP,
    QUANTIZE,
)


def outer_state(hyper, init, replicas, stages):
    """(global weights θ, outer momentum, rounds done, steps of each replica and stage
    until θ is merged) when `hyper` asks for an outer step, else None (the replay
    kernels compile DiLoCo only for a run that uses it): θ starts at `init`."""
    if hyper[OUTER_LR] == 0.0:
        return None
    d = len(init)
    rounds, due = np.zeros(1, np.int64), np.zeros((replicas, stages), np.int64)
    return init.copy(), np.zeros(d), rounds, due


@njit(cache=True)
def merge(w, theta, alpha, lo, hi) -> None:
    """w ← θ + α (w − θ) on [lo, hi): θ mixed with the local weights (α = 0: replaced)."""
    for j in range(lo, hi):
        w[j] = theta[j] if alpha == 0.0 else theta[j] + alpha * (w[j] - theta[j])


@njit(cache=True)
def synchronise(off, hist, cur, hyper, theta, momentum, rounds, due) -> None:
    """AVG with an outer step, on this round's fragment of the stages; θ is merged at
    once, or after τ more steps (`due`, counted down by the replay's updates)."""
    R, H = hist.shape[0], hist.shape[1]
    lr, mu, nesterov = hyper[OUTER_LR], hyper[OUTER_MU], hyper[OUTER_NESTEROV] != 0.0
    fragments = int(hyper[FRAGMENTS])
    levels = 2.0 ** (hyper[QUANTIZE] - 1) - 1.0  # grid steps each side of 0
    k = rounds[0]
    rounds[0] = k + 1
    for s in range(len(off) - 1):
        if s % fragments != k % fragments:
            continue
        scale = np.zeros(R)
        if hyper[QUANTIZE] != 0.0:
            for r in range(R):
                for j in range(off[s], off[s + 1]):
                    scale[r] = max(scale[r], abs(theta[j] - hist[r, cur[r, s] % H, j]))
        for j in range(off[s], off[s + 1]):
            total = 0.0
            for r in range(R):
                w = hist[r, cur[r, s] % H, j]
                if scale[r] > 0.0:  # what replica r sends: theta - w on the grid
                    step = scale[r] / levels
                    w = theta[j] - round((theta[j] - w) / step) * step
                total += w
            mean = total / R
            delta = theta[j] - mean
            m = mu * momentum[j] + delta
            momentum[j] = m
            direction = delta + mu * m if nesterov else m
            theta[j] = mean + (delta - lr * direction)
        for r in range(R):
            if hyper[OVERLAP] == 0.0:
                merge(hist[r, cur[r, s] % H], theta, hyper[ALPHA], off[s], off[s + 1])
            else:
                due[r, s] = int(hyper[OVERLAP])
