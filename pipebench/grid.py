"""Ranges of values written as text (`2^-12..2^-3`, `1e-4..1e-1:4`, `0.1,0.2,0.5`), and sweep grids.

Learning-rate grids in scenarios and sweep grids on the command line use
the same spelling, so a user learns it once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import product

import yaml

from pipebench import safeyaml
from pipebench.errors import short_number, shorten

_POWER = re.compile(r"^\s*([0-9.]+)\s*\^\s*([+-]?\d+)\s*$")
MAX_VALUES = 1000  # values one range or list stands for (an lr grid, a swept key)
MAX_CELLS = 10_000  # cells of a sweep grid
MAX_EXPONENT = 1024  # of a power B^i
_RANGE_HELP = (
    "a number, a comma list (0.1,0.2), powers 'B^i..B^j' (2^-12..2^-3), "
    "or 'a..b:n' (n log-spaced values from a to b)"
)


def _number(text: str) -> float | int:
    """A plain number or a power B^i; integral powers of integers stay exact ints."""
    power = _POWER.match(text)
    if power:
        base, exp = float(power.group(1)), int(power.group(2))
        if abs(exp) > MAX_EXPONENT:
            raise ValueError(text)
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
        values = _parse_range(text) if ".." in text else [_number(p) for p in text.split(",")]
    except TooManyValues:
        raise
    except (ValueError, OverflowError, ZeroDivisionError):
        raise ValueError(f"expected {_RANGE_HELP}, got {shorten(text)}") from None
    _check_count(len(values), text)
    return values


class TooManyValues(ValueError):
    """A range or list that stands for more values than MAX_VALUES."""


def _check_count(n: int, text: str) -> None:
    if n > MAX_VALUES:
        raise TooManyValues(
            f"{shorten(text)} stands for {short_number(n)} values; at most {MAX_VALUES}"
        )


def _parse_range(text: str) -> list[float | int]:
    span, _, count = text.partition(":")
    low, _, high = span.partition("..")
    if count:
        n = int(count)
        a, b = float(_number(low)), float(_number(high))
        if n < 2 or a <= 0 or b <= 0:
            raise ValueError(text)
        _check_count(n, text)
        import numpy as np  # here: the other spellings, and the scenario's models, need none

        return [float(v) for v in np.geomspace(a, b, n)]
    lo, hi = _POWER.match(low), _POWER.match(high)
    if not lo or not hi or float(lo.group(1)) != float(hi.group(1)):
        raise ValueError(text)
    base = lo.group(1)
    i, j = int(lo.group(2)), int(hi.group(2))
    if j < i:
        raise ValueError(text)
    _check_count(j - i + 1, text)
    return [_number(f"{base}^{e}") for e in range(i, j + 1)]


# ---------------------------------------------------------------- sweep grids

# Top-level keys a sweep may not vary, and why.
_UNSWEPT = {
    "seed": "every cell already runs every seed (use seeds: [...] or --seeds N)",
    "seeds": "every cell already runs every seed (use seeds: [...] or --seeds N)",
    "sweep": "a sweep does not sweep itself",
}


def check_sweepable(key: str) -> None:
    """ValueError if a sweep may not vary `key`."""
    top = key.split(".")[0]
    if top in _UNSWEPT:
        raise ValueError(f"{key} cannot be swept; {_UNSWEPT[top]}")


@dataclass(frozen=True)
class Axis:
    """One swept key: a dotted path as for `--set`, and its values in order."""

    key: str
    values: tuple


def _word(text: str) -> object:
    """One value of a comma list: a number (or power) if it is one, else YAML's reading."""
    try:
        return _number(text)
    except (ValueError, OverflowError, ZeroDivisionError):
        pass
    try:
        value = safeyaml.load(text)
    except (yaml.YAMLError, safeyaml.YamlProblem):
        value = text
    if value is None or isinstance(value, (dict, list)):
        raise ValueError(text)
    return value


def sweep_values(given: object) -> list:
    """The values of one swept key: a range or comma list as text, a YAML list, or one value.

    Numbers are parsed as in lr grids; other words (schedule or optimizer
    names, true/false) are taken as written. ValueError says what is allowed.
    """
    if isinstance(given, str):
        try:
            values = parse_values(given) if ".." in given else [_word(p) for p in given.split(",")]
        except TooManyValues:
            raise
        except ValueError:
            raise ValueError(
                f"expected values such as 2,4,8 or pd,2bw, powers 2^1..2^7, or a..b:n; "
                f"got {shorten(given)}"
            ) from None
    elif isinstance(given, list):
        values = list(given)
        if any(isinstance(v, (dict, list)) or v is None for v in values):
            raise ValueError(f"each value must be a number, a word or true/false; got {given!r}")
    else:
        values = [given]
    if not values:
        raise ValueError("give at least one value")
    _check_count(len(values), str(given))
    if len({(type(v), v) for v in values}) != len(values):
        raise ValueError(f"values repeat in {shorten(given)}")
    return values


def parse_grid(text: str) -> Axis:
    """`--grid key.path=v1,v2,...` as an axis; ValueError says what is allowed."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ValueError(f"expected key.path=values such as pipeline.stages=2^1..2^7, got {text!r}")
    check_sweepable(key)
    return Axis(key, tuple(sweep_values(raw.strip())))


def merge_axes(written: list[Axis], given: list[Axis]) -> list[Axis]:
    """The file's axes with the command line's: `--grid` replaces a key in place, or adds one."""
    axes = {axis.key: axis for axis in written}
    for axis in given:
        axes[axis.key] = axis
    return list(axes.values())


def grid_cells(axes: list[Axis]) -> list[tuple[tuple[str, object], ...]]:
    """The cross product of the axes (the last varies fastest): ((key, value), ...) per cell.

    ValueError when it has more than MAX_CELLS cells (counted before it is built).
    """
    cells = math.prod(len(axis.values) for axis in axes)
    if cells > MAX_CELLS:
        sizes = " x ".join(str(len(axis.values)) for axis in axes)
        raise ValueError(f"the grid has {sizes} = {short_number(cells)} cells; at most {MAX_CELLS}")
    keys = [axis.key for axis in axes]
    return [tuple(zip(keys, combo, strict=True)) for combo in product(*(a.values for a in axes))]
