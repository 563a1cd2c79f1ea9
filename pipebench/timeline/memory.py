"""Memory in bytes, per rank and over time, read off a trace.

A rank holds, for each model chunk placed on it:

- its weights once per weight version the schedule keeps (pd's stashes,
  2BW's two, one per LocalSGD replica; the versions counted as
  `stats.peak_versions` counts them);
- per replica, a static part: gradients, the fp32 master copy under mixed
  precision and the optimizer's state (`optim.static_bytes_per_param`);
- one micro-batch's activations from the start of its forward until the pass
  that sends its input gradient on ends (B, I, or an F&B pair); a schedule that
  recomputes keeps only the chunk's input instead, and the activations again
  while its backward runs;
- what a split backward keeps for the pending W, from the end of I until the
  end of W.

Every rank runs one action at a time, so walking the rows in causal order
visits each rank's events in time order (a row's releases come before the
next row's acquisitions on the same rank): per-rank counters give exact peaks
in one pass, as `stats` counts activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipebench.jit import njit
from pipebench.optim import OPTIMIZERS, PRECISIONS, static_bytes_per_param
from pipebench.timeline.stats import FORWARDS, RELEASES, version_uses
from pipebench.timeline.trace import BACKWARD, INPUT_GRAD, UPDATE, WEIGHT_GRAD, Trace


@dataclass(frozen=True, eq=False)
class ChunkBytes:
    """What each model chunk holds, in bytes (float64 arrays, one entry per chunk)."""

    weights: np.ndarray  # one copy of the chunk's weights: held once per version kept
    static: np.ndarray  # per replica: gradients, master weights, optimizer state
    activations: np.ndarray  # one micro-batch's forward, kept for its backward
    boundary: np.ndarray  # what a recomputing schedule keeps instead: the chunk's input
    pending_w: np.ndarray  # one micro-batch's buffers kept from I until W

    @classmethod
    def of(
        cls,
        params: np.ndarray,
        act_bytes: np.ndarray,
        w_bytes: np.ndarray,
        send_bytes: np.ndarray,
        optimizer: str = "adamw",
        precision: str = "bf16",
    ) -> ChunkBytes:
        """From a model's chunk sizes (parameters; activation, W and sent bytes per
        micro-batch), trained by `optimizer` in `precision` (`optim.PRECISIONS`).

        A chunk's input is what the previous chunk sends; the first chunk's
        (token ids) is not counted.
        """
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}")
        params = np.asarray(params, dtype=np.float64)
        send = np.asarray(send_bytes, dtype=np.float64)
        return cls(
            weights=params * PRECISIONS[precision].weights,
            static=params * static_bytes_per_param(optimizer, precision),
            activations=np.asarray(act_bytes, dtype=np.float64),
            boundary=np.concatenate(([0.0], send[:-1])),
            pending_w=np.asarray(w_bytes, dtype=np.float64),
        )

    def spread(self, chunk_rank: np.ndarray) -> ChunkBytes:
        """These per-rank bytes split evenly over the chunks each rank holds (a program's
        chunks, as `timeline.program.chunk_costs` splits a rank's times); a chunk's input
        stays the rank's."""
        share = np.bincount(chunk_rank)[chunk_rank]
        return ChunkBytes(
            weights=self.weights[chunk_rank] / share,
            static=self.static[chunk_rank] / share,
            activations=self.activations[chunk_rank] / share,
            boundary=self.boundary[chunk_rank],
            pending_w=self.pending_w[chunk_rank] / share,
        )


@dataclass(frozen=True, eq=False)
class MemoryProfile:
    """Per rank: bytes at the peak, and the peak of each part alone (arrays of length P).

    `times`, `ranks` and `total` list the total of a rank after each change up
    to the time asked for, in time order per rank (a step function).
    """

    peak: np.ndarray
    static: np.ndarray  # gradients, master weights, optimizer state: held throughout
    peak_weights: np.ndarray
    peak_activations: np.ndarray
    peak_pending_w: np.ndarray
    times: np.ndarray
    ranks: np.ndarray
    total: np.ndarray


@njit(cache=True)
def _memory_sweep(
    P, S, R, recompute, kind, stage, rank, replica, start, end, v_bwd, upd_stage, upd_replica,
    chunk_rank, weights, static, act, boundary, pend, until, n_samples,
):  # fmt: skip
    offset, uses = version_uses(S, R, kind, stage, replica, v_bwd, upd_stage, upd_replica)
    current = np.zeros((S, R), np.int64)
    base = np.zeros(P)
    held = np.zeros(P)  # weight versions
    for c in range(S):
        base[chunk_rank[c]] += R * static[c]
        held[chunk_rank[c]] += R * weights[c]
    live = np.zeros(P)  # activations (or boundaries) of in-flight micro-batches
    waiting = np.zeros(P)  # pending W buffers
    level = base + held  # the total
    peak = level.copy()
    peak_held = held.copy()
    peak_live = np.zeros(P)
    peak_waiting = np.zeros(P)
    times = np.empty(n_samples)
    ranks = np.empty(n_samples, np.int64)
    total = np.empty(n_samples)
    k = 0
    for i in range(len(kind)):
        r = rank[i]
        if r < 0:  # AVG: no memory of its own
            continue
        c = stage[i]
        op = kind[i]
        # acquired when the row starts
        if op in FORWARDS or (op == BACKWARD and recompute):
            add = boundary[c] if recompute and op != BACKWARD else act[c]
            live[r] += add
            level[r] += add
            peak_live[r] = max(peak_live[r], live[r])
        elif op == UPDATE:
            old = offset[c, replica[i]] + current[c, replica[i]]
            current[c, replica[i]] += 1
            if uses[old] > 0:  # still stashed for a backward: both copies are held
                held[r] += weights[c]
                level[r] += weights[c]
                peak_held[r] = max(peak_held[r], held[r])
        peak[r] = max(peak[r], level[r])
        sample = n_samples > 0 and start[i] <= until
        if sample:
            times[k] = start[i]
            ranks[k] = r
            total[k] = level[r]
            k += 1
        # released (or, for W's buffers, acquired) when it ends
        if op in RELEASES:
            drop = act[c]
            if recompute:  # the input kept, and the activations a recomputing B made
                drop = boundary[c] + (act[c] if op == BACKWARD else 0.0)
            live[r] -= drop
            level[r] -= drop
            v = offset[c, replica[i]] + v_bwd[i]
            uses[v] -= 1
            if uses[v] == 0 and v_bwd[i] != current[c, replica[i]]:
                held[r] -= weights[c]
                level[r] -= weights[c]
            if op == INPUT_GRAD:
                waiting[r] += pend[c]
                level[r] += pend[c]
                peak_waiting[r] = max(peak_waiting[r], waiting[r])
                peak[r] = max(peak[r], level[r])
        elif op == WEIGHT_GRAD:
            waiting[r] -= pend[c]
            level[r] -= pend[c]
        if sample:
            times[k] = end[i]
            ranks[k] = r
            total[k] = level[r]
            k += 1
    return peak, base, peak_held, peak_live, peak_waiting, times[:k], ranks[:k], total[:k]


def memory_profile(trace: Trace, chunks: ChunkBytes, until: float = -np.inf) -> MemoryProfile:
    """Bytes held on every rank of `trace`, whose chunks hold `chunks` (or whose ranks do,
    spread over their chunks), and the total after every change of the operations that
    start by `until` (for a picture)."""
    S = trace.stages
    chunk_rank = np.arange(S) if trace.chunk_rank is None else trace.chunk_rank
    if len(chunks.weights) == trace.ranks != S:
        chunks = chunks.spread(chunk_rank)
    if len(chunks.weights) != S:
        raise ValueError(f"sizes of {len(chunks.weights)} chunks for a trace of {S}")
    sampled = 0
    if trace.n_ops and until >= trace.start[0]:
        sampled = int(np.count_nonzero((trace.start <= until) & (trace.rank >= 0)))
    out = _memory_sweep(
        trace.ranks, S, trace.replicas, trace.recompute, trace.kind, trace.stage, trace.rank,
        trace.replica, trace.start, trace.end, trace.v_bwd, trace.upd_stage, trace.upd_replica,
        chunk_rank, chunks.weights, chunks.static, chunks.activations, chunks.boundary,
        chunks.pending_w, until, 2 * sampled,
    )  # fmt: skip
    return MemoryProfile(*out)
