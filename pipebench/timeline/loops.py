"""Reductions written as loops, inlined into the timeline kernels that use them.

`values.min()`, `.max()` and `.sum()` inside a numba kernel each compile numba's
own reduction implementation, once per dtype and memory layout (a row, a
column and a slice of a table are three), which made a large part of a first
run's compile time for a few reductions over short arrays. A loop inlined into
the caller compiles with it.
"""

from __future__ import annotations

from pipebench.jit import njit


@njit(inline="always")
def smallest(values):
    """values.min() of a non-empty 1-D array or view."""
    out = values[0]
    for i in range(1, len(values)):
        if values[i] < out:
            out = values[i]
    return out


@njit(inline="always")
def largest(values):
    """values.max() of a non-empty 1-D array or view."""
    out = values[0]
    for i in range(1, len(values)):
        if values[i] > out:
            out = values[i]
    return out


@njit(inline="always")
def total(values):
    """values.sum() of a 1-D float array, summed in index order."""
    out = 0.0
    for i in range(len(values)):
        out += values[i]
    return out
