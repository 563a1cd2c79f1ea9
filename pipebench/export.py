"""Writing results: every file to a temporary name first, then renamed into place.

A run that fails or is refused leaves no half-written file behind, and a
reader never sees a partial `summary.csv`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:  # numpy and pandas load with the first DataFrame: compare and the cli stay light
    import pandas as pd

LONGEST_NAME = 80  # characters of a name made from a scenario name, label or key


def file_name(text: str, fallback: str) -> str:
    """`text` made safe as a file name: runs of other characters become '-'.

    A name longer than `LONGEST_NAME` is cut and ends in a hash of the whole
    `text`, so that any scenario name or label gives a short name, always
    the same one, and different long texts give different names.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or fallback
    if len(safe) <= LONGEST_NAME:
        return safe
    import hashlib  # here, as json and tempfile below: `--help` and `list` load none

    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{safe[: LONGEST_NAME - len(digest) - 1]}-{digest}"


def value_text(value: object) -> str:
    """A swept value as written in a table: floats in their shortest exact form."""
    return repr(float(value)) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Rows:
    """A table without pandas: its column names and its rows of Python values."""

    columns: list[str]
    rows: list[tuple]

    @classmethod
    def of(cls, table: Table) -> Rows:
        """`table` as rows: a DataFrame's cells as Python values (NumPy's for float32)."""
        if isinstance(table, Rows):
            return table
        columns = [table.iloc[:, i] for i in range(table.shape[1])]
        cells = [c.to_numpy() if c.dtype == "float32" else c for c in columns]  # float32's str
        return cls([str(c) for c in table.columns], list(zip(*cells, strict=True)))


Table = Union[Rows, "pd.DataFrame"]


def is_missing(value: object) -> bool:
    """No value: None, NaN or pandas' NA (an empty field in the CSV)."""
    return value is None or type(value).__name__ == "NAType" or value != value


def csv_text(table: Table) -> str:
    """The CSV form of a table (NaN as an empty field), the same bytes every time.

    Cells are written as pandas' `to_csv` writes them: `str` of the value
    (the shortest text that reads back to the same float).
    """
    table = Rows.of(table)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(["" if is_missing(v) else str(v) for v in row] for row in table.rows)
    return out.getvalue()


# How `--format json` writes infinities, which JSON has no literal for.
INFINITY_MARKERS = {math.inf: "inf", -math.inf: "-inf"}


def json_value(value: object) -> object:
    """A cell as JSON sees it: exact floats, "inf"/"-inf" for infinities, null for no value.

    No value (NaN, NA: an empty field in the CSV) is null. Python writes a
    float as the shortest text that reads back to the same float.
    """
    if is_missing(value):
        return None
    if type(value).__module__ == "numpy":  # NumPy's scalars as Python's, without importing it
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return INFINITY_MARKERS.get(value, value)
    return value


def json_records(table: Table) -> str:
    """The rows as a JSON list of objects, every number at full precision (see `json_value`)."""
    table = Rows.of(table)
    import json

    rows = [
        {k: json_value(v) for k, v in zip(table.columns, row, strict=True)} for row in table.rows
    ]
    return json.dumps(rows, allow_nan=False)


def write_data(table: Table, fmt: str) -> bool:
    """Print `table` on stdout as csv or json rows; False (nothing printed) for other formats."""
    if fmt == "csv":
        sys.stdout.write(csv_text(table))
    elif fmt == "json":
        sys.stdout.write(json_records(table) + "\n")
    else:
        return False
    return True


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table (cells have their `|` escaped)."""
    table = Rows.of(table)

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(c) for c in table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """An `OSError` that names no file (a full disk while writing) names `path`."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None


def write_files(out_dir: Path, files: dict[str, str]) -> None:
    """Write `name -> text` into `out_dir` (created if needed), each file atomically."""
    import tempfile

    out_dir.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name[:40]}.", dir=out_dir)
        try:
            with naming(out_dir / name), os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, out_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def meta_json(meta: dict) -> str:
    import json

    return json.dumps(meta, indent=2, allow_nan=False) + "\n"
