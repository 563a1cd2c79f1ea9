"""Plain SGD."""

from pipebench.jit import njit


@njit(cache=True)
def sgd_step(lr, w_old, grad, scale, lo, hi, w_new) -> None:
    """w_new = w_old - lr * g, with g = grad * scale (the mean of the summed gradients)."""
    for j in range(lo, hi):
        w_new[j] = w_old[j] - lr * grad[j] * scale
