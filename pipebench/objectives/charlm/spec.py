"""Layout bookkeeping: what the int64 `spec` array holds and the fields of every part.

`layout.charlm_layout` fills a spec; the kernels in `views` read it.
"""

from __future__ import annotations

import math

import numpy as np

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
