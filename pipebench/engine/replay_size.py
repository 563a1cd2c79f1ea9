"""How much the replay must remember: weight versions per stage, micro-batches in flight.

Both come from one pass over the trace, so the replay allocates exactly
what the schedule needs: one version for LocalSGD, two for 2BW, S - s for
PipeDream's stashes; `S - s` in-flight micro-batches for 1F1B schedules and
a whole mini-batch for GPipe.
"""

from __future__ import annotations

import numpy as np

from pipebench.jit import njit
from pipebench.timeline.trace import AVERAGE, FORWARD, PAIR_FORWARD, UPDATE, Trace


@njit(cache=True)
def _needs(kind, stage, mb, replica, start, end, v_fwd, v_bwd, n_rows, until, S, R, M):
    """(history depth, in-flight slots) for replaying rows [0, n_rows) that end by `until`."""
    last_row = np.empty(M, np.int64)
    for m in range(M):  # a loop, not np.full: one array implementation less to compile
        last_row[m] = -1
    for i in range(n_rows):
        if end[i] <= until and kind[i] != UPDATE and kind[i] != AVERAGE:
            last_row[mb[i]] = i
    cur = np.zeros((R, S), np.int64)
    max_lag = 0
    slow_update = False
    lo = 0
    hi = -1
    slots = 1
    for i in range(n_rows):
        if end[i] > until:
            continue
        k = kind[i]
        if k != UPDATE and k != AVERAGE:  # a pass: F, B, or a program's I, W, F&B halves
            forward = k in (FORWARD, PAIR_FORWARD)
            v = v_fwd[i] if forward else v_bwd[i]
            max_lag = max(max_lag, cur[replica[i], stage[i]] - v)
            if forward and stage[i] == 0:
                hi = max(hi, mb[i])
            while lo < M and last_row[lo] < i:
                lo += 1
            slots = max(slots, hi - lo + 1)
        elif k == UPDATE:
            cur[replica[i], stage[i]] += 1
            slow_update = slow_update or end[i] > start[i]
    # A loss sample taken while a step is running reads the version before it.
    depth = max(max_lag + 1, 2 if slow_update else 1)
    return depth, slots


def replay_needs(trace: Trace, n_rows: int, until: float) -> tuple[int, int]:
    """History depth (versions kept per stage) and in-flight slots for a replay."""
    depth, slots = _needs(
        trace.kind, trace.stage, trace.mb, trace.replica, trace.start, trace.end,
        trace.v_fwd, trace.v_bwd, n_rows, until, trace.stages, trace.replicas,
        trace.microbatches,
    )  # fmt: skip
    return int(depth), int(slots)
