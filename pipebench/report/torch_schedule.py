"""A schedule as PyTorch pipelining action lists, to replay its order on real hardware.

The format is the "compute_only" CSV of `torch.distributed.pipelining`
(`PipelineScheduleMulti._load_csv`): one row per rank, no header, each cell
one action `_Action.from_str` reads, `<stage><type><micro-batch>`, e.g. `0F3`
(stage 0, forward, micro-batch 3) or `1B2` (stage 1, full backward of
micro-batch 2). Row r holds rank r's actions in the order they start in the
simulation: for the greedy schedules (one stage per rank) its forwards and
backwards; for programs (several chunks per rank, PyTorch's stages) also
`I` and `W` and F&B pairs, written `(0F7;7B3)OVERLAP_F_B` as PyTorch does.

`pipebench/schedules/torch_csv.py` reads the format back (any PyTorch schedule).

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
