"""A tiny character-level transformer language model, split into pipeline stages.

The engine runs every stage's forward and backward separately, per micro-batch,
and under paci the backward multiplies by weights newer than the forward's
(SCHEDULES.md). So each backward takes every weight from its `params` argument
and every activation (layer inputs, pre-activations, attention probabilities,
LayerNorm statistics) from what the forward saved; with the forward's params it
is the exact gradient. The kernels are hand-written numba over flat arrays so
they run without Python objects inside the engine's loops; every matrix
product is a BLAS call on contiguous 2-D views.

Model (GPT-2 style, pre-LayerNorm): token + learned position embedding;
`layers` blocks of x + attn(LN(x)), then x + mlp(LN(x)) with causal multi-head
self-attention and a tanh-GELU MLP of width 4D; final LayerNorm, a linear head
with bias and the mean cross-entropy over the B*T tokens, in nats. Linear
weights are stored (out, in) like torch, so q, k and v are contiguous row
blocks of one (3D, D) matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from pipebench.errors import InputError

_LN_EPS = 1e-5
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715

# Kernels use numpy's error model: Python's raises on a zero divisor, and that branch keeps
# LLVM from vectorising the elementwise loops.
_kernel = njit(cache=True, error_model="numpy")

# The spec: a header, then for each part (embedding parameters, block parameters,
# head parameters, block saved buffers, head saved buffers) the boundaries of its
# fields relative to the part's start (field k spans spec[base + k] : spec[base + k + 1];
# the last boundary is the part's size), then the first block of every stage (S + 1
# entries, the last one = layers). Saved boundaries are sized for the full batch B; a
# micro-batch of fewer windows uses a prefix of every field. _WORK_F and _WORK_B are the
# scratch floats a stage's forward and backward take in one allocation: many separate
# megabyte-sized temporaries cost page faults on every call.
_V, _D, _H, _T, _B, _S, _L, _WORK_F, _WORK_B = range(9)
BATCH = _B  # where spec holds the batch the buffers are sized for
_EMB_P = 9  # wte (V, D) | wpe (T, D)
_BLOCK_P = _EMB_P + 3  # the 12 fields of _block_param_fields
_HEAD_P = _BLOCK_P + 13  # ln g | ln b | w (V, D) | bias (V)
_BLOCK_S = _HEAD_P + 5  # the 14 fields of _block_saved_fields
_HEAD_S = _BLOCK_S + 15  # x | xhat | rstd | ln | probs
_FIRST = _HEAD_S + 6


def _emb_param_fields(V: int, D: int, T: int) -> list[tuple[str, tuple[int, ...]]]:
    return [("wte", (V, D)), ("wpe", (T, D))]


def _block_param_fields(D: int) -> list[tuple[str, tuple[int, ...]]]:
    return [
        ("ln1.g", (D,)),
        ("ln1.b", (D,)),
        ("attn.w_qkv", (3 * D, D)),
        ("attn.b_qkv", (3 * D,)),
        ("attn.w_o", (D, D)),
        ("attn.b_o", (D,)),
        ("ln2.g", (D,)),
        ("ln2.b", (D,)),
        ("mlp.w_fc", (4 * D, D)),
        ("mlp.b_fc", (4 * D,)),
        ("mlp.w_proj", (D, 4 * D)),
        ("mlp.b_proj", (D,)),
    ]


def _head_param_fields(V: int, D: int) -> list[tuple[str, tuple[int, ...]]]:
    return [("lnf.g", (D,)), ("lnf.b", (D,)), ("head.w", (V, D)), ("head.b", (V,))]


def _block_saved_sizes(N: int, D: int, attention: int) -> list[int]:
    """x, xhat1, rstd1, ln1, q, k, v (head-major), att (probabilities), y, xhat2, rstd2,
    ln2, h (MLP pre-activation), t (its tanh): x is the block's input."""
    nd = N * D
    return [nd, nd, N, nd, nd, nd, nd, attention, nd, nd, N, nd, 4 * nd, 4 * nd]


def _head_saved_sizes(N: int, D: int, V: int) -> list[int]:
    """x (the head's input), xhat, rstd, ln (the head matrix's input), softmax probabilities."""
    return [N * D, N * D, N, N * D, N * V]


