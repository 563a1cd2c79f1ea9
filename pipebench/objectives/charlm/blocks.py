"""A transformer block's and the head's forward and backward, from the layer kernels."""

from __future__ import annotations

from pipebench.objectives.charlm import part
from pipebench.objectives.charlm.layers import (
    attention_backward,
    attention_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    gelu_apply,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
)
from pipebench.objectives.charlm.views import (
    _add_to,
    _block_saved,
    _block_tensors,
    _copy,
    _head_saved,
    _head_tensors,
    _scratch,
    _window_ids,
)


@part
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
    _add_to(out, x)
    layernorm_forward(out, g2, b2, xhat2, rstd2, ln2)
    linear_forward(ln2, w_fc, b_fc, h)
    a = _scratch(work, 0, N, 4 * D)  # qkv is dead
    gelu_forward(h, t, a)
    m = _scratch(work, 4 * N * D, N, D)
    linear_forward(a, w_proj, b_proj, m)
    _add_to(out, m)


@part
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
    _copy(g, dx)
    layernorm_backward(dln, xhat2, rstd2, g2, dx, dg2, db2)
    dy = _scratch(work, 4 * ND, N, D)
    linear_backward(dx, y, w_o, dy, dw_o, db_o, _scratch(dw, 0, D, D))
    dqkv = _scratch(work, 0, N, 3 * D)
    attention_backward(dy, q, k, v, att, dqkv)
    linear_backward(dqkv, ln1, w_qkv, dln, dw_qkv, db_qkv, _scratch(dw, 0, 3 * D, D))
    layernorm_backward(dln, xhat1, rstd1, g1, dx, dg1, db1)


@part
def _head_forward(spec, p, sv, tokens, starts):
    g, b, w, bias = _head_tensors(spec, p)
    x, xhat, rstd, ln, probs = _head_saved(spec, sv, len(starts))
    layernorm_forward(x, g, b, xhat, rstd, ln)
    linear_forward(ln, w, bias, probs)
    return cross_entropy_forward(probs, _window_ids(spec, tokens, starts, 1))


@part
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
