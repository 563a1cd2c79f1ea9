"""Ranges of values written as text: `2^-12..2^-3`, `1e-4..1e-1:4`, `0.1,0.2,0.5`.

Learning-rate grids in scenarios and sweep grids on the command line use
the same spelling, so a user learns it once.
"""

from __future__ import annotations

import math
import re

import numpy as np

_POWER = re.compile(r"^\s*([0-9.]+)\s*\^\s*([+-]?\d+)\s*$")
_RANGE_HELP = (
    "a number, a comma list (0.1,0.2), powers 'B^i..B^j' (2^-12..2^-3), "
    "or 'a..b:n' (n log-spaced values from a to b)"
)


def _number(text: str) -> float | int:
    """A plain number or a power B^i; integral powers of integers stay exact ints."""
    power = _POWER.match(text)
    if power:
        base, exp = float(power.group(1)), int(power.group(2))
        if base.is_integer() and exp >= 0:
            return int(base) ** exp
        return base**exp
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return int(value) if re.fullmatch(r"\s*[+-]?\d+\s*", text) else value


def parse_values(text: str) -> list[float | int]:
    """The values a range string stands for, in order; ValueError saying what is allowed."""
    try:
        if ".." in text:
            return _parse_range(text)
        return [_number(part) for part in text.split(",")]
    except (ValueError, OverflowError, ZeroDivisionError):
        raise ValueError(f"expected {_RANGE_HELP}, got {text!r}") from None


def _parse_range(text: str) -> list[float | int]:
    span, _, count = text.partition(":")
    low, _, high = span.partition("..")
    if count:
        n = int(count)
        a, b = float(_number(low)), float(_number(high))
        if n < 2 or a <= 0 or b <= 0:
            raise ValueError(text)
        return [float(v) for v in np.geomspace(a, b, n)]
    lo, hi = _POWER.match(low), _POWER.match(high)
    if not lo or not hi or float(lo.group(1)) != float(hi.group(1)):
        raise ValueError(text)
    base = lo.group(1)
    i, j = int(lo.group(2)), int(hi.group(2))
    if j < i:
        raise ValueError(text)
    return [_number(f"{base}^{e}") for e in range(i, j + 1)]
