"""One optimizer step on one block, whichever optimizer: the replay's single entry point."""

from numba import njit

from pipebench.optim.adamw import adamw_step
from pipebench.optim.momentum import momentum_step
from pipebench.optim.sgd import sgd_step

SGD, MOMENTUM, ADAMW = 0, 1, 2  # OptimizerInfo.code


@njit(cache=True)
def apply_step(code, hyper, t, w_old, grad, scale, m1, m2, lo, hi, w_new) -> None:
    """Write the stepped block w_old[lo:hi] into w_new[lo:hi] (the two may be the same array).

    `grad[lo:hi] * scale` is the gradient; `m1`, `m2` the optimizer's state for
    this block; `t` the block's step number, from 1.
    """
    lr = hyper[0]
    if code == SGD:
        sgd_step(lr, w_old, grad, scale, lo, hi, w_new)
    elif code == MOMENTUM:
        momentum_step(lr, hyper[1], hyper[2] != 0.0, w_old, grad, scale, m1, lo, hi, w_new)
    else:
        adamw_step(
            lr, hyper[3], hyper[4], hyper[5], hyper[6], t, w_old, grad, scale, m1, m2, lo, hi, w_new
        )
