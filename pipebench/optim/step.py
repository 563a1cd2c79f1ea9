"""One optimizer step on one block, whichever optimizer: the replay's single entry point.

Besides dispatching on the optimizer, a step applies what every optimizer
shares: the learning-rate schedule (linear warm-up, cosine decay over the
steps the stage takes in the run) and the delay correction `ef`; momentum's
`lookahead` (optim.momentum) replaces its step.
"""

import math

import numpy as np

from pipebench.jit import njit
from pipebench.optim import HYPER_FIELDS, OPTIMIZERS
from pipebench.optim.adamw import adamw_step
from pipebench.optim.momentum import lookahead_step, momentum_step
from pipebench.optim.muon import muon_step
from pipebench.optim.sgd import sgd_step

# Codes and positions read from the tables in optim/__init__.py. The kernels below hold
# them as constants: after changing a table, delete the numba cache (*.nbi, *.nbc).
SGD, MOMENTUM, ADAMW, MUON = (OPTIMIZERS[n].code for n in ("sgd", "momentum", "adamw", "muon"))
# The moment arrays each keeps (Muon: AdamW's two, its momentum in the first), by code.
MOMENTS = {SGD: 0, MOMENTUM: 1, ADAMW: 2, MUON: 2}
LR, MU, NESTEROV, BETA1, BETA2, EPS, DECAY, NS_STEPS, ADAM_LR, WARMUP, COSINE, EF = (
    HYPER_FIELDS.index(n)
    for n in ("lr", "momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay",
              "ns_steps", "adam_lr", "warmup", "cosine", "ef")
)  # fmt: skip
# The staleness corrections around the step (optim.corrections) and localsgd's DiLoCo
# (optim.diloco; quantize: bits, 0 for full precision).
PREDICT, DC, DC_ADAPTIVE, DELAY_LR, DELAY_LR_WARMUP, LOOKAHEAD = (
    HYPER_FIELDS.index(n)
    for n in ("predict", "delay_compensation", "delay_compensation_adaptive", "delay_lr",
              "delay_lr_warmup", "lookahead")
)  # fmt: skip
OUTER_LR, OUTER_MU, OUTER_NESTEROV, FRAGMENTS, QUANTIZE, OVERLAP, ALPHA = (
    HYPER_FIELDS.index(n)
    for n in ("outer_lr", "outer_momentum", "outer_nesterov", "fragments", "quantize",
              "overlap_steps", "alpha")
)  # fmt: skip


@njit(cache=True)
def lr_factor(hyper, t, horizon) -> float:
    """Warm-up over the first `warmup` steps, then (if asked) cosine decay to 0 at `horizon`."""
    factor = 1.0
    warmup = hyper[WARMUP]
    if warmup > 0 and t < warmup:
        factor = t / warmup
    if hyper[COSINE] != 0.0 and horizon > 0:
        progress = min(max(t - 1, 0), horizon) / horizon
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def moment_buffers(code: int, rows: int, d: int) -> tuple:
    """The optimizer's state for `apply_step`: its moments, one (rows, d) array each."""
    return tuple(np.zeros((rows, d)) for _ in range(MOMENTS[code]))


@njit(cache=True)
def apply_step(
    hyper, t, horizon, w_old, grad, scale, moments, last, r, mats, lo, hi, w_new
) -> None:
    """Write the stepped block w_old[lo:hi] into w_new[lo:hi].

    `grad[lo:hi] * scale` is the gradient; row r of `moments` the optimizer's
    state (`moment_buffers`) and of `last` the previous update (for `ef`) of this
    block; `t` the block's step number, from 1, of `horizon` in the run. The
    optimizer is told by the number of its moments (none for SGD) and by `mats`,
    the model's weight matrices for Muon: `(array,)` (muon.py's rows), or the
    empty tuple for any other optimizer (Muon does not train a block-linear
    model: experiment.py refuses it). numba reads `len()` of a tuple argument as
    a constant and prunes the other branches, so a run compiles its own
    optimizer only.
    w_old and w_new may be the same array unless `ef` is on:
    the correction reads the update as w_old - w_new (the replay keeps two
    versions then). One level of calls: this runs once per block update.
    """
    f = lr_factor(hyper, t, horizon)
    lr = hyper[LR] * f
    if len(moments) == 0:  # SGD
        sgd_step(lr, w_old, grad, scale, lo, hi, w_new)
    elif len(moments) == 1:  # momentum
        m1 = moments[0][r]
        if hyper[LOOKAHEAD] != 0.0:
            lookahead_step(lr, hyper[MU], w_old, grad, scale, m1, lo, hi, w_new)
        else:
            nesterov = hyper[NESTEROV] != 0.0
            momentum_step(lr, hyper[MU], nesterov, w_old, grad, scale, m1, lo, hi, w_new)
    elif len(mats) == 0:  # AdamW
        adamw_step(lr, hyper[BETA1], hyper[BETA2], hyper[EPS], hyper[DECAY], t,
                   w_old, grad, scale, moments[0][r], moments[1][r], lo, hi, w_new)  # fmt: skip
    else:  # Muon
        muon_step(lr, hyper[MU], hyper[NESTEROV] != 0.0, int(hyper[NS_STEPS]), hyper[ADAM_LR] * f,
                  hyper[BETA1], hyper[BETA2], hyper[EPS], hyper[DECAY], t,
                  w_old, grad, scale, moments[0][r], moments[1][r], mats[0], lo, hi,
                  w_new)  # fmt: skip
    if hyper[EF] != 0.0:  # w <- w - (2 u_t - u_{t-1}): the update plus its last change
        prev = last[r]
        for j in range(lo, hi):
            u = w_old[j] - w_new[j]
            if t > 1:  # no last change at the first step
                w_new[j] = w_old[j] - (2.0 * u - prev[j])
            prev[j] = u
