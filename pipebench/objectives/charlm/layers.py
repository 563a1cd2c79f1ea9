"""The layer kernels of charlm, each a forward and a backward over plain 2-D arrays.

Every backward takes the weights it multiplies by as an argument and the
activations from what the forward saved, so it can run with newer weights.
"""

from __future__ import annotations

import math

import numpy as np

from pipebench.jit import njit
from pipebench.objectives.charlm import kernel
from pipebench.objectives.charlm.views import _add_to

_LN_EPS = 1e-5
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715

# e^y for y <= 0 in plain arithmetic (libm's exp and tanh are calls, which LLVM cannot
# vectorise; this is ~10x faster in the GELU and softmax loops): y = r - k ln2 with
# |r| <= ln2 / 2, e^r by its Taylor series to r^13 (error < 1e-17), 2^-k exactly as the
# product of 2^-(2^i) over the set bits i of k. Selects, where a table lookup (a gather)
# kept the loops from vectorising; k stays a float (a float-to-int64 conversion does not
# vectorise either). Same values as e^y computed with an integer k and a table. The loops
# take a row (GELU, cross-entropy) or a head's scores (softmax) at a time, in three passes
# (`_exp_inplace`, `_tanh_inplace`).
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.0 / math.log(2.0)
_EXP_FLOOR = -708.0  # e^y below this would be subnormal; 3e-308 is as good as 0 here
_HALVINGS = tuple((float(2**i), 2.0 ** -(2**i)) for i in range(9, -1, -1))  # k < 1024
_TANH_HALVINGS = _HALVINGS[4:]  # k < 64: tanh's e^(-2|u|), |u| <= 20, has k <= 58


@njit(inline="always")
def _pow2_neg(k, halvings):
    """2^-k for an integer-valued float 0 <= k < 2 * halvings[0][0], exactly."""
    s = 1.0
    for bit, factor in halvings:
        c = k >= bit
        k = k - bit if c else k
        s = s * factor if c else s
    return s


@njit(inline="always")
def _reduce(y):
    """(k, r) with y = r - k ln2, |r| <= ln2 / 2, for y <= 0 (floored at _EXP_FLOOR)."""
    y = max(y, _EXP_FLOOR)
    k = np.floor(-y * _INV_LN2 + 0.5)
    return k, (y + k * _LN2_HI) + k * _LN2_LO


@njit(inline="always")
def _series(r, q, n):
    """q[:n] = (e^r - 1) / r for the r[:n]: 1 + r/2 (1 + r/3 (1 + ... (1 + r/13))), Horner
    from the inside out, one step for every element before the next step.

    Each element's twelve steps depend each on the last; taken step by step over all the
    elements, the steps of different elements overlap (a loop over the steps inside the
    loop over the elements waits on every step: about three times slower).
    """
    for m in range(n):
        q[m] = 1.0 + r[m] * (1.0 / 13.0)
    for i in range(12, 1, -1):
        c = 1.0 / i
        for m in range(n):
            q[m] = 1.0 + r[m] * c * q[m]


@njit(inline="always")
def _exp_nonpos(y):
    """e^y for y <= 0, one value at a time: the same operations as `_exp_inplace`.

    For the cross-entropy (once a micro-batch): the passes would save it 0.05 ms a
    micro-batch and cost about 4 s of a first charlm run's compilation."""
    k, r = _reduce(y)
    q = 1.0 + r * (1.0 / 13.0)
    for i in range(12, 1, -1):
        q = 1.0 + r * (1.0 / i) * q
    s = _pow2_neg(k, _HALVINGS)
    return s + r * q * s


@njit(inline="always")
def _exp_inplace(y, n, k, r, q):
    """y[:n] = e^y[:n] for y <= 0, in place; k, r, q: scratch of n floats or more."""
    for m in range(n):
        km, rm = _reduce(y[m])
        k[m] = km
        r[m] = rm
    _series(r, q, n)
    for m in range(n):
        s = _pow2_neg(k[m], _HALVINGS)
        y[m] = s + r[m] * q[m] * s


@njit(inline="always")
def _tanh_inplace(u, n, k, r, q):
    """u[:n] = tanh(u[:n]) = -m / (2 + m) with m = e^(-2|u|) - 1 (no cancellation near 0),
    +-1 past 20, in place; k, r, q: scratch of n floats or more."""
    for m in range(n):
        km, rm = _reduce(-2.0 * min(abs(u[m]), 20.0))
        k[m] = km
        r[m] = rm
    _series(r, q, n)
    for m in range(n):
        s = _pow2_neg(k[m], _TANH_HALVINGS)
        e = r[m] * q[m] * s + (s - 1.0)
        u[m] = math.copysign(-e / (2.0 + e), u[m])


