"""Measured per-part costs: the CSV `pipebench profile` writes, and the built-in H200 table.

One row per part (block, embed, head) x shape x sequence length x micro-batch,
in the columns of `data/h200_layer_costs.csv` (see /work/shared/data/README.md
of the project's data, and docs/hardware.md). A model shape finds its rows by
its layer shape, vocabulary, sequence length and micro-batch, never by name.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipebench.errors import InputError, clip
from pipebench.hardware.model import PARTS, ModelShape

# Built-in profiles by name: measured tables shipped with the package.
BUILTIN = {"h200": "h200_layer_costs.csv"}

# Columns `pipebench profile` writes, in order (the shipped table's).
COLUMNS = (
    "device", "torch", "precision", "model", "part", "hidden", "heads", "ffn", "swiglu",
    "layers", "vocab", "seq", "micro_batch", "params", "forward_ms", "backward_input_ms",
    "backward_weight_ms", "backward_ms", "adamw_ms", "saved_bytes", "reps",
)  # fmt: skip
SHAPE = ("hidden", "heads", "ffn", "swiglu", "vocab", "seq", "micro_batch")
TIMES = ("forward_ms", "backward_input_ms", "backward_weight_ms", "backward_ms", "adamw_ms")
# The precision column per layout of sizes.PRECISIONS
PRECISION_NAMES = {"bf16": "bf16-autocast/fp32-params", "fp32": "fp32"}


@dataclass(frozen=True)
class ProfileRow:
    """One part's measured costs (milliseconds) and sizes for one shape."""

    params: int
    forward_ms: float
    backward_input_ms: float
    backward_weight_ms: float
    backward_ms: float
    adamw_ms: float
    saved_bytes: int


@dataclass(frozen=True)
class Profile:
    """A measured table, looked up by part and shape."""

    source: str
    precision: str
    rows: dict[tuple, ProfileRow]

    def row(self, model: ModelShape, part: str) -> ProfileRow:
        """The measured row of `part` for `model`'s shape; `InputError` when absent."""
        key = (part, *_shape_key(model))
        if key not in self.rows:
            have = sorted({(k[6], k[7]) for k in self.rows if k[:6] == key[:6]})
            shown = ", ".join(f"seq {s} x micro-batch {m}" for s, m in have) or "none"
            raise InputError(
                "profile",
                f"{self.source} has no {part} row for hidden {model.hidden}, heads "
                f"{model.heads}, ffn {model.ffn}, vocab {model.vocab}, seq {model.seq}, "
                f"micro-batch {model.micro_batch} (this shape has: {shown})",
            )
        return self.rows[key]


def _shape_key(model: ModelShape) -> tuple:
    return (
        model.hidden, model.heads, model.ffn, int(model.swiglu), model.vocab, model.seq,
        model.micro_batch,
    )  # fmt: skip


def _parse(source: str, line: int, record: dict[str, str]) -> tuple[tuple, ProfileRow, str]:
    where = f"{source} line {line}"
    part = record["part"]
    if part not in PARTS:
        raise InputError("profile", f"{where}: part {clip(part)!r}, allowed: {', '.join(PARTS)}")
    numbers: dict[str, float] = {}
    for column in (*SHAPE, "params", "saved_bytes", *TIMES):
        text = record[column]
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        whole = column not in TIMES
        zero_ok = ("swiglu", "params", "saved_bytes", "backward_input_ms", "backward_weight_ms")
        low = 0 if column in zero_ok else 1e-300
        if not math.isfinite(value) or value < low or (whole and value != int(value)):
            kind = "a whole number" if whole else "a number"
            raise InputError("profile", f"{where}: {column} must be {kind} >= {low:g}, got "
                             f"{clip(text)!r}")  # fmt: skip
        numbers[column] = value
    if numbers["swiglu"] not in (0, 1):
        raise InputError("profile", f"{where}: swiglu must be 0 or 1, got {record['swiglu']!r}")
    key = (part, *(int(numbers[c]) for c in SHAPE))
    row = ProfileRow(
        params=int(numbers["params"]),
        saved_bytes=int(numbers["saved_bytes"]),
        **{c: numbers[c] for c in TIMES},
    )
    return key, row, record["precision"]


def read_profile(text: str, source: str) -> Profile:
    """A profile from CSV text; `InputError` naming the line for anything malformed."""
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in (*SHAPE, "part", "precision", "params", "saved_bytes", *TIMES)
               if c not in (reader.fieldnames or [])]  # fmt: skip
    if missing:
        raise InputError("profile", f"{source}: no column {missing[0]!r} (the columns of "
                         f"`pipebench profile`: {','.join(COLUMNS)})")  # fmt: skip
    rows: dict[tuple, ProfileRow] = {}
    precisions = set()
    for line, record in enumerate(reader, start=2):
        if None in record or None in record.values():
            raise InputError("profile", f"{source} line {line}: {len(COLUMNS)} fields expected")
        key, row, precision = _parse(source, line, record)
        rows[key] = row
        precisions.add(precision)
    if not rows:
        raise InputError("profile", f"{source}: no rows")
    known = {name: short for short, name in PRECISION_NAMES.items()}
    if len(precisions) != 1 or next(iter(precisions)) not in known:
        raise InputError("profile", f"{source}: one precision expected, of "
                         f"{', '.join(known)}; got {', '.join(sorted(precisions))}")  # fmt: skip
    return Profile(source=source, precision=known[precisions.pop()], rows=rows)


def load_profile(name_or_path: str, base: Path | None = None) -> Profile:
    """A built-in profile by name (`h200`) or a CSV file (relative to `base`)."""
    if name_or_path in BUILTIN:
        data = resources.files("pipebench.hardware").joinpath("data", BUILTIN[name_or_path])
        return read_profile(data.read_text(), name_or_path)
    path = Path(name_or_path).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise InputError(
            "profile",
            f"cannot read {clip(str(path))} ({reason}); give a CSV file of `pipebench profile` "
            f"or a built-in profile: {', '.join(BUILTIN)}",
        ) from None
    return read_profile(text, clip(str(path)))