def _boundaries(sizes: list[int]) -> list[int]:
    return [0, *np.cumsum(sizes).tolist()]


def _numel(fields: list[tuple[str, tuple[int, ...]]]) -> list[int]:
    return [math.prod(shape) for _, shape in fields]


@dataclass(frozen=True, eq=False)
class CharLMLayout:
    """Where everything lives: `spec` for the kernels, `off[s]:off[s+1]` stage s's params,
    `act_size` floats between stages, `saved_size[s]` floats saved per micro-batch in flight
    (for s >= 1 the first `act_size` of them hold the stage's input), `matrices` the
    (offset, rows, cols) of every block matrix (q, k, v, attention out, MLP in and out)."""

    spec: np.ndarray
    off: np.ndarray
    act_size: int
    saved_size: np.ndarray
    matrices: np.ndarray

    def tensors(self) -> list[tuple[str, int, tuple[int, ...]]]:
        """(name, flat offset, shape) of every parameter tensor, in storage order."""
        return _tensors(self.spec)


def _tensors(spec: np.ndarray) -> list[tuple[str, int, tuple[int, ...]]]:
    V, D, T, L = (int(spec[i]) for i in (_V, _D, _T, _L))
    parts = [("emb.", _emb_param_fields(V, D, T))]
    parts += [(f"block{i}.", _block_param_fields(D)) for i in range(L)]
    parts += [("", _head_param_fields(V, D))]
    out, at = [], 0
    for prefix, fields in parts:
        for name, shape in fields:
            out.append((prefix + name, at, shape))
            at += math.prod(shape)
    return out


def _positive(field: str, value: int) -> None:
    if value < 1:
        raise InputError(field, f"must be >= 1, got {value}")


def charlm_layout(
    vocab: int, width: int, heads: int, context: int, batch: int, layers: int, stages: int
) -> CharLMLayout:
    """The layout of a model with `layers` blocks over `stages` pipeline stages.

    Stage 0 holds the embeddings and stage S-1 the final LayerNorm and head; with
    S >= 3 the blocks are spread as evenly as possible over stages 1..S-2 (the
    earlier ones take the extra), with S == 2 they join the embeddings on stage 0.
    """
    if vocab < 2:  # the vocabulary is the corpus's alphabet
        raise InputError("objective.corpus", f"needs >= 2 distinct characters, got {vocab}")
    _positive("objective.width", width)
    _positive("objective.heads", heads)
    if width % heads:
        raise InputError("objective.heads", f"must divide width {width}, got {heads}")
    _positive("objective.context", context)
    _positive("objective.batch_size", batch)
    _positive("objective.layers", layers)
    _positive("pipeline.stages", stages)
    if stages >= 3 and layers < stages - 2:
        raise InputError(
            "objective.layers",
            f"must be >= stages - 2 = {stages - 2} (one block per middle stage), got {layers}",
        )
    V, D, H, T, B, L, S = vocab, width, heads, context, batch, layers, stages
    N = B * T
    if S >= 3:
        per, extra = divmod(L, S - 2)
        counts = [0] + [per + (i < extra) for i in range(S - 2)] + [0]
    else:
        counts = [L] + [0] * (S - 1)
    # Scratch: the block forward's qkv or GELU output and MLP output (5ND); the backward's
    # two activation gradients (2ND), then a block's (9ND + 4D^2) or the head's.
    ND = N * D
    spec = [V, D, H, T, B, S, L, 5 * ND, 2 * ND + max(9 * ND + 4 * D * D, N * V + ND + V * D)]
    spec += _boundaries(_numel(_emb_param_fields(V, D, T)))
    spec += _boundaries(_numel(_block_param_fields(D)))
    spec += _boundaries(_numel(_head_param_fields(V, D)))
    spec += _boundaries(_block_saved_sizes(N, D, B * H * T * T))
    spec += _boundaries(_head_saved_sizes(N, D, V))
    spec += _boundaries(counts)
    spec_array = np.array(spec, dtype=np.int64)
    sizes = np.array([stage_sizes(spec_array, s) for s in range(S)], dtype=np.int64)
    matrices = []
    for name, at, (rows, cols) in (t for t in _tensors(spec_array) if len(t[2]) == 2):
        if name.endswith("attn.w_qkv"):  # q, k and v are orthogonalised separately
            matrices += [(at + i * D * D, D, D) for i in range(3)]
        elif name.startswith("block"):
            matrices.append((at, rows, cols))
    return CharLMLayout(
        spec=spec_array,
        off=np.concatenate([[0], np.cumsum(sizes[:, 0])]).astype(np.int64),
        act_size=N * D,
        saved_size=sizes[:, 1].copy(),
        matrices=np.array(matrices, dtype=np.int64),
    )


