"""Corrections for stale weights, applied by the replay around the optimizer's step.

Weight prediction (`predict`; SpecTrain, Chen et al. 2018; PipeMare, Yang et
al. 2021): a micro-batch whose gradient will be applied τ versions after the
one it reads uses ŵ = w − τ · u instead of w, u being the stage's last update
(lr times the optimizer's update direction: lr · v for momentum), so it reads
the weights its gradient will be applied to when the update direction holds.

Delay compensation (`delay_compensation: λ`; DC-ASGD, Zheng et al. 2017): a
micro-batch's gradient g, taken at w_read, becomes g + λ · g ⊙ g ⊙ (w_now −
w_read), the first-order Taylor term with the Hessian's diagonal
approximated by g ⊙ g. DC-ASGD-a (`delay_compensation_adaptive`, the same
paper) divides λ, per coordinate, by √(MS + ε), MS ← m·MS + (1 − m)·g ⊙ g
the running mean square of the stage's micro-batch gradients (m = 0.95,
ε = 1e-7, the values its implementations use).

Learning-rate rescheduling by delay (`delay_lr: pipemare`; PipeMare, Yang et
al. 2021, its technique 1): step k of a stage whose delay is τ uses the step
size lr · τ^(−p_k), p_k = 1 − min(k / K, 1), K = `delay_lr_warmup`: lr / τ at
the start, the full lr from step K on. Every optimizer here moves by lr times
a direction its state does not make depend on lr, so the replay scales the
step's update by that factor after the step.

Each helper works on one block [lo, hi) and is neutral at its neutral value
(τ = 0, λ = 0) because the replay does not call it then.
"""

import math

import numpy as np

from pipebench.jit import njit
from pipebench.optim.step import DC, DC_ADAPTIVE, PREDICT

# tau code of a backward that reuses the prediction its forward made (weight stashing)
REUSE = -1
# DC-ASGD-a's running mean square: its decay m and the ε under its square root
MS_DECAY, MS_EPS = 0.95, 1e-7


@njit(cache=True)
def predicted(w, tau, update, lo, hi, out):
    """The weights a micro-batch reads: w itself when tau is 0, else out[lo:hi] =
    w[lo:hi] − tau · update[lo:hi] (out as written by the forward when tau is REUSE)."""
    if tau == 0:
        return w
    if tau > 0:
        for j in range(lo, hi):
            out[j] = w[j] - tau * update[j]
    return out


@njit(cache=True)
def remember_update(w_old, w_new, lo, hi, update) -> None:
    """The stage's last update u = w_old − w_new, which prediction extrapolates."""
    for j in range(lo, hi):
        update[j] = w_old[j] - w_new[j]


@njit(cache=True)
def compensate(acc, before, w_now, w_read, hyper, ms, lo, hi) -> None:
    """DC-ASGD on the gradient a backward just added to acc (acc − before):
    acc += λ · g ⊙ g ⊙ (w_now − w_read) over the block, λ = hyper[DC], divided by
    √(ms + ε) after ms takes in g ⊙ g when DC-ASGD-a is on."""
    adaptive = hyper[DC_ADAPTIVE] != 0.0
    for j in range(lo, hi):
        g = acc[j] - before[j]
        lam = hyper[DC]
        if adaptive:
            ms[j] = MS_DECAY * ms[j] + (1.0 - MS_DECAY) * g * g
            lam = lam / math.sqrt(ms[j] + MS_EPS)
        acc[j] += lam * g * g * (w_now[j] - w_read[j])


def correction_buffers(hyper, slots, replicas, d):
    """(prediction, compensation): the buffers of the corrections `hyper` turns on, None
    for one it leaves off (the replay kernels compile only what is not None).
    prediction: (the predicted weights per micro-batch slot, the last update per
    replica); compensation: (the gradient before a backward, DC-ASGD-a's mean square
    per replica, empty unless DC-ASGD-a is on)."""
    prediction = None
    if hyper[PREDICT] != 0.0:
        prediction = (np.zeros((slots, d)), np.zeros((replicas, d)))
    compensation = None
    if hyper[DC] != 0.0:
        compensation = (np.zeros(d), np.zeros((replicas, d if hyper[DC_ADAPTIVE] != 0.0 else 0)))
    return prediction, compensation


@njit(cache=True)
def pipemare_factor(tau, step, warmup) -> float:
    """PipeMare's step-size factor tau^-(1 - min(step / warmup, 1)) (1 when tau <= 1)."""
    if tau <= 1.0:
        return 1.0
    return tau ** -(1.0 - min(step / warmup, 1.0))


@njit(cache=True)
def rescale_update(w_old, w_new, lo, hi, factor) -> None:
    """w_new = w_old − factor · (w_old − w_new): the step, its size scaled."""
    if factor == 1.0:
        return
    for j in range(lo, hi):
        w_new[j] = w_old[j] - factor * (w_old[j] - w_new[j])
