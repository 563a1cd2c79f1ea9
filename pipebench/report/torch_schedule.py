"""A schedule as PyTorch pipelining action lists, to replay its order on real hardware.

The format is the "compute_only" CSV of `torch.distributed.pipelining`
(`PipelineScheduleMulti._load_csv`): one row per rank, no header, each cell
one action `_Action.from_str` reads, `<stage><type><micro-batch>`, e.g. `0F3`
(stage 0, forward, micro-batch 3) or `1B2` (stage 1, full backward of
micro-batch 2). Row r holds rank r's actions in the order they start in the
simulation: for the greedy schedules (one stage per rank) its forwards and
backwards; for programs (several chunks per rank, PyTorch's stages) also
`I` and `W` and F&B pairs, written `(0F7;7B3)OVERLAP_F_B` as PyTorch does.

What the format cannot say, and this export leaves out:
- U and AVG: PyTorch steps the optimizer outside the schedule, so the update
  rows (and with them the per-micro-batch steps of pd or the mini-batch
  boundaries of gpipe and 1f1b-flush) have no action. The CSV carries the
  order of compute over all the trace's micro-batches, not which weight
  version each pass reads.
- Timing: a row lists actions back to back; the bubbles in between are not
  written as PyTorch's empty (idle) cells.
- Several replicas: a PyTorch schedule is one pipeline, so localsgd with more
  than one replica is refused.
"""

from __future__ import annotations

import csv
import io
import re

import numpy as np

from pipebench.errors import InputError
from pipebench.timeline.trace import (
    AVERAGE,
    KIND_NAMES,
    PAIR_BACKWARD,
    PAIR_FORWARD,
    UPDATE,
    Trace,
)

# PyTorch's action pattern narrowed to the computations pipebench has: `F`,
# full backward `B`, input gradient `I`, weight gradient `W`, with a micro-batch
# index, and an F&B pair as PyTorch writes it, `(0F7;7B3)OVERLAP_F_B`. ASCII
# digits only, where PyTorch's `\d` would also take other scripts' digits.
_ACTION = re.compile(r"([0-9]+)(F|B|I|W)([0-9]+)")
_PAIR = re.compile(r"\(([0-9]+)F([0-9]+);([0-9]+)B([0-9]+)\)OVERLAP_F_B")


def _cell(trace: Trace, row: int) -> str:
    """One action as PyTorch writes it; an F&B pair (two adjacent rows) as
    `(<forward>;<backward>)OVERLAP_F_B`."""
    stage, kind, mb = int(trace.stage[row]), int(trace.kind[row]), int(trace.mb[row])
    if kind == PAIR_FORWARD:
        back = f"{int(trace.stage[row + 1])}B{int(trace.mb[row + 1])}"
        return f"({stage}F{mb};{back})OVERLAP_F_B"
    return f"{stage}{KIND_NAMES[kind]}{mb}"


def torch_actions(trace: Trace) -> list[list[str]]:
    """Per rank, its computations (F, B, I, W, F&B) as PyTorch action strings, by start time."""
    if trace.replicas > 1:
        raise InputError(
            "torch-csv",
            f"the {trace.schedule} trace runs {trace.replicas} replicas, and a PyTorch pipeline "
            "schedule describes a single pipeline; export a single-replica trace "
            "(any schedule, or localsgd with replicas=1)",
        )
    kind = trace.kind
    rows = np.flatnonzero((kind != UPDATE) & (kind != AVERAGE) & (kind != PAIR_BACKWARD))
    # Rows are in causal order (non-decreasing start), so a stable sort by rank
    # leaves each rank's operations in order of start time.
    rows = rows[np.argsort(trace.rank[rows], kind="stable")]
    cells = [_cell(trace, row) for row in rows.tolist()]
    bounds = np.cumsum(np.bincount(trace.rank[rows], minlength=trace.ranks)).tolist()
    return [cells[lo:hi] for lo, hi in zip([0, *bounds[:-1]], bounds, strict=True)]


def torch_csv_text(trace: Trace) -> str:
    """The "compute_only" CSV: one line per rank, cells joined by commas, lines ending in "\\n".

    Action strings hold no comma, quote or line break, so no cell ever needs quoting.
    """
    return "".join(",".join(actions) + "\n" for actions in torch_actions(trace))


def parse_torch_csv(text: str) -> list[list[tuple]]:
    """Per row (rank), its actions as (stage, "F", "B", "I" or "W", micro-batch), and
    F&B pairs as (stage, "F&B", micro-batch, backward's stage, backward's micro-batch).

    Reads what `torch_csv_text` writes and PyTorch's own compute-only dumps:
    surrounding spaces are stripped and empty cells (PyTorch's idle slots)
    skipped, as `_Action.from_str` does. Any other cell, including PyTorch
    actions pipebench has no equivalent for (UNSHARD, SEND_F, ...), is an
    `InputError` naming its row and cell (both counted from 1).
    """
    ranks: list[list[tuple]] = []
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise InputError("torch-csv", f"line {reader.line_num}: not CSV ({exc})") from None
    for row_no, row in enumerate(rows, start=1):
        actions = []
        for cell_no, cell in enumerate(row, start=1):
            action = cell.strip()
            if not action:
                continue
            match = _ACTION.fullmatch(action)
            pair = _PAIR.fullmatch(action)
            if match is None and pair is None:
                raise InputError(
                    "torch-csv",
                    f"row {row_no}, cell {cell_no}: {cell!r} is not an action "
                    "<stage><F, B, I or W><micro-batch> (e.g. 0F3) or an F&B pair "
                    "(0F7;7B3)OVERLAP_F_B",
                )
            if pair is not None:
                fs, fm, bs, bm = (int(x) for x in pair.groups())
                actions.append((fs, "F&B", fm, bs, bm))
                continue
            stage, kind, mb = match.groups()
            actions.append((int(stage), kind, int(mb)))
        ranks.append(actions)
    return ranks
