"""A simulated trace in the Chrome Trace Event Format, to open in Perfetto or chrome://tracing.

Layout: one process per replica ("pipeline" when there is only one), one
thread per stage, so each stage is a track of its own; AVG, which holds every
stage of every replica at once, gets a separate "averaging" process. Process
and thread ids are replica + 1 and stage + 1, because Perfetto treats pid 0
as the kernel's idle task; names and sort indices carry the real numbers.

Time: the format counts microseconds, and one simulated cost unit is shown as
1 ms (1000 µs). Every operation row becomes one complete ("X") event whose
`args` hold the row itself, so a slice clicked in the viewer names its row.

Arrows: the data dependencies F(s,m) → F(s+1,m), F(S-1,m) → B(S-1,m) and
B(s,m) → B(s-1,m) are legacy flow events ("s" then "f" with "bp": "e"). Both
viewers bind such an event to the slice enclosing its timestamp on the same
thread, so each sits at the midpoint of its slice: strictly inside, because
forward and backward costs are > 0. Micro-batch ids are global (in localsgd
micro-batch m belongs to replica m mod R), so equal ids never cross replicas.
"""

from __future__ import annotations

import json

import numpy as np

from pipebench.timeline.trace import (
    AVERAGE,
    BACKWARD,
    FORWARD,
    INPUT_GRAD,
    KIND_NAMES,
    PAIR_BACKWARD,
    PAIR_FORWARD,
    UPDATE,
    Trace,
)

US_PER_UNIT = 1000.0
FLOW_CATEGORY = "flow"
# What each kind of dependency carries, by the label index `_dependencies` returns.
FLOW_NAMES = ("activation", "loss", "gradient")


def chrome_trace(trace: Trace) -> dict:
    """The trace as a Trace Event Format object: metadata, one slice per row, then flow arrows."""
    is_avg = trace.kind == AVERAGE
    pids = np.where(is_avg, trace.replicas + 1, trace.replica.astype(np.int64) + 1)
    tids = np.where(is_avg, 1, trace.rank.astype(np.int64) + 1)  # one track per rank
    events = _metadata(trace, pids, tids)
    pid, tid = pids.tolist(), tids.tolist()

    rows = zip(
        trace.kind.tolist(),
        trace.stage.tolist(),
        trace.mb.tolist(),
        trace.replica.tolist(),
        trace.v_fwd.tolist(),
        trace.v_bwd.tolist(),
        pid,
        tid,
        (trace.start * US_PER_UNIT).tolist(),
        ((trace.end - trace.start) * US_PER_UNIT).tolist(),
        strict=True,
    )
    for op, (kind, stage, mb, replica, v_fwd, v_bwd, p, t, ts, dur) in enumerate(rows):
        kind_name = KIND_NAMES[kind]
        events.append(
            {
                "name": kind_name if kind in (UPDATE, AVERAGE) else f"{kind_name}{mb}",
                "cat": kind_name,
                "ph": "X",
                "pid": p,
                "tid": t,
                "ts": ts,
                "dur": dur,
                "args": {
                    "op": op,
                    "kind": kind_name,
                    "stage": stage,
                    "mb": mb,
                    "replica": replica,
                    "v_fwd": v_fwd,
                    "v_bwd": v_bwd,
                },
            }
        )

    mid = ((trace.start + trace.end) * (US_PER_UNIT / 2)).tolist()
    src, dst, label = (a.tolist() for a in _dependencies(trace))
    for flow_id, (a, b, n) in enumerate(zip(src, dst, label, strict=True)):
        name = FLOW_NAMES[n]
        events.append(
            {
                "name": name,
                "cat": FLOW_CATEGORY,
                "ph": "s",
                "id": flow_id,
                "pid": pid[a],
                "tid": tid[a],
                "ts": mid[a],
            }
        )
        events.append(
            {
                "name": name,
                "cat": FLOW_CATEGORY,
                "ph": "f",
                "bp": "e",
                "id": flow_id,
                "pid": pid[b],
                "tid": tid[b],
                "ts": mid[b],
            }
        )

    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "schedule": trace.schedule,
            "stages": trace.stages,
            "microbatches": trace.microbatches,
            "replicas": trace.replicas,
            "time_unit": "1 simulated cost unit = 1 ms (1000 µs)",
            "makespan_units": trace.makespan,
        },
    }


def chrome_trace_json(trace: Trace) -> str:
    """The JSON text of `chrome_trace`, compact (a long run has millions of events)."""
    return json.dumps(chrome_trace(trace), separators=(",", ":"), allow_nan=False) + "\n"


def _metadata(trace: Trace, pid: np.ndarray, tid: np.ndarray) -> list[dict]:
    """Names and sort order of the processes and threads that hold at least one slice.

    Only tracks in use: with `replicas` up to 32767, naming every
    (replica, stage) pair could dwarf the trace itself.
    """
    events: list[dict] = []
    avg_pid = trace.replicas + 1
    width = trace.ranks + 1  # tids run 1..ranks
    keys = np.unique(pid * width + tid).tolist()
    tracks = [divmod(key, width) for key in keys]
    for p in sorted({p for p, _ in tracks}):
        if p == avg_pid:
            name = "averaging"
        else:
            name = "pipeline" if trace.replicas == 1 else f"replica {p - 1}"
        events.append(_meta(p, None, "process_name", {"name": name}))
        events.append(_meta(p, None, "process_sort_index", {"sort_index": p}))
    for p, t in tracks:
        track = "stage" if trace.chunk_rank is None else "rank"
        name = "AVG (all stages)" if p == avg_pid else f"{track} {t - 1}"
        events.append(_meta(p, t, "thread_name", {"name": name}))
        events.append(_meta(p, t, "thread_sort_index", {"sort_index": t}))
    return events


def _table(trace: Trace, kinds: tuple[int, ...]) -> np.ndarray:
    """(chunks, micro-batches) table of the rows of the given kinds."""
    rows = np.flatnonzero(np.isin(trace.kind, kinds))
    table = np.full((trace.stages, trace.microbatches), -1, dtype=np.int64)
    table[trace.stage[rows], trace.mb[rows]] = rows
    return table


def _meta(pid: int, tid: int | None, name: str, args: dict) -> dict:
    event = {"name": name, "ph": "M", "pid": pid, "ts": 0, "args": args}
    if tid is not None:
        event["tid"] = tid
    return event


def _dependencies(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source row, target row, index into FLOW_NAMES) of every F/B data dependency.

    Ordered by source row, i.e. causally, so the arrows are numbered the way
    the run unfolds. Every trace holds one forward (F or an F&B's) and one pass
    that sends the input gradient on (B, I or an F&B's backward) per (chunk,
    micro-batch); W depends only on its own rank's I.
    """
    f = _table(trace, (FORWARD, PAIR_FORWARD))
    b = _table(trace, (BACKWARD, INPUT_GRAD, PAIR_BACKWARD))
    src = np.concatenate([f[:-1].ravel(), f[-1], b[1:].ravel()])
    dst = np.concatenate([f[1:].ravel(), b[-1], b[:-1].ravel()])
    label = np.repeat(np.arange(3), [f[:-1].size, f.shape[1], b[1:].size])
    order = np.argsort(src, kind="stable")
    return src[order], dst[order], label[order]
