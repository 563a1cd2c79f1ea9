"""A deep residual MLP, one block per stage, on a teacher-student task.

Stage s computes h <- h + act(h W_s + b_s) on a width-`width` stream; stage 0
first embeds the input (h = x W_in + b_in) and the last stage ends with the
head (out = h W_out + b_out) and the loss: mean squared error (regression,
1/2 |out - y|^2 averaged over examples) or cross-entropy (classification).
Targets come from a teacher of the same architecture with other weights, so
regression without label noise is realisable: f* = 0.

Weights are stored row-major as (fan_in, fan_out) for x @ W. The backward
multiplies by the weights it is given and reuses the activations the forward
saved, which is what PACI's backward does when the two versions differ.
"""

from __future__ import annotations

import math

import numpy as np

from pipebench.jit import njit

RELU, TANH, GELU = 0, 1, 2
ACTIVATIONS = {"relu": RELU, "tanh": TANH, "gelu": GELU}
REGRESSION, CLASSIFICATION = 0, 1
TASKS = {"regression": REGRESSION, "classification": CLASSIFICATION}
# spec: input dim, width, outputs, stages, activation, task, batch
D_IN, WIDTH, OUT, STAGES, ACT, TASK, BATCH = range(7)
_C = math.sqrt(2.0 / math.pi)


@njit(cache=True)
def activate(code, a):
    """act(a) and act'(a), elementwise."""
    if code == RELU:
        return np.maximum(a, 0.0), (a > 0.0) * 1.0
    if code == TANH:
        t = np.tanh(a)
        return t, 1.0 - t * t
    u = _C * (a + 0.044715 * a**3)  # GELU, tanh approximation
    t = np.tanh(u)
    du = _C * (1.0 + 3 * 0.044715 * a * a)
    return 0.5 * a * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * du


def layout(d_in: int, width: int, outputs: int, stages: int) -> np.ndarray:
    """Parameter offsets of the stages: stage s owns flat[off[s]:off[s+1]]."""
    sizes = [width * width + width] * stages
    sizes[0] += d_in * width + width
    sizes[-1] += width * outputs + outputs
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def matrices(d_in: int, width: int, stages: int, off: np.ndarray) -> np.ndarray:
    """(offset, rows, cols, out) of the hidden W x W weights (Muon's matrices; x @ W: out 0)."""
    first = d_in * width + width
    rows = [(off[s] + (first if s == 0 else 0), width, width, 0) for s in range(stages)]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def init(d_in: int, width: int, outputs: int, stages: int, rng: np.random.Generator, gain: float):
    """Flat weights: N(0, gain/fan_in) matrices (residual ones also / S), zero biases."""
    parts = []
    for s in range(stages):
        if s == 0:
            parts += [rng.normal(0, math.sqrt(gain / d_in), d_in * width), np.zeros(width)]
        scale = math.sqrt(gain / width / stages)
        parts += [rng.normal(0, scale, width * width), np.zeros(width)]
        if s == stages - 1:
            parts += [rng.normal(0, math.sqrt(gain / width), width * outputs), np.zeros(outputs)]
    return np.concatenate(parts)


def saved_sizes(spec: np.ndarray) -> np.ndarray:
    """Floats each stage saves per micro-batch: its input, pre-activation and output."""
    b, w = spec[BATCH], spec[WIDTH]
    sizes = np.full(spec[STAGES], 3 * b * w, dtype=np.int64)
    sizes[-1] += b * spec[OUT]  # the head's output
    return sizes


@njit(cache=True)
def _split(spec, s, params):
    """Views of the stage's weights: (W_in, b_in) on stage 0, (W, b), (W_out, b_out) last."""
    d_in, w, k, S = spec[D_IN], spec[WIDTH], spec[OUT], spec[STAGES]
    p = 0
    w_in = params[0:0].reshape(0, 0)
    b_in = params[0:0]
    if s == 0:
        w_in = params[p : p + d_in * w].reshape(d_in, w)
        b_in = params[p + d_in * w : p + d_in * w + w]
        p += d_in * w + w
    wr = params[p : p + w * w].reshape(w, w)
    br = params[p + w * w : p + w * w + w]
    p += w * w + w
    w_out = params[0:0].reshape(0, 0)
    b_out = params[0:0]
    if s == S - 1:
        w_out = params[p : p + w * k].reshape(w, k)
        b_out = params[p + w * k : p + w * k + k]
    return w_in, b_in, wr, br, w_out, b_out


