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
def act(code, a):
    """act(a) and act'(a) of one pre-activation (the kernels' loops call it per element)."""
    if code == RELU:
        return np.maximum(a, 0.0), (a > 0.0) * 1.0
    if code == TANH:
        t = np.tanh(a)
        return t, 1.0 - t * t
    u = _C * (a + 0.044715 * a**3)  # GELU, tanh approximation
    t = np.tanh(u)
    du = _C * (1.0 + 3 * 0.044715 * a * a)
    return 0.5 * a * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * du


@njit(cache=True)
def activate(code, a):
    """act(a) and act'(a) of a matrix, elementwise."""
    value, slope = np.empty_like(a), np.empty_like(a)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            value[i, j], slope[i, j] = act(code, a[i, j])
    return value, slope


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
            top = out[i, 0]  # out[i].max() as numba's: the first NaN, else the largest
            c = 1
            while c < k and not np.isnan(top):
                if np.isnan(out[i, c]) or out[i, c] > top:
                    top = out[i, c]
                c += 1
            z = 0.0  # np.sum(np.exp(out[i] - top)): from 0, in order
            for c in range(k):
                z += np.exp(out[i, c] - top)
            label = labels[rows[i]]
            total += top + math.log(z) - out[i, label]
            for c in range(k):
                dout[i, c] = (math.exp(out[i, c] - top) / z - (c == label)) / b
    return total / b


@njit(cache=True)
def _gather(inputs, rows):
    """The inputs of the examples `rows`, one row each."""
    x = np.empty((len(rows), inputs.shape[1]))
    for i in range(len(rows)):
        for j in range(inputs.shape[1]):
            x[i, j] = inputs[rows[i], j]
    return x


@njit(cache=True)
def _add_flat(grad, lo, m):
    """grad[lo:lo + m.size] += m.ravel(), as a loop (numba's array code is slow to compile)."""
    rows, cols = m.shape
    for i in range(rows):
        for j in range(cols):
            grad[lo + i * cols + j] += m[i, j]


@njit(cache=True)
def _add_column_sums(grad, lo, m):
    """grad[lo:lo + cols] += m.sum(axis=0): each column summed from 0 in row order, as numba's
    sum(axis=0) does."""
    rows, cols = m.shape
    for j in range(cols):
        total = 0.0
        for i in range(rows):
            total += m[i, j]
        grad[lo + j] += total


@njit(cache=True)
def mlp_forward(spec, s, params, inputs, targets, labels, rows, x_in, saved, x_out) -> float:
    """Stage s on the examples `rows`; returns the batch loss on the last stage (else 0).

    Elementwise work is written as loops (the same operations as NumPy's expressions,
    element by element): numba's array expressions took most of the kernel's compile."""
    b, w, k, S = len(rows), spec[WIDTH], spec[OUT], spec[STAGES]
    code = spec[ACT]
    w_in, b_in, wr, br, w_out, b_out = _split(spec, s, params)
    h_in = saved[: b * w].reshape(b, w)
    pre = saved[b * w : 2 * b * w].reshape(b, w)
    h = saved[2 * b * w : 3 * b * w].reshape(b, w)
    if s == 0:
        xw = _gather(inputs, rows) @ w_in
        for i in range(b):
            for j in range(w):
                h_in[i, j] = xw[i, j] + b_in[j]
    else:
        for c in range(b * w):
            saved[c] = x_in[c]
    hw = h_in @ wr
    for i in range(b):
        for j in range(w):
            pre[i, j] = hw[i, j] + br[j]
            h[i, j] = h_in[i, j] + act(code, pre[i, j])[0]
    if s < S - 1:
        for c in range(b * w):
            x_out[c] = saved[2 * b * w + c]
        return 0.0
    out = saved[3 * b * w : 3 * b * w + b * k].reshape(b, k)
    hw = h @ w_out
    for i in range(b):
        for j in range(k):
            out[i, j] = hw[i, j] + b_out[j]
    return _loss_grad(spec[TASK], out, targets, labels, rows, np.empty((b, k)))


@njit(cache=True)
def mlp_backward(spec, s, params, inputs, targets, labels, rows, saved, g_out, g_in, grad):
    """Adds the stage's gradient to `grad` and writes dLoss/d(input) to g_in.

    Weights come from `params`, activations from `saved` (see the module doc);
    elementwise work as loops, as in `mlp_forward`.
    """
    b, w, k, S = len(rows), spec[WIDTH], spec[OUT], spec[STAGES]
    d_in, code = spec[D_IN], spec[ACT]
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
        _add_flat(grad, q, h.T @ dout)
        _add_column_sums(grad, q + w * k, dout)
        g_h = dout @ w_out.T
    else:
        g_h = g_out[: b * w].reshape(b, w)
    g_pre = np.empty((b, w))
    for i in range(b):
        for j in range(w):
            g_pre[i, j] = g_h[i, j] * act(code, pre[i, j])[1]
    _add_flat(grad, p, h_in.T @ g_pre)
    _add_column_sums(grad, p + w * w, g_pre)
    g_h_in = g_pre @ wr.T
    for i in range(b):
        for j in range(w):
            g_h_in[i, j] = g_h[i, j] + g_h_in[i, j]
    if s == 0:
        _add_flat(grad, 0, _gather(inputs, rows).T @ g_h_in)
        _add_column_sums(grad, d_in * w, g_h_in)
    else:
        for i in range(b):
            for j in range(w):
                g_in[i * w + j] = g_h_in[i, j]


def predict(spec: np.ndarray, off: np.ndarray, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The network's outputs on inputs x (plain NumPy: used once, to label the data)."""
    h = x
    for s in range(spec[STAGES]):
        w_in, b_in, wr, br, w_out, b_out = _split(spec, s, weights[off[s] : off[s + 1]])
        if s == 0:
            h = h @ w_in + b_in
        h = h + activate(spec[ACT], h @ wr + br)[0]
    return h @ w_out + b_out
