"""What a run will need, estimated before anything is built: memory and output.

Validation checks each field alone; a width that fits in an integer can
still need terabytes, and a billion seeds or points can still write
terabytes. Here every large array a run allocates (the objective's data and
weights, each schedule's trace, the replay's weight history, activations
and replicas, the results held until they are written) is counted from the
scenario alone, and the total is compared with the memory this machine has
available; the rows the run writes are compared with a fixed output limit.
A refusal names the field that contributes most, its figure and the limit.

The estimates count the large arrays, not Python's overheads, and one
replay at a time (runs in parallel share the traces and the objective);
where a size is only known as a bound (the weight versions a schedule may
hold, the numbers a CSV file of this size may hold) the bound is used. They
are meant to refuse what cannot fit by far, not to budget memory tightly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from pipebench.errors import short_number

FLOAT = 8  # bytes of a float64 or int64
MAX_OUTPUT_BYTES = 256 * 2**20  # curves.csv and summary.csv together
CURVE_ROW_BYTES = 80  # a curves.csv row besides its scenario, schedule and label
SUMMARY_ROW_BYTES = 300
SHAKESPEARE_CHARS = 1_115_394
CHARLM_FILE_VOCAB = 256  # a text file's alphabet, for the estimate


@dataclass(frozen=True)
class Need:
    """Memory one part of a run needs; `field` is a scenario path, or a command-line option."""

    field: tuple | str
    what: str
    bytes: int


def available_memory() -> int | None:
    """Bytes this machine can give a new process: MemAvailable, else free pages; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def size_text(n: int) -> str:
    """Bytes as 12 MiB, 3.4 GiB, 5.6e+12 TiB (counts of any size)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            if n >= 10**15 * scale:  # beyond what a float shows: exact integer arithmetic
                return f"{short_number(n // scale)} {unit}"
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def memory_problem(needs: list[Need], have: int | None) -> tuple[Need, str] | None:
    """The need to blame and a message, when the needs add up to more than `have` bytes."""
    total = sum(need.bytes for need in needs)
    if have is None or total <= have:
        return None
    worst = max(needs, key=lambda need: need.bytes)
    rest = "" if 10 * total < 11 * worst.bytes else f" ({size_text(total)} for the whole run)"
    return worst, (
        f"{worst.what} need about {size_text(worst.bytes)}{rest}; "
        f"this machine has {size_text(have)} of memory available"
    )


# ---------------------------------------------------------------- objectives


def _data_file_floats(path: Path | None) -> int:
    """Numbers a CSV file can hold: each takes at least two characters ('0,')."""
    try:
        return os.stat(path).st_size // 2 if path is not None else 0
    except OSError:
        return 0  # missing: the objective's builder says so


def objective_needs(spec, stages: int, data_file: Path | None) -> tuple[list[Need], int, int]:
    """Memory of building the objective, its parameter count, and its data rows.

    The parameter count and rows size the replay's buffers (see `replay_needs`);
    the first need names the field the parameter count grows with.
    """
    kind = spec.kind
    at = ("objective",)
    if kind == "mlp":
        return _mlp_needs(spec, stages)
    if kind == "charlm":
        return _charlm_needs(spec, stages, data_file)
    variant = spec.variant
    if variant == "csv":
        floats = _data_file_floats(data_file)
        # read_csv, the float copy and the standardised copy; the solver's square
        d = max(1, math.isqrt(floats))
        need = Need((*at, "path"), f"the numbers of {data_file}", 3 * FLOAT * floats)
        return [need, Need((*at, "path"), "its solver", FLOAT * d * d)], d, floats // d
    if variant == "diagonal":
        d = spec.dim or (len(spec.spectrum) if isinstance(spec.spectrum, list) else 512)
        # X = diag(...) is a dense d x d matrix; the least-squares solver copies it
        return [Need((*at, "dim"), f"the {d} x {d} matrices of dim {d}", 3 * FLOAT * d * d)], d, d
    if variant == "tridiagonal":
        d = spec.dim or 512
        # the Hessian, its Cholesky factor, X and the solver's copies: d x d each
        return [Need((*at, "dim"), f"the {d} x {d} matrices of dim {d}", 6 * FLOAT * d * d)], d, d
    n, d = spec.examples or 600, spec.dim or 512
    field = (*at, "dim") if d >= n else (*at, "examples")
    # X and the solver's (quadratic) or Newton's (logistic) copies; the d x d Hessian
    square = d * d if kind == "logistic" or spec.l2 > 0 else min(n, d) ** 2
    what = f"the data and solver of {n} examples x {d} parameters"
    return [Need(field, what, FLOAT * (3 * n * d + 2 * square))], d, n


def _mlp_needs(spec, stages: int) -> tuple[list[Need], int, int]:
    w, d_in, n = spec.width, spec.inputs, spec.examples
    out = spec.classes if spec.task == "classification" else spec.outputs
    params = stages * (w * w + w) + d_in * w + w + w * out + out
    at = ("objective",)
    needs = [
        # the teacher and the student
        Need((*at, "width"), f"the weights of width {w} x {stages} stages", 2 * FLOAT * params),
        # inputs, targets, and the teacher's activations over every example
        Need((*at, "examples"), f"the data of {n} examples", FLOAT * n * (d_in + out + 3 * w)),
    ]
    return needs, params, n


def _charlm_needs(spec, stages: int, corpus_file: Path | None) -> tuple[list[Need], int, int]:
    D, T = spec.width, spec.context
    L = spec.layers if spec.layers is not None else max(1, stages - 2)
    if spec.corpus == "markov":
        chars, vocab = spec.length, spec.symbols
    elif spec.corpus == "shakespeare":
        chars, vocab = SHAKESPEARE_CHARS, 65
    else:
        chars, vocab = _data_file_floats(corpus_file) * 2, CHARLM_FILE_VOCAB
    params = L * (12 * D * D + 13 * D) + 2 * vocab * D + T * D + 2 * D + vocab
    at = ("objective",)
    needs = [
        Need((*at, "width"), f"the weights of width {D} x {L} layers", FLOAT * params),
        # the text, its UTF-32 copy and the int64 tokens
        Need((*at, "corpus"), f"the tokens of {chars} characters", 16 * chars),
    ]
    return needs, params, chars


def charlm_saved_floats(spec, stages: int) -> tuple[int, int]:
    """(floats passed between stages, floats all stages save) per micro-batch of charlm."""
    D, T, B, H = spec.width, spec.context, spec.batch_size, spec.heads
    L = spec.layers if spec.layers is not None else max(1, stages - 2)
    N = B * T
    block = 16 * N * D + 2 * N + B * H * T * T  # as in charlm.spec._block_saved_sizes
    return N * D, L * block + 3 * N * D + N * (CHARLM_FILE_VOCAB + 1)


def replay_needs(
    label: str,
    spec,
    stages: int,
    params: int,
    rows: int,
    shape: tuple[int, int, int],
    field: tuple | str,
) -> list[Need]:
    """The working memory of one replay: weight history and optimizer state, activations.

    `shape` is (replicas, weight versions kept, micro-batches in flight), upper
    bounds; `field` is what to blame when they are too large.
    """
    replicas, versions, slots = shape
    samples = 0  # what a block-linear replay's loss samples keep besides the data's rows
    copies = replicas * (versions + 4)  # history; gradient sum, two moments, last update
    if spec.kind == "mlp":
        act = spec.batch_size * spec.width
        per_slot = 2 * (stages + 1) * act + stages * 3 * act
    elif spec.kind == "charlm":
        act, saved = charlm_saved_floats(spec, stages)
        per_slot = 2 * (stages + 1) * act + saved
    else:
        per_slot = 3 * spec.batch_size  # a minibatch's rows, outputs and gradients
        # the loss samples, taken two at a time: the held model, the first's model, and
        # the second's change of every example's output per block (recorder.pair_buffers)
        samples = stages * rows + 2 * params
    weights = f"{replicas} x {versions} versions of {params} weights for {label}"
    activations = f"{slots} micro-batches in flight in {label}"
    return [
        Need(field, weights, FLOAT * (copies * params + rows + samples)),
        Need(field, activations, FLOAT * slots * per_slot),
    ]


# ---------------------------------------------------------------- output


def row_text_bytes(name: str, labels: list[str]) -> int:
    """The text a table row repeats: scenario name, label and schedule, optimizer, hash."""
    return len(name) + 2 * max(map(len, labels)) + 30


def output_bytes(runs: int, points: int, text_bytes: int) -> int:
    """What curves.csv and summary.csv take: a row per sample, a row per run."""
    return runs * ((points + 1) * (CURVE_ROW_BYTES + text_bytes) + SUMMARY_ROW_BYTES + text_bytes)


def output_problem(runs: int, points: int, text_bytes: int) -> str | None:
    size = output_bytes(runs, points, text_bytes)
    if size <= MAX_OUTPUT_BYTES:
        return None
    return (
        f"{runs} runs x {points + 1} loss samples would write about {size_text(size)} of "
        f"tables; at most {size_text(MAX_OUTPUT_BYTES)}: lower record.points or the runs"
    )
