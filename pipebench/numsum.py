"""NumPy's summation order in plain Python, for the commands that load no NumPy.

pandas' means and spreads (`compare`) and the cost model's run lengths (`validate`)
are sums NumPy computed; adding in its order gives the same floats to the bit.
"""

from __future__ import annotations

from collections.abc import Sequence


def numpy_sum(values: Sequence[float]) -> float:
    """NumPy's (pairwise) sum of floats, to the bit, as `ndarray.sum` adds them."""
    if len(values) < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    if len(values) <= 128:
        n = len(values)
        r = values[:8]
        i = 8
        while i < n - n % 8:
            r = [r[j] + values[i + j] for j in range(8)]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for v in values[i:]:
            total += v
        return total
    half = len(values) // 2
    half -= half % 8
    return numpy_sum(values[:half]) + numpy_sum(values[half:])
