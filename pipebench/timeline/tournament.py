"""The tournament tree both executors pick their next operation with.

Leaves T..2T-1 hold one key per stage or rank (the earliest time it could
start its next operation, inf while it waits); `win[i]` is the leaf that wins
below node i, the lower index on ties, so `win[1]` is the next to run. A
changed key replays only the matches on its path to the root: O(log T).
"""

from __future__ import annotations

import numpy as np

from pipebench.jit import njit


@njit(cache=True)
def new_tree(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(key, win) for `n` players, every key inf (waiting).

    Explicit loops: `np.full`, `np.arange` and a slice assignment would each
    compile one of numba's array implementations into both executors (about a
    third of the simulator's cold compile)."""
    size = 1
    while size < n:
        size *= 2
    key = np.empty(size)
    win = np.empty(2 * size, np.int64)
    for i in range(size):
        key[i] = np.inf
        win[size + i] = i
    for i in range(size - 1, 0, -1):
        win[i] = win[2 * i]
    return key, win


@njit(inline="always")
def set_key(key: np.ndarray, win: np.ndarray, j: int, value: float) -> None:
    """key[j] = value, and the matches on the path from leaf j to the root replayed.

    Inlined into the executors' loops: a call would pay a reference-count
    round trip for each array, on every operation.
    """
    key[j] = value
    i = (j + len(key)) >> 1
    while i > 0:
        a = win[2 * i]
        b = win[2 * i + 1]
        w = b if key[b] < key[a] else a  # a < b, so ties go to a
        if w == win[i] and w != j:
            break  # same winner with the same key: nothing above changes
        win[i] = w
        i >>= 1
