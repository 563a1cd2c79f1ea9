"""Reading a user's dataset: a CSV file with one named target column."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipebench.errors import InputError, clip, did_you_mean, shorten

if TYPE_CHECKING:
    import pandas as pd


def load_csv(
    path: Path, target: str, standardize: bool, intercept: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Features (every column but `target`) and the target, as float64 arrays.

    Raises `InputError` naming `path` or `target` when the file cannot be
    used: missing, unparsable, non-numeric or missing values, no such column.
    """
    import pandas as pd  # only when a CSV is read: validate and list stay light

    if not path.exists():
        raise InputError("path", f"no such file {str(path)!r}")
    if not path.is_file():
        raise InputError("path", f"{str(path)!r} is not a regular file; give a CSV file")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError("path", f"cannot read {str(path)!r} as CSV: {clip(first)}") from None
    if target not in frame.columns:
        hint = did_you_mean(target, [str(c) for c in frame.columns])
        raise InputError("target", f"no column {shorten(target)} in {path.name}{hint}")
    if len(frame) == 0 or frame.shape[1] < 2:
        raise InputError("path", f"{path.name} needs at least one row and one feature column")
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or frame[column].dtype == bool:
            raise InputError(
                "path", f"column {shorten(column)} of {path.name} is not numeric"
                f"{_first_bad(frame[column])}; every cell must be a number",
            )  # fmt: skip
    if frame.isna().any().any():
        column = frame.columns[frame.isna().any()][0]
        row = int(np.flatnonzero(frame[column].isna())[0]) + 2  # the header is line 1
        raise InputError(
            "path",
            f"column {shorten(column)} of {path.name} has missing values (the first on line {row})",
        )
    values = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise InputError(
            "path", f"column {shorten(frame.columns[col])} of {path.name} holds "
            f"{values[row, col]} (line {row + 2}); every value must be finite",
        )  # fmt: skip
    y = frame[target].to_numpy(dtype=np.float64)
    X = frame.drop(columns=[target]).to_numpy(dtype=np.float64)
    if standardize:
        with np.errstate(over="ignore", invalid="ignore"):
            X = X - X.mean(axis=0)
            scale = X.std(axis=0)
        if not (np.isfinite(X).all() and np.isfinite(scale).all()):
            raise InputError(
                "path", f"the values of {path.name} are too large to standardize (their squares "
                "overflow); rescale them",
            )  # fmt: skip
        X = X / np.where(scale > 0, scale, 1.0)
    if intercept:
        X = np.hstack([X, np.ones((len(X), 1))])
    with np.errstate(over="ignore", invalid="ignore"):
        overflow = not np.isfinite(X.T @ X).all() or not np.isfinite(y @ y)
    if overflow:
        raise InputError(
            "path", f"the values of {path.name} are too large to compute with (their squares "
            "overflow); rescale them",
        )  # fmt: skip
    return np.ascontiguousarray(X), y


def _first_bad(column: pd.Series) -> str:
    """' (line N: 'x')' for the first cell of a text column that is not a number."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    bad = np.flatnonzero(numbers.isna() & column.notna())
    return f" (line {bad[0] + 2}: {shorten(column.iloc[bad[0]])})" if len(bad) else ""


def binary_labels(y: np.ndarray, path: Path) -> np.ndarray:
    """Map a two-valued target to {0, 1} (the smaller value is 0)."""
    values = np.unique(y)
    if len(values) != 2:
        raise InputError(
            "target", f"logistic regression needs exactly two target values in {path.name}, "
            f"found {len(values)}",
        )  # fmt: skip
    return (y == values[1]).astype(np.float64)
