"""Reading a user's dataset: a CSV file with one named target column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipebench.errors import InputError, did_you_mean


def load_csv(
    path: Path, target: str, standardize: bool, intercept: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Features (every column but `target`) and the target, as float64 arrays.

    Raises `InputError` naming `path` or `target` when the file cannot be
    used: missing, unparsable, non-numeric or missing values, no such column.
    """
    import pandas as pd  # only when a CSV is read: validate and list stay light

    if not path.is_file():
        raise InputError("path", f"no such file {str(path)!r}")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError("path", f"cannot read {str(path)!r} as CSV: {first}") from None
    if target not in frame.columns:
        hint = did_you_mean(target, [str(c) for c in frame.columns])
        raise InputError("target", f"no column {target!r} in {path.name}{hint}")
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or frame[column].dtype == bool:
            raise InputError("path", f"column {column!r} of {path.name} is not numeric")
    if frame.isna().any().any():
        column = frame.columns[frame.isna().any()][0]
        raise InputError("path", f"column {column!r} of {path.name} has missing values")
    if len(frame) == 0 or frame.shape[1] < 2:
        raise InputError("path", f"{path.name} needs at least one row and one feature column")
    y = frame[target].to_numpy(dtype=np.float64)
    X = frame.drop(columns=[target]).to_numpy(dtype=np.float64)
    if standardize:
        X = X - X.mean(axis=0)
        scale = X.std(axis=0)
        X = X / np.where(scale > 0, scale, 1.0)
    if intercept:
        X = np.hstack([X, np.ones((len(X), 1))])
    return np.ascontiguousarray(X), y


def binary_labels(y: np.ndarray, path: Path) -> np.ndarray:
    """Map a two-valued target to {0, 1} (the smaller value is 0)."""
    values = np.unique(y)
    if len(values) != 2:
        raise InputError(
            "target", f"logistic regression needs exactly two target values in {path.name}, "
            f"found {len(values)}",
        )  # fmt: skip
    return (y == values[1]).astype(np.float64)
