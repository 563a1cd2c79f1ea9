"""Heavy-ball and Nesterov momentum (the PyTorch convention: v = mu v + g)."""

from numba import njit


@njit(cache=True)
def momentum_step(lr, mu, nesterov, w_old, grad, scale, velocity, lo, hi, w_new) -> None:
    for j in range(lo, hi):
        g = grad[j] * scale
        v = mu * velocity[j] + g
        velocity[j] = v
        w_new[j] = w_old[j] - lr * (g + mu * v if nesterov else v)