def charlm_init(layout: CharLMLayout, seed: int) -> np.ndarray:
    """GPT-2 style: matrices and embeddings normal(0, 0.02), LayerNorm gains 1, biases 0.

    One draw over the whole flat vector, so the parameters do not depend on the stages.
    """
    params = np.random.default_rng(seed).normal(0.0, 0.02, int(layout.off[-1]))
    for name, at, shape in layout.tensors():
        if len(shape) == 1:
            params[at : at + shape[0]] = 1.0 if name.endswith(".g") else 0.0
    return params


# ---------------------------------------------------------------- layers

# e^y for y <= 0 in plain arithmetic (libm's exp and tanh are calls, which LLVM cannot
# vectorise; this is ~10x faster in the GELU and softmax loops): y = r - k ln2 with
# |r| <= ln2 / 2, e^r by its Taylor series to r^13 (error < 1e-17), 2^-k from a table.
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.0 / math.log(2.0)
_EXP_FLOOR = -708.0  # e^y below this would be subnormal; 3e-308 is as good as 0 here
_POW2_NEG = 2.0 ** -np.arange(1022.0)


@njit(inline="always")
def _exp_parts(y):
    """(q, s) with e^y = s (1 + q), s = 2^-k, for y <= 0: e^y = s + q s, e^y - 1 = q s + (s - 1)."""
    y = max(y, _EXP_FLOOR)
    k = int(-y * _INV_LN2 + 0.5)
    r = (y + k * _LN2_HI) + k * _LN2_LO
    # e^r - 1 = r (1 + r/2 (1 + r/3 (1 + ... (1 + r/13)))), Horner from the inside out
    q = 1.0 + r * (1.0 / 13.0)
    for i in range(12, 1, -1):
        q = 1.0 + r * (1.0 / i) * q
    return r * q, _POW2_NEG[k]


@njit(inline="always")
def _exp_nonpos(y):
    """e^y for y <= 0."""
    q, s = _exp_parts(y)
    return s + q * s


@njit(inline="always")
def _tanh(u):
    """tanh(u) = -m / (2 + m) with m = e^(-2|u|) - 1 (no cancellation near 0); +-1 past 20."""
    q, s = _exp_parts(-2.0 * min(abs(u), 20.0))
    m = q * s + (s - 1.0)
    return math.copysign(-m / (2.0 + m), u)


@_kernel
def embedding_forward(ids, wte, wpe, x):
    """x[n] = wte[ids[n]] + wpe[n mod T]: row n is position n mod T of its window."""
    T, D = wpe.shape
    for n in range(len(ids)):
        tok = ids[n]
        pos = n % T
        for d in range(D):
            x[n, d] = wte[tok, d] + wpe[pos, d]


@_kernel
def embedding_backward(ids, g, dwte, dwpe):
    """dwte, dwpe += the rows of g, scattered to their tokens and positions."""
    T, D = dwpe.shape
    for n in range(len(ids)):
        tok = ids[n]
        pos = n % T
        for d in range(D):
            dwte[tok, d] += g[n, d]
            dwpe[pos, d] += g[n, d]


@_kernel
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


@_kernel
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


@_kernel
def linear_forward(x, w, b, out):
    """out = x w^T + b, with w stored (out, in)."""
    np.dot(x, w.T, out)
    N, M = out.shape
    for n in range(N):
        for m in range(M):
            out[n, m] += b[m]