@kernel
def embedding_forward(ids, wte, wpe, x):
    """x[n] = wte[ids[n]] + wpe[n mod T]: row n is position n mod T of its window."""
    T, D = wpe.shape
    for n in range(len(ids)):
        tok = ids[n]
        pos = n % T
        for d in range(D):
            x[n, d] = wte[tok, d] + wpe[pos, d]


@kernel
def embedding_backward(ids, g, dwte, dwpe):
    """dwte, dwpe += the rows of g, scattered to their tokens and positions."""
    T, D = dwpe.shape
    for n in range(len(ids)):
        tok = ids[n]
        pos = n % T
        for d in range(D):
            dwte[tok, d] += g[n, d]
            dwpe[pos, d] += g[n, d]


@kernel
def layernorm_forward(x, g, b, xhat, rstd, out):
    """out = xhat * g + b per row, keeping xhat and 1/std for the backward."""
    N, D = x.shape
    for n in range(N):
        mean = 0.0
        for d in range(D):
            mean += x[n, d]
        mean /= D
        var = 0.0
        for d in range(D):
            c = x[n, d] - mean
            var += c * c
        r = 1.0 / math.sqrt(var / D + _LN_EPS)
        rstd[n] = r
        for d in range(D):
            xh = (x[n, d] - mean) * r
            xhat[n, d] = xh
            out[n, d] = xh * g[d] + b[d]


@kernel
def layernorm_backward(dout, xhat, rstd, g, dx, dg, db):
    """dx, dg, db += the gradients, from the saved xhat and rstd and the current gain g."""
    N, D = dout.shape
    for n in range(N):
        m1 = 0.0
        m2 = 0.0
        for d in range(D):
            dxh = dout[n, d] * g[d]
            m1 += dxh
            m2 += dxh * xhat[n, d]
            dg[d] += dout[n, d] * xhat[n, d]
            db[d] += dout[n, d]
        m1 /= D
        m2 /= D
        r = rstd[n]
        for d in range(D):
            dx[n, d] += r * (dout[n, d] * g[d] - m1 - xhat[n, d] * m2)


@kernel
def linear_forward(x, w, b, out):
    """out = x w^T + b, with w stored (out, in)."""
    np.dot(x, w.T, out)
    N, M = out.shape
    for n in range(N):
        for m in range(M):
            out[n, m] += b[m]


@kernel
def linear_backward(dout, x, w, dx, dw, db, tmp):
    """dx = dout w (current weights); dw += dout^T x (saved input); db += column sums.

    tmp: scratch shaped like w.
    """
    np.dot(dout, w, dx)
    np.dot(dout.T, x, tmp)
    _add_to(dw, tmp)
    N, M = dout.shape
    for n in range(N):
        for m in range(M):
            db[m] += dout[n, m]


@njit(inline="always")
def _gelu(v, t):
    """gelu(v) = v (1 + t) / 2 from t = tanh(sqrt(2/pi) (v + 0.044715 v^3))."""
    return 0.5 * v * (1.0 + t)


@kernel
def gelu_forward(h, t, a):
    """t = tanh(sqrt(2/pi) (h + 0.044715 h^3)), kept so the backward needs no tanh, and
    a = gelu(h) = h (1 + t) / 2, in one pass."""
    N, M = h.shape
    k, r, q = np.empty(M), np.empty(M), np.empty(M)
    for n in range(N):
        for m in range(M):
            v = h[n, m]
            t[n, m] = _GELU_C * (v + _GELU_A * v * v * v)
        _tanh_inplace(t[n], M, k, r, q)
        for m in range(M):
            a[n, m] = _gelu(h[n, m], t[n, m])


@kernel
def gelu_apply(h, t, a):
    """a = gelu(h) = h (1 + t) / 2, from the saved tanh."""
    N, M = h.shape
    for n in range(N):
        for m in range(M):
            a[n, m] = _gelu(h[n, m], t[n, m])


@kernel
def gelu_backward(da, h, t, dh):
    """dh = da * gelu'(h) (dh may be da)."""
    N, M = h.shape
    for n in range(N):
        for m in range(M):
            v = h[n, m]
            tv = t[n, m]
            du = _GELU_C * (1.0 + 3.0 * _GELU_A * v * v)
            dh[n, m] = da[n, m] * (0.5 * (1.0 + tv) + 0.5 * v * (1.0 - tv * tv) * du)