@njit(cache=True)
def _loss_grad(task, out, targets, labels, rows, dout) -> float:
    """Mean loss over the batch; dout = its gradient w.r.t. the head's output."""
    b, k = out.shape
    total = 0.0
    for i in range(b):
        if task == REGRESSION:
            for c in range(k):
                r = out[i, c] - targets[rows[i], c]
                total += 0.5 * r * r
                dout[i, c] = r / b
        else:
            top = out[i].max()
            z = np.sum(np.exp(out[i] - top))
            label = labels[rows[i]]
            total += top + math.log(z) - out[i, label]
            for c in range(k):
                dout[i, c] = (math.exp(out[i, c] - top) / z - (c == label)) / b
    return total / b


@njit(cache=True)
def mlp_forward(spec, s, params, inputs, targets, labels, rows, x_in, saved, x_out) -> float:
    """Stage s on the examples `rows`; returns the batch loss on the last stage (else 0)."""
    b, w, k, S = len(rows), spec[WIDTH], spec[OUT], spec[STAGES]
    w_in, b_in, wr, br, w_out, b_out = _split(spec, s, params)
    h_in = saved[: b * w].reshape(b, w)
    pre = saved[b * w : 2 * b * w].reshape(b, w)
    h = saved[2 * b * w : 3 * b * w].reshape(b, w)
    if s == 0:
        x = np.empty((b, inputs.shape[1]))
        for i in range(b):
            x[i] = inputs[rows[i]]
        h_in[:] = x @ w_in + b_in
    else:
        h_in[:] = x_in[: b * w].reshape(b, w)
    pre[:] = h_in @ wr + br
    h[:] = h_in + activate(spec[ACT], pre)[0]
    if s < S - 1:
        x_out[: b * w] = h.ravel()
        return 0.0
    out = saved[3 * b * w : 3 * b * w + b * k].reshape(b, k)
    out[:] = h @ w_out + b_out
    return _loss_grad(spec[TASK], out, targets, labels, rows, np.empty((b, k)))


@njit(cache=True)
def mlp_backward(spec, s, params, inputs, targets, labels, rows, saved, g_out, g_in, grad):
    """Adds the stage's gradient to `grad` and writes dLoss/d(input) to g_in.

    Weights come from `params`, activations from `saved` (see the module doc).
    """
    b, w, k, S = len(rows), spec[WIDTH], spec[OUT], spec[STAGES]
    d_in = spec[D_IN]
    _, _, wr, _, w_out, _ = _split(spec, s, params)
    h_in = saved[: b * w].reshape(b, w)
    pre = saved[b * w : 2 * b * w].reshape(b, w)
    h = saved[2 * b * w : 3 * b * w].reshape(b, w)
    p = d_in * w + w if s == 0 else 0
    if s == S - 1:
        out = saved[3 * b * w : 3 * b * w + b * k].reshape(b, k)
        dout = np.empty((b, k))
        _loss_grad(spec[TASK], out, targets, labels, rows, dout)
        q = p + w * w + w
        grad[q : q + w * k] += (h.T @ dout).ravel()
        grad[q + w * k : q + w * k + k] += dout.sum(axis=0)
        g_h = dout @ w_out.T
    else:
        g_h = g_out[: b * w].reshape(b, w).copy()
    g_pre = g_h * activate(spec[ACT], pre)[1]
    grad[p : p + w * w] += (h_in.T @ g_pre).ravel()
    grad[p + w * w : p + w * w + w] += g_pre.sum(axis=0)
    g_h_in = g_h + g_pre @ wr.T
    if s == 0:
        x = np.empty((b, d_in))
        for i in range(b):
            x[i] = inputs[rows[i]]
        grad[: d_in * w] += (x.T @ g_h_in).ravel()
        grad[d_in * w : d_in * w + w] += g_h_in.sum(axis=0)
    else:
        g_in[: b * w] = g_h_in.ravel()


def predict(spec: np.ndarray, off: np.ndarray, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The network's outputs on inputs x (plain NumPy: used once, to label the data)."""
    h = x
    for s in range(spec[STAGES]):
        w_in, b_in, wr, br, w_out, b_out = _split(spec, s, weights[off[s] : off[s + 1]])
        if s == 0:
            h = h @ w_in + b_in
        h = h + activate(spec[ACT], h @ wr + br)[0]
    return h @ w_out + b_out
