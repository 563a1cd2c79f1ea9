"""Each micro-batch's staleness, read off the trace: what weight prediction extrapolates by.

A forward or backward of stage s reads version v of the stage's block; the
gradient of that micro-batch is applied by the first update of the stage
after its backward, which steps version v_apply. Its staleness τ = v_apply − v
is a per-row fact of the trace, not a constant of the schedule. A backward
that multiplies by the version its forward read (weight stashing: pd, 2bw)
reuses the forward's prediction, so both see the same weights (code REUSE).
"""

from __future__ import annotations

import numpy as np

from pipebench.jit import njit
from pipebench.optim.corrections import REUSE
from pipebench.timeline.trace import BACKWARD, FORWARD, Trace


@njit(cache=True)
def _delays(
    kind, stage, mb, replica, v_fwd, v_bwd, upd_op, upd_first, upd_version, n_rows, S, R, M
):
    # applied[r, s, m]: the version the update that applies micro-batch m's gradient steps
    # from; a gradient the trace never applies counts to the stage's last version
    applied = np.full((R, S, M), -1, np.int64)
    final = np.zeros((R, S), np.int64)
    for u in range(len(upd_op)):
        row = upd_op[u]
        r, s = replica[row], stage[row]
        for m in range(upd_first[u], mb[row] + 1):
            applied[r, s, m] = upd_version[u] - 1
        final[r, s] = max(final[r, s], upd_version[u])
    read = np.full((R, S, M), -1, np.int64)  # the version the forward read
    tau = np.zeros(n_rows, np.int64)
    for i in range(n_rows):
        k, s, r, m = kind[i], stage[i], replica[i], mb[i]
        if k != FORWARD and k != BACKWARD:
            continue
        target = applied[r, s, m] if applied[r, s, m] >= 0 else final[r, s]
        if k == FORWARD:
            tau[i] = target - v_fwd[i]
            read[r, s, m] = v_fwd[i]
        else:
            tau[i] = target - v_bwd[i]
            if tau[i] > 0 and read[r, s, m] == v_bwd[i]:
                tau[i] = REUSE
    return tau


def read_delays(trace: Trace, n_rows: int) -> np.ndarray:
    """τ of every F and B row among the first n_rows (REUSE on a stashing backward; 0 on U)."""
    return _delays(
        trace.kind, trace.stage, trace.mb, trace.replica, trace.v_fwd, trace.v_bwd,
        trace.upd_op, trace.upd_first, trace.upd_version, n_rows, trace.stages,
        trace.replicas, trace.microbatches,
    )  # fmt: skip


@njit(cache=True)
def stage_delays(kind, stage, tau, n_rows, S):
    """Each stage's mean staleness over its forwards (PipeMare's per-stage delay τ_s);
    zeros when `tau` is empty."""
    total = np.zeros(S)
    count = np.zeros(S)
    if tau.size:
        for i in range(n_rows):
            if kind[i] == FORWARD:
                total[stage[i]] += tau[i]
                count[stage[i]] += 1
    for s in range(S):
        total[s] = total[s] / count[s] if count[s] > 0 else 0.0
    return total