@_kernel
def linear_backward(dout, x, w, dx, dw, db, tmp):
    """dx = dout w (current weights); dw += dout^T x (saved input); db += column sums.

    tmp: scratch shaped like w.
    """
    np.dot(dout, w, dx)
    np.dot(dout.T, x, tmp)
    dw += tmp
    N, M = dout.shape
    for n in range(N):
        for m in range(M):
            db[m] += dout[n, m]


@_kernel
def gelu_tanh(h, t):
    """t = tanh(sqrt(2/pi) (h + 0.044715 h^3)): kept so the backward needs no tanh."""
    N, M = h.shape
    for n in range(N):
        for m in range(M):
            v = h[n, m]
            t[n, m] = _tanh(_GELU_C * (v + _GELU_A * v * v * v))


@_kernel
def gelu_apply(h, t, a):
    """a = gelu(h) = h (1 + t) / 2, from the saved tanh."""
    N, M = h.shape
    for n in range(N):
        for m in range(M):
            a[n, m] = 0.5 * h[n, m] * (1.0 + t[n, m])


@_kernel
def gelu_backward(da, h, t, dh):
    """dh = da * gelu'(h) (dh may be da)."""
    N, M = h.shape
    for n in range(N):
        for m in range(M):
            v = h[n, m]
            tv = t[n, m]
            du = _GELU_C * (1.0 + 3.0 * _GELU_A * v * v)
            dh[n, m] = da[n, m] * (0.5 * (1.0 + tv) + 0.5 * v * (1.0 - tv * tv) * du)


@_kernel
def _take(src, row, col, dst):
    """dst = the block of src at (row, col) with dst's shape."""
    R, C = dst.shape
    for i in range(R):
        for j in range(C):
            dst[i, j] = src[row + i, col + j]


@_kernel
def _put(src, dst, row, col):
    """The block of dst at (row, col) = src."""
    R, C = src.shape
    for i in range(R):
        for j in range(C):
            dst[row + i, col + j] = src[i, j]


