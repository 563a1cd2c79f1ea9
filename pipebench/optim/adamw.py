"""AdamW: Adam with bias correction and decoupled weight decay (Loshchilov & Hutter)."""

import math

from pipebench.jit import njit


# NumPy's error model (no division checks: beta1, beta2 < 1 and eps > 0 are validated) and
# one pass per array written, over slices from 0: so LLVM vectorises the divisions and the
# square root (one fused loop over six arrays that may alias stayed scalar, 3x slower).
@njit(cache=True, error_model="numpy")
def adamw_step(lr, beta1, beta2, eps, decay, t, w_old, grad, scale, m1, m2, lo, hi, w_new) -> None:
    """Step number t (1-based) of one block; m1, m2 are its first and second moments."""
    c1 = 1.0 - beta1**t
    c2 = 1.0 - beta2**t
    g, m, v, w, out = grad[lo:hi], m1[lo:hi], m2[lo:hi], w_old[lo:hi], w_new[lo:hi]
    for j in range(hi - lo):
        m[j] = beta1 * m[j] + (1.0 - beta1) * (g[j] * scale)
    for j in range(hi - lo):
        gj = g[j] * scale
        v[j] = beta2 * v[j] + (1.0 - beta2) * gj * gj
    for j in range(hi - lo):  # w_old and w_new may be one array: w[j] is read before out[j]
        out[j] = w[j] - lr * ((m[j] / c1) / (math.sqrt(v[j] / c2) + eps) + decay * w[j])
