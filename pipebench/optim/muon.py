"""Muon: momentum whose update of each 2-D weight is orthogonalised (Jordan et al., 2024).

Each weight matrix's momentum (Nesterov by default) is replaced by the
nearest semi-orthogonal matrix, approximated by five Newton–Schulz steps of
the quintic iteration with coefficients (3.4445, -4.7750, 2.0315), and
scaled by sqrt(max(1, fan_out / fan_in)) (the matrix's outputs over its
inputs, whichever way it is stored). Everything that is not a 2-D
weight (embeddings, gains, biases, the head) is stepped by AdamW with its
own learning rate, as in the reference implementation.
"""

import numpy as np

from pipebench.jit import njit
from pipebench.optim.adamw import adamw_step

_NS = (3.4445, -4.7750, 2.0315)


@njit(cache=True)
def newton_schulz(g: np.ndarray, steps: int) -> np.ndarray:
    """An approximately semi-orthogonal matrix with the row and column spaces of g."""
    a, b, c = _NS
    x = g / (np.sqrt(np.sum(g * g)) + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = np.ascontiguousarray(x.T)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return np.ascontiguousarray(x.T) if tall else x


@njit(cache=True)
def muon_step(
    lr, mu, nesterov, ns_steps, adam_lr, beta1, beta2, eps, decay, t,
    w_old, grad, scale, m1, m2, mats, lo, hi, w_new,
) -> None:  # fmt: skip
    """Step number t of block [lo, hi); `mats` rows are (offset, rows, cols, out) of the
    model's weight matrices, stored row-major as rows x cols, `out` 1 when the rows are
    the outputs (x @ W.T, as in PyTorch) and 0 when the columns are (x @ W)."""
    covered = np.zeros(hi - lo, np.bool_)
    for k in range(mats.shape[0]):
        start, rows, cols = mats[k, 0], mats[k, 1], mats[k, 2]
        if start < lo or start >= hi:
            continue
        size = rows * cols
        g = np.empty(size)
        for j in range(size):
            q = start + j
            m1[q] = mu * m1[q] + grad[q] * scale
            g[j] = grad[q] * scale + mu * m1[q] if nesterov else m1[q]
        o = newton_schulz(g.reshape(rows, cols), ns_steps).ravel()
        fan_out, fan_in = (rows, cols) if mats[k, 3] == 1 else (cols, rows)
        gain = lr * np.sqrt(max(1.0, fan_out / fan_in))
        for j in range(size):
            q = start + j
            w_new[q] = w_old[q] - gain * o[j] - lr * decay * w_old[q]
            covered[q - lo] = True
    j = lo
    while j < hi:  # the rest, in contiguous runs, by AdamW
        if covered[j - lo]:
            j += 1
            continue
        end = j
        while end < hi and not covered[end - lo]:
            end += 1
        adamw_step(adam_lr, beta1, beta2, eps, decay, t, w_old, grad, scale, m1, m2, j, end, w_new)
        j = end
