"""Heavy-ball and Nesterov momentum (the PyTorch convention: v = mu v + g)."""

from pipebench.jit import njit


@njit(cache=True)
def momentum_step(lr, mu, nesterov, w_old, grad, scale, velocity, lo, hi, w_new) -> None:
    for j in range(lo, hi):
        g = grad[j] * scale
        v = mu * velocity[j] + g
        velocity[j] = v
        w_new[j] = w_old[j] - lr * (g + mu * v if nesterov else v)


@njit(cache=True)
def lookahead_step(lr, mu, w_old, grad, scale, velocity, lo, hi, w_new) -> None:
    """Nesterov's method for asynchronous pipelines (Ajanthan et al., ICML 2025, eq. 10):
    d_t = γ (w_t − w_{t−1}), w_{t+1} = w_t + d_t − η (1 − γ) ∇f(w̄_t + d̄_t), the gradient
    taken at the look-ahead point of the stale iterate, w̄_t + d̄_t = w_{t−τ} + d_{t−τ}.

    The replay stores the look-ahead points φ_t = w_t + d_t as the stage's weight
    versions, so a pass that reads a stale version reads w̄_t + d̄_t exactly as the
    trace says. With v_t = w_t − w_{t−1} (`velocity`, in weight units, 0 at the start):
    v_{t+1} = γ v_t − η (1 − γ) g and φ_{t+1} = φ_t + γ v_{t+1} − η (1 − γ) g. Without
    delay it is Nesterov's method (eq. 8) with step η (1 − γ).
    """
    for j in range(lo, hi):
        step = lr * (1.0 - mu) * (grad[j] * scale)
        v = mu * velocity[j] - step
        velocity[j] = v
        w_new[j] = w_old[j] + mu * v - step