@kernel
def _take(src, row, col, dst):
    """dst = the block of src at (row, col) with dst's shape."""
    R, C = dst.shape
    for i in range(R):
        for j in range(C):
            dst[i, j] = src[row + i, col + j]


@kernel
def _put(src, dst, row, col):
    """The block of dst at (row, col) = src."""
    R, C = src.shape
    for i in range(R):
        for j in range(C):
            dst[row + i, col + j] = src[i, j]


@kernel
def attention_forward(qkv, q, k, v, att, y):
    """Causal softmax(q k^T / sqrt(hd)) v for every (window, head).

    qkv (N, 3D) is split into head-major q, k, v (windows * heads, T, hd), saved with
    the probabilities att (windows * heads, T, T, zero above the diagonal); y (N, D)
    holds the heads side by side, ready for the output projection.
    """
    BH, T, hd = q.shape
    D = y.shape[1]
    H = D // hd
    scale = 1.0 / math.sqrt(hd)
    o = np.empty((T, hd))
    tri = T * (T + 1) // 2
    e, sk, sr, sq = np.empty(tri), np.empty(tri), np.empty(tri), np.empty(tri)
    for bh in range(BH):
        row, col = (bh // H) * T, (bh % H) * hd
        _take(qkv, row, col, q[bh])
        _take(qkv, row, D + col, k[bh])
        _take(qkv, row, 2 * D + col, v[bh])
        p = att[bh]
        np.dot(q[bh], k[bh].T, p)
        for i in range(T):  # e: the lower triangle's scores less their row's maximum
            top = -np.inf
            for j in range(i + 1):
                p[i, j] *= scale
                top = max(top, p[i, j])
            f = i * (i + 1) // 2
            for j in range(i + 1):
                e[f + j] = p[i, j] - top
        _exp_inplace(e, tri, sk, sr, sq)  # all of a head's at once: the series overlap
        for i in range(T):
            f = i * (i + 1) // 2
            total = 0.0
            for j in range(i + 1):
                p[i, j] = e[f + j]
                total += p[i, j]
            inv = 1.0 / total
            for j in range(T):  # one select-loop, not a short memset call per row
                p[i, j] = p[i, j] * inv if j <= i else 0.0
        np.dot(p, v[bh], o)
        _put(o, y, row, col)


@kernel
def attention_backward(dy, q, k, v, att, dqkv):
    """dqkv (N, 3D) = the gradient of the attention output dy with respect to qkv."""
    BH, T, hd = q.shape
    D = dy.shape[1]
    H = D // hd
    scale = 1.0 / math.sqrt(hd)
    g = np.empty((T, hd))
    o = np.empty((T, hd))
    ds = np.empty((T, T))
    for bh in range(BH):
        row, col = (bh // H) * T, (bh % H) * hd
        p = att[bh]
        _take(dy, row, col, g)
        np.dot(p.T, g, o)
        _put(o, dqkv, row, 2 * D + col)
        np.dot(g, v[bh].T, ds)
        for i in range(T):
            inner = 0.0
            for j in range(i + 1):
                inner += ds[i, j] * p[i, j]
            for j in range(T):
                ds[i, j] = p[i, j] * (ds[i, j] - inner) * scale if j <= i else 0.0
        np.dot(ds, k[bh], o)
        _put(o, dqkv, row, col)
        np.dot(ds.T, q[bh], o)
        _put(o, dqkv, row, D + col)


@kernel
def cross_entropy_forward(z, targets):
    """Mean -log softmax(z)[target] over the rows; z becomes the softmax probabilities."""
    N, V = z.shape
    total = 0.0
    for n in range(N):
        top = -np.inf
        for c in range(V):
            top = max(top, z[n, c])
        total -= z[n, targets[n]] - top
        for c in range(V):
            z[n, c] = _exp_nonpos(z[n, c] - top)
        s = 0.0
        for c in range(V):
            s += z[n, c]
        total += math.log(s)
        inv = 1.0 / s
        for c in range(V):
            z[n, c] *= inv
    return total / N


@kernel
def cross_entropy_backward(probs, targets, dz):
    """dz = (probs - onehot(target)) / N: the gradient of the mean loss in the logits."""
    N, V = probs.shape
    for n in range(N):
        for c in range(V):
            dz[n, c] = probs[n, c] / N
        dz[n, targets[n]] -= 1.0 / N
