"""AdamW: Adam with bias correction and decoupled weight decay (Loshchilov & Hutter)."""

import math

from numba import njit


@njit(cache=True)
def adamw_step(lr, beta1, beta2, eps, decay, t, w_old, grad, scale, m1, m2, lo, hi, w_new) -> None:
    """Step number t (1-based) of one block; m1, m2 are its first and second moments."""
    c1 = 1.0 - beta1**t
    c2 = 1.0 - beta2**t
    for j in range(lo, hi):
        g = grad[j] * scale
        m = beta1 * m1[j] + (1.0 - beta1) * g
        v = beta2 * m2[j] + (1.0 - beta2) * g * g
        m1[j] = m
        m2[j] = v
        w_new[j] = w_old[j] - lr * ((m / c1) / (math.sqrt(v / c2) + eps) + decay * w_old[j])
