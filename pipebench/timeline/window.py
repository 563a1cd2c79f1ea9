"""The start of a timeline: what a Gantt chart of a run shows.

A whole run is thousands of micro-batches; its picture is a solid band.
What tells schedules apart is the fill and the first rounds, so the
chart of a run shows the operations that start during its first two
rounds. A round is what happens on stage 0 before the first optimizer
step or average ends: S forwards for pd, a mini-batch for the flushing
schedules, R*H micro-batches for LocalSGD.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipebench.timeline.trace import AVERAGE, FORWARD, OP_FIELDS, UPDATE, Trace

MAX_OPS = 20_000  # beyond this a chart is unreadable and slow to draw


def first_rounds_end(trace: Trace, rounds: int = 2) -> float:
    """The instant stage 0 starts the forward after its first `rounds` rounds (or the end)."""
    sync = trace.kind == AVERAGE  # LocalSGD's round ends with its average
    if not sync.any():
        sync = trace.kind == UPDATE
    if not sync.any():
        return trace.makespan
    first_sync_end = float(trace.end[sync].min())
    f0 = trace.start[(trace.kind == FORWARD) & (trace.stage == 0)]
    per_round = max(1, int(np.count_nonzero(f0 < first_sync_end)))
    k = rounds * per_round
    return float(f0[k]) if k < len(f0) else trace.makespan


def head(trace: Trace, until: float, max_ops: int = MAX_OPS) -> Trace:
    """A copy of the operations starting before `until` (at most `max_ops` of them).

    Rows are in causal order, so this is a prefix: slicing it costs nothing
    even on a trace of tens of millions of rows (`Trace.subset` would scan
    them all). The copy lets a huge trace be freed.
    """
    n = min(int(np.searchsorted(trace.start, until, side="left")), max_ops)
    kept = trace.upd_op < n
    return replace(
        trace,
        **{f: getattr(trace, f)[:n].copy() for f in OP_FIELDS},
        upd_op=trace.upd_op[kept],
        upd_first=trace.upd_first[kept],
        upd_version=trace.upd_version[kept],
    )