@_kernel
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
    for bh in range(BH):
        row, col = (bh // H) * T, (bh % H) * hd
        _take(qkv, row, col, q[bh])
        _take(qkv, row, D + col, k[bh])
        _take(qkv, row, 2 * D + col, v[bh])
        p = att[bh]
        np.dot(q[bh], k[bh].T, p)
        for i in range(T):
            top = -np.inf
            for j in range(i + 1):
                p[i, j] *= scale
                top = max(top, p[i, j])
            for j in range(i + 1):
                p[i, j] = _exp_nonpos(p[i, j] - top)
            total = 0.0
            for j in range(i + 1):
                total += p[i, j]
            inv = 1.0 / total
            for j in range(i + 1):
                p[i, j] *= inv
            for j in range(i + 1, T):
                p[i, j] = 0.0
        np.dot(p, v[bh], o)
        _put(o, y, row, col)


@_kernel
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
            for j in range(i + 1):
                ds[i, j] = p[i, j] * (ds[i, j] - inner) * scale
            for j in range(i + 1, T):
                ds[i, j] = 0.0
        np.dot(ds, k[bh], o)
        _put(o, dqkv, row, col)
        np.dot(ds.T, q[bh], o)
        _put(o, dqkv, row, D + col)


@_kernel
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


@_kernel
def cross_entropy_backward(probs, targets, dz):
    """dz = (probs - onehot(target)) / N: the gradient of the mean loss in the logits."""
    N, V = probs.shape
    for n in range(N):
        for c in range(V):
            dz[n, c] = probs[n, c] / N
        dz[n, targets[n]] -= 1.0 / N


# ---------------------------------------------------------------- views into the flat arrays


@_kernel
def _scratch(work, at, rows, cols):
    """A (rows, cols) view of the scratch array from offset `at`."""
    return work[at : at + rows * cols].reshape(rows, cols)


@_kernel
def _at(a, spec, i, size):
    """The `size` floats of a part's field that starts at boundary spec[i]."""
    return a[spec[i] : spec[i] + size]


@_kernel
def _block_tensors(spec, p):
    """The 12 tensors of a block's parameters (or of their gradient: the same layout)."""
    D = spec[_D]
    b = _BLOCK_P
    return (
        _at(p, spec, b, D),
        _at(p, spec, b + 1, D),
        _at(p, spec, b + 2, 3 * D * D).reshape(3 * D, D),
        _at(p, spec, b + 3, 3 * D),
        _at(p, spec, b + 4, D * D).reshape(D, D),
        _at(p, spec, b + 5, D),
        _at(p, spec, b + 6, D),
        _at(p, spec, b + 7, D),
        _at(p, spec, b + 8, 4 * D * D).reshape(4 * D, D),
        _at(p, spec, b + 9, 4 * D),
        _at(p, spec, b + 10, 4 * D * D).reshape(D, 4 * D),
        _at(p, spec, b + 11, D),
    )


@_kernel
def _block_saved(spec, sv, nb):
    """The 14 saved arrays of a block, for a micro-batch of nb windows."""
    D, H, T = spec[_D], spec[_H], spec[_T]
    N, hd, b = nb * T, D // H, _BLOCK_S
    return (
        _at(sv, spec, b, N * D).reshape(N, D),
        _at(sv, spec, b + 1, N * D).reshape(N, D),
        _at(sv, spec, b + 2, N),
        _at(sv, spec, b + 3, N * D).reshape(N, D),
        _at(sv, spec, b + 4, N * D).reshape(nb * H, T, hd),
        _at(sv, spec, b + 5, N * D).reshape(nb * H, T, hd),
        _at(sv, spec, b + 6, N * D).reshape(nb * H, T, hd),
        _at(sv, spec, b + 7, nb * H * T * T).reshape(nb * H, T, T),
        _at(sv, spec, b + 8, N * D).reshape(N, D),
        _at(sv, spec, b + 9, N * D).reshape(N, D),
        _at(sv, spec, b + 10, N),
        _at(sv, spec, b + 11, N * D).reshape(N, D),
        _at(sv, spec, b + 12, 4 * N * D).reshape(N, 4 * D),
        _at(sv, spec, b + 13, 4 * N * D).reshape(N, 4 * D),
    )


@_kernel
def _head_tensors(spec, p):
    V, D = spec[_V], spec[_D]
    b = _HEAD_P
    return (
        _at(p, spec, b, D),
        _at(p, spec, b + 1, D),
        _at(p, spec, b + 2, V * D).reshape(V, D),
        _at(p, spec, b + 3, V),
    )


@_kernel
def _head_saved(spec, sv, nb):
    V, D = spec[_V], spec[_D]
    N, b = nb * spec[_T], _HEAD_S
    return (
        _at(sv, spec, b, N * D).reshape(N, D),
        _at(sv, spec, b + 1, N * D).reshape(N, D),
        _at(sv, spec, b + 2, N),
        _at(sv, spec, b + 3, N * D).reshape(N, D),
        _at(sv, spec, b + 4, N * V).reshape(N, V),
    )


@_kernel
def _window_ids(spec, tokens, starts, shift):
    """tokens[st + shift + i] for every window start st and position i < T, checked."""
    T, V = spec[_T], spec[_V]
    ids = np.empty(len(starts) * T, dtype=np.int64)
    for b in range(len(starts)):
        st = starts[b]
        if st < 0 or st + T + 1 > len(tokens):
            raise IndexError("charlm: a window (T + 1 tokens) runs outside the token array")
        for i in range(T):
            tok = tokens[st + shift + i]
            if tok < 0 or tok >= V:
                raise IndexError("charlm: a token id is outside the vocabulary")
            ids[b * T + i] = tok
    return ids


@_kernel
def stage_sizes(spec, s):
    """(parameters, saved floats) of stage s."""
    blocks = spec[_FIRST + s + 1] - spec[_FIRST + s]
    params = blocks * spec[_BLOCK_P + 12]
    saved = blocks * spec[_BLOCK_S + 14]
    if s == 0:
        params += spec[_EMB_P + 2]
    if s == spec[_S] - 1:
        params += spec[_HEAD_P + 4]
        saved += spec[_HEAD_S + 5]
    return params, saved


@_kernel
def _slot(spec, saved, x_out, j, blocks, last, N):
    """Where the activation entering block j of the stage lives (j == blocks: after them).

    Block j's saved area starts with its input, the head's with its input; so each block
    writes its output straight into the next one's saved input.
    """
    D = spec[_D]
    if j < blocks or last:
        at = j * spec[_BLOCK_S + 14]
        return saved[at : at + N * D].reshape(N, D)
    return x_out[: N * D].reshape(N, D)


# ---------------------------------------------------------------- blocks and head


@_kernel
def _block_forward(spec, p, sv, out, nb, work):
    """out = the block's output; its input is already in sv (the first saved field)."""
    g1, b1, w_qkv, b_qkv, w_o, b_o, g2, b2, w_fc, b_fc, w_proj, b_proj = _block_tensors(spec, p)
    x, xhat1, rstd1, ln1, q, k, v, att, y, xhat2, rstd2, ln2, h, t = _block_saved(spec, sv, nb)
    N, D = x.shape
    layernorm_forward(x, g1, b1, xhat1, rstd1, ln1)
    qkv = _scratch(work, 0, N, 3 * D)
    linear_forward(ln1, w_qkv, b_qkv, qkv)
    attention_forward(qkv, q, k, v, att, y)
    linear_forward(y, w_o, b_o, out)
    out += x
    layernorm_forward(out, g2, b2, xhat2, rstd2, ln2)
    linear_forward(ln2, w_fc, b_fc, h)
    gelu_tanh(h, t)
    a = _scratch(work, 0, N, 4 * D)  # qkv is dead
    gelu_apply(h, t, a)
    m = _scratch(work, 4 * N * D, N, D)
    linear_forward(a, w_proj, b_proj, m)
    out += m


@_kernel
def _block_backward(spec, p, sv, g, dx, grad, nb, work):
    """dx = dLoss/d(block input) from g = dLoss/d(block output); grad += the block's gradient."""
    g1, _, w_qkv, _, w_o, _, g2, _, w_fc, _, w_proj, _ = _block_tensors(spec, p)
    dg1, db1, dw_qkv, db_qkv, dw_o, db_o, dg2, db2, dw_fc, db_fc, dw_proj, db_proj = _block_tensors(
        spec, grad
    )
    _, xhat1, rstd1, ln1, q, k, v, att, y, xhat2, rstd2, ln2, h, t = _block_saved(spec, sv, nb)
    N, D = dx.shape
    ND = N * D
    # scratch: [0, 4ND) a, later dqkv; [4ND, 8ND) da, later dy; [8ND, 9ND) dln; then dW
    a = _scratch(work, 0, N, 4 * D)
    da = _scratch(work, 4 * ND, N, 4 * D)
    dln = _scratch(work, 8 * ND, N, D)
    dw = work[9 * ND :]
    gelu_apply(h, t, a)
    linear_backward(g, a, w_proj, da, dw_proj, db_proj, _scratch(dw, 0, D, 4 * D))
    gelu_backward(da, h, t, da)
    linear_backward(da, ln2, w_fc, dln, dw_fc, db_fc, _scratch(dw, 0, 4 * D, D))
    dx[:] = g
    layernorm_backward(dln, xhat2, rstd2, g2, dx, dg2, db2)
    dy = _scratch(work, 4 * ND, N, D)
    linear_backward(dx, y, w_o, dy, dw_o, db_o, _scratch(dw, 0, D, D))
    dqkv = _scratch(work, 0, N, 3 * D)
    attention_backward(dy, q, k, v, att, dqkv)
    linear_backward(dqkv, ln1, w_qkv, dln, dw_qkv, db_qkv, _scratch(dw, 0, 3 * D, D))
    layernorm_backward(dln, xhat1, rstd1, g1, dx, dg1, db1)


@_kernel
def _head_forward(spec, p, sv, tokens, starts):
    g, b, w, bias = _head_tensors(spec, p)
    x, xhat, rstd, ln, probs = _head_saved(spec, sv, len(starts))
    layernorm_forward(x, g, b, xhat, rstd, ln)
    linear_forward(ln, w, bias, probs)
    return cross_entropy_forward(probs, _window_ids(spec, tokens, starts, 1))


@_kernel
def _head_backward(spec, p, sv, tokens, starts, dx, grad, work):
    """dx = dLoss/d(head input); grad += the head's gradient."""
    g, _, w, _ = _head_tensors(spec, p)
    dg, db, dw, dbias = _head_tensors(spec, grad)
    _, xhat, rstd, ln, probs = _head_saved(spec, sv, len(starts))
    N, V = probs.shape
    D = ln.shape[1]
    dz = _scratch(work, 0, N, V)
    cross_entropy_backward(probs, _window_ids(spec, tokens, starts, 1), dz)
    dln = _scratch(work, N * V, N, D)
    linear_backward(dz, ln, w, dln, dw, dbias, _scratch(work, N * V + N * D, V, D))
    dx[:] = 0.0
    layernorm_backward(dln, xhat, rstd, g, dx, dg, db)


# ---------------------------------------------------------------- stages


@_kernel
def charlm_forward(spec, s, params, tokens, starts, x_in, saved, x_out):
    """Forward of stage s for the windows starting at `starts`; the mean loss at the last stage.

    params is the stage's slice; saved receives everything the backward needs.
    """
    nb = len(starts)
    N, D = nb * spec[_T], spec[_D]
    blocks = spec[_FIRST + s + 1] - spec[_FIRST + s]
    last = s == spec[_S] - 1
    bp, bs = spec[_BLOCK_P + 12], spec[_BLOCK_S + 14]
    x = _slot(spec, saved, x_out, 0, blocks, last, N)
    at = 0
    if s == 0:
        at = spec[_EMB_P + 2]
        wte = _at(params, spec, _EMB_P, spec[_V] * D).reshape(spec[_V], D)
        wpe = _at(params, spec, _EMB_P + 1, spec[_T] * D).reshape(spec[_T], D)
        embedding_forward(_window_ids(spec, tokens, starts, 0), wte, wpe, x)
    else:
        x[:] = x_in[: N * D].reshape(N, D)
    work = np.empty(spec[_WORK_F] if blocks else 0)
    for j in range(blocks):
        out = _slot(spec, saved, x_out, j + 1, blocks, last, N)
        _block_forward(spec, params[at : at + bp], saved[j * bs : (j + 1) * bs], out, nb, work)
        at += bp
    if last:
        return _head_forward(spec, params[at:], saved[blocks * bs :], tokens, starts)
    return 0.0


@_kernel
def charlm_backward(spec, s, params, tokens, starts, saved, g_out, g_in, grad):
    """Backward of stage s: g_in = dLoss/dx_in, grad += dLoss/dparams.

    Weights come from `params` (those current now), activations from `saved` (the forward's).
    """
    nb = len(starts)
    N, D = nb * spec[_T], spec[_D]
    blocks = spec[_FIRST + s + 1] - spec[_FIRST + s]
    bp, bs = spec[_BLOCK_P + 12], spec[_BLOCK_S + 14]
    at = spec[_EMB_P + 2] if s == 0 else 0
    work = np.empty(spec[_WORK_B])
    g = _scratch(work, 0, N, D)
    dx = _scratch(work, N * D, N, D)
    rest = work[2 * N * D :]
    if s == spec[_S] - 1:
        head = at + blocks * bp
        sv = saved[blocks * bs :]
        _head_backward(spec, params[head:], sv, tokens, starts, g, grad[head:], rest)
    else:
        g[:] = g_out[: N * D].reshape(N, D)
    for j in range(blocks - 1, -1, -1):
        lo = at + j * bp
        sv = saved[j * bs : (j + 1) * bs]
        _block_backward(spec, params[lo : lo + bp], sv, g, dx, grad[lo : lo + bp], nb, rest)
        g, dx = dx, g
    if s == 0:
        V, T = spec[_V], spec[_T]
        dwte = _at(grad, spec, _EMB_P, V * D).reshape(V, D)
        dwpe = _at(grad, spec, _EMB_P + 1, T * D).reshape(T, D)
        embedding_backward(_window_ids(spec, tokens, starts, 0), g, dwte, dwpe)
    else:
        g_in[: N * D] = g.reshape(N * D)
