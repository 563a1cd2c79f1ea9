"""A pipeline stage's forward and backward: its embeddings, blocks and head in turn."""

from __future__ import annotations

import numpy as np

from pipebench.objectives.charlm import part
from pipebench.objectives.charlm.blocks import (
    _block_backward,
    _block_forward,
    _head_backward,
    _head_forward,
)
from pipebench.objectives.charlm.layers import embedding_backward, embedding_forward
from pipebench.objectives.charlm.spec import (
    _BLOCK_P,
    _BLOCK_S,
    _D,
    _EMB_P,
    _FIRST,
    _S,
    _T,
    _V,
    _WORK_B,
    _WORK_F,
)
from pipebench.objectives.charlm.views import _load, _scratch, _slot, _store, _window_ids


@part
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
        wte = _scratch(params, spec[_EMB_P], spec[_V], D)
        wpe = _scratch(params, spec[_EMB_P + 1], spec[_T], D)
        embedding_forward(_window_ids(spec, tokens, starts, 0), wte, wpe, x)
    else:
        _load(x_in, x)
    work = np.empty(spec[_WORK_F] if blocks else 0)
    for j in range(blocks):
        out = _slot(spec, saved, x_out, j + 1, blocks, last, N)
        _block_forward(spec, params[at : at + bp], saved[j * bs : (j + 1) * bs], out, nb, work)
        at += bp
    if last:
        return _head_forward(spec, params[at:], saved[blocks * bs :], tokens, starts)
    return 0.0


@part
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
        _load(g_out, g)
    for j in range(blocks - 1, -1, -1):
        lo = at + j * bp
        sv = saved[j * bs : (j + 1) * bs]
        _block_backward(spec, params[lo : lo + bp], sv, g, dx, grad[lo : lo + bp], nb, rest)
        g, dx = dx, g
    if s == 0:
        V, T = spec[_V], spec[_T]
        dwte = _scratch(grad, spec[_EMB_P], V, D)
        dwpe = _scratch(grad, spec[_EMB_P + 1], T, D)
        embedding_backward(_window_ids(spec, tokens, starts, 0), g, dwte, dwpe)
    else:
        _store(g, g_in)
