"""Kernels that cut views out of the flat parameter, saved and scratch arrays, by the spec."""

from __future__ import annotations

import numpy as np

from pipebench.objectives.charlm import kernel, part
from pipebench.objectives.charlm.spec import (
    _BLOCK_P,
    _BLOCK_S,
    _D,
    _EMB_P,
    _FIRST,
    _H,
    _HEAD_P,
    _HEAD_S,
    _S,
    _T,
    _V,
)


@kernel
def _scratch(work, at, rows, cols):
    """A (rows, cols) view of the scratch array from offset `at`."""
    return work[at : at + rows * cols].reshape(rows, cols)


@kernel
def _cube(a, at, n, rows, cols):
    """A (n, rows, cols) view of `a` from offset `at`."""
    return a[at : at + n * rows * cols].reshape(n, rows, cols)


@part
def _load(flat, dst):
    """dst (N, D) = the first N * D floats of flat, row by row.

    Loops, here and in `_store` and `_add_to`: numba's array-to-array assignment
    compiles its string code for the shape-mismatch message, a few seconds of a first run."""
    N, D = dst.shape
    for n in range(N):
        for d in range(D):
            dst[n, d] = flat[n * D + d]


@part
def _store(src, flat):
    """The first N * D floats of flat = src (N, D), row by row."""
    N, D = src.shape
    for n in range(N):
        for d in range(D):
            flat[n * D + d] = src[n, d]


@part
def _copy(src, dst):
    """dst = src for two arrays of one 2-D shape."""
    N, D = dst.shape
    for n in range(N):
        for d in range(D):
            dst[n, d] = src[n, d]


@part
def _add_to(dst, src):
    """dst += src for two arrays of one 2-D shape."""
    N, D = dst.shape
    for n in range(N):
        for d in range(D):
            dst[n, d] += src[n, d]


@part
def _at(a, spec, i, size):
    """The `size` floats of a part's field that starts at boundary spec[i]."""
    return a[spec[i] : spec[i] + size]


@kernel
def _block_tensors(spec, p):
    """The 12 tensors of a block's parameters (or of their gradient: the same layout)."""
    D = spec[_D]
    b = _BLOCK_P
    return (
        _at(p, spec, b, D),
        _at(p, spec, b + 1, D),
        _scratch(p, spec[b + 2], 3 * D, D),
        _at(p, spec, b + 3, 3 * D),
        _scratch(p, spec[b + 4], D, D),
        _at(p, spec, b + 5, D),
        _at(p, spec, b + 6, D),
        _at(p, spec, b + 7, D),
        _scratch(p, spec[b + 8], 4 * D, D),
        _at(p, spec, b + 9, 4 * D),
        _scratch(p, spec[b + 10], D, 4 * D),
        _at(p, spec, b + 11, D),
    )


@kernel
def _block_saved(spec, sv, nb):
    """The 14 saved arrays of a block, for a micro-batch of nb windows."""
    D, H, T = spec[_D], spec[_H], spec[_T]
    N, hd, b = nb * T, D // H, _BLOCK_S
    return (
        _scratch(sv, spec[b], N, D),
        _scratch(sv, spec[b + 1], N, D),
        _at(sv, spec, b + 2, N),
        _scratch(sv, spec[b + 3], N, D),
        _cube(sv, spec[b + 4], nb * H, T, hd),
        _cube(sv, spec[b + 5], nb * H, T, hd),
        _cube(sv, spec[b + 6], nb * H, T, hd),
        _cube(sv, spec[b + 7], nb * H, T, T),
        _scratch(sv, spec[b + 8], N, D),
        _scratch(sv, spec[b + 9], N, D),
        _at(sv, spec, b + 10, N),
        _scratch(sv, spec[b + 11], N, D),
        _scratch(sv, spec[b + 12], N, 4 * D),
        _scratch(sv, spec[b + 13], N, 4 * D),
    )


@kernel
def _head_tensors(spec, p):
    V, D = spec[_V], spec[_D]
    b = _HEAD_P
    return (
        _at(p, spec, b, D),
        _at(p, spec, b + 1, D),
        _scratch(p, spec[b + 2], V, D),
        _at(p, spec, b + 3, V),
    )


@kernel
def _head_saved(spec, sv, nb):
    V, D = spec[_V], spec[_D]
    N, b = nb * spec[_T], _HEAD_S
    return (
        _scratch(sv, spec[b], N, D),
        _scratch(sv, spec[b + 1], N, D),
        _at(sv, spec, b + 2, N),
        _scratch(sv, spec[b + 3], N, D),
        _scratch(sv, spec[b + 4], N, V),
    )


@part
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


@kernel
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


@part
def _slot(spec, saved, x_out, j, blocks, last, N):
    """Where the activation entering block j of the stage lives (j == blocks: after them).

    Block j's saved area starts with its input, the head's with its input; so each block
    writes its output straight into the next one's saved input.
    """
    D = spec[_D]
    if j < blocks or last:
        return _scratch(saved, j * spec[_BLOCK_S + 14], N, D)
    return _scratch(x_out, 0, N, D)
