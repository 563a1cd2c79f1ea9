"""The Chrome trace and PyTorch action-list exports, checked against the trace they came from."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np
import pytest
from conftest import TIMELINE_SCHEDULES
from hypothesis import given, settings
from hypothesis import strategies as st

from pipebench.errors import InputError
from pipebench.report.chrome_trace import chrome_trace, chrome_trace_json
from pipebench.report.torch_schedule import torch_actions, torch_csv_text
from pipebench.schedules.torch_csv import parse_torch_csv
from pipebench.timeline import CostModel, build_timeline
from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, KIND_NAMES, Trace

# `_action_regex` of torch/distributed/pipelining/schedules.py, which `_Action.from_str` applies.
TORCH_ACTION = re.compile(
    r"(\d+)(F|I|B|W|UNSHARD|RESHARD|REDUCE_GRAD|SEND_F|RECV_F|SEND_B|RECV_B)(\d*)"
)

COSTS = CostModel.build(4, forward=1.0, backward=2.0, comm=0.5)
# (schedule, options): every single-pipeline schedule, some with non-default options.
SINGLE = [
    ("pd", {}),
    ("2bw", {}),
    ("paci", {"accumulate": 2}),
    ("paci", {"recompute": True}),
    ("gpipe", {}),
    ("1f1b-flush", {"accumulate": 4}),
    ("naive", {}),
    ("localsgd", {"replicas": 1, "local_steps": 2}),
]
MULTI = [("localsgd", {"replicas": 2, "local_steps": 2}), ("localsgd", {})]


def _trace(name: str, options: dict, costs: CostModel = COSTS, microbatches: int = 12) -> Trace:
    trace = build_timeline(name, costs, microbatches, **options)
    assert isinstance(trace, Trace)
    return trace


def _dependencies(trace: Trace) -> set[tuple[int, int]]:
    """(source row, target row) of F(s,m)→F(s+1,m), F(S-1,m)→B(S-1,m), B(s,m)→B(s-1,m)."""
    row = {
        (int(k), int(s), int(m)): i
        for i, (k, s, m) in enumerate(zip(trace.kind, trace.stage, trace.mb, strict=True))
        if k in (FORWARD, BACKWARD)
    }
    last = trace.stages - 1
    deps = set()
    for (k, s, m), i in row.items():
        if k == FORWARD:
            deps.add((i, row[(FORWARD, s + 1, m)] if s < last else row[(BACKWARD, last, m)]))
        elif s > 0:
            deps.add((i, row[(BACKWARD, s - 1, m)]))
    return deps


def _enclosing(slices_by_track: dict, event: dict) -> int:
    """The row of the one slice on the event's track that strictly contains its timestamp."""
    ts, end, op = slices_by_track[(event["pid"], event["tid"])]
    inside = np.flatnonzero((ts < event["ts"]) & (event["ts"] < end))
    assert len(inside) == 1, f"flow event {event} lies in {len(inside)} slices"
    return int(op[inside[0]])


def check_chrome_trace(trace: Trace) -> None:
    doc = json.loads(json.dumps(chrome_trace(trace), allow_nan=False))
    assert doc == json.loads(chrome_trace_json(trace))
    assert doc["displayTimeUnit"] == "ms"
    assert "1 ms" in doc["otherData"]["time_unit"]
    events = doc["traceEvents"]

    # Exactly one complete event per operation row, recovering the row.
    slices = [e for e in events if e["ph"] == "X"]
    assert sorted(e["args"]["op"] for e in slices) == list(range(trace.n_ops))
    for e in slices:
        i = e["args"]["op"]
        kind = KIND_NAMES[trace.kind[i]]
        assert e["cat"] == e["args"]["kind"] == kind
        assert e["name"] == (f"{kind}{trace.mb[i]}" if trace.kind[i] <= BACKWARD else kind)
        for field in ("stage", "mb", "replica", "v_fwd", "v_bwd"):
            assert e["args"][field] == getattr(trace, field)[i], field
        assert e["ts"] / 1000 == pytest.approx(trace.start[i], rel=1e-12, abs=1e-12)
        assert (e["ts"] + e["dur"]) / 1000 == pytest.approx(trace.end[i], rel=1e-12, abs=1e-12)

    # One named track per stage and replica, AVG on a track of its own.
    process_names = [e for e in events if e["name"] == "process_name"]
    thread_names = [e for e in events if e["name"] == "thread_name"]
    process = {e["pid"]: e["args"]["name"] for e in process_names}
    thread = {(e["pid"], e["tid"]): e["args"]["name"] for e in thread_names}
    assert len(process) == len(process_names) and len(thread) == len(thread_names), "named twice"
    by_track = defaultdict(list)
    for e in slices:
        by_track[(e["pid"], e["tid"])].append(e)
    assert set(by_track) == set(thread)
    expected_tracks = set()
    for track, group in by_track.items():
        rows = [e["args"]["op"] for e in group]
        if trace.kind[rows[0]] == AVERAGE:
            assert all(trace.kind[rows] == AVERAGE)
            expected_tracks.add("averaging")
            assert process[track[0]] == "averaging"
            continue
        (stage,) = set(trace.stage[rows].tolist())
        (replica,) = set(trace.replica[rows].tolist())
        expected_tracks.add((replica, stage))
        assert thread[track] == f"stage {stage}"
        assert process[track[0]] == ("pipeline" if trace.replicas == 1 else f"replica {replica}")
    want = {
        (r, s)
        for r in set(trace.replica[trace.kind == FORWARD].tolist())
        for s in range(trace.stages)
    }
    assert expected_tracks == want | ({"averaging"} if (trace.kind == AVERAGE).any() else set())

    # Each flow: one start and one end sharing id, name and category, each strictly
    # inside its slice, and together they are exactly the data dependencies.
    slices_by_track = {
        track: (
            np.array([e["ts"] for e in group]),
            np.array([e["ts"] + e["dur"] for e in group]),
            np.array([e["args"]["op"] for e in group]),
        )
        for track, group in by_track.items()
    }
    flows = defaultdict(dict)
    for e in events:
        if e["ph"] in ("s", "f"):
            assert e["ph"] not in flows[e["id"]], f"flow {e['id']} has two {e['ph']!r} events"
            flows[e["id"]][e["ph"]] = e
    pairs = set()
    for start_end in flows.values():
        start, end = start_end["s"], start_end["f"]
        assert start["cat"] == end["cat"] == "flow"
        assert start["name"] == end["name"]
        assert end["bp"] == "e"
        pairs.add((_enclosing(slices_by_track, start), _enclosing(slices_by_track, end)))
    assert len(pairs) == len(flows)
    assert pairs == _dependencies(trace)


def check_torch_round_trip(trace: Trace) -> None:
    actions = torch_actions(trace)
    text = torch_csv_text(trace)
    assert text.endswith("\n") and "\r" not in text
    assert text.splitlines() == [",".join(row) for row in actions]
    expected = []
    for s in range(trace.stages):
        rows = np.flatnonzero((trace.stage == s) & (trace.kind <= BACKWARD))
        rows = rows[np.argsort(trace.start[rows], kind="stable")]
        assert np.all(np.diff(trace.start[rows]) > 0), "a stage runs one operation at a time"
        expected.append([(s, KIND_NAMES[trace.kind[i]], int(trace.mb[i])) for i in rows])
    assert parse_torch_csv(text) == expected
    for s, row in enumerate(actions):
        for cell in row:
            match = TORCH_ACTION.fullmatch(cell)
            assert match is not None, cell
            assert (int(match[1]), match[2], int(match[3])) in expected[s]
        # Every micro-batch once forward and once backward on every rank.
        mbs = sorted(m for _, _, m in expected[s])
        assert mbs == sorted(list(range(trace.microbatches)) * 2)


@pytest.mark.parametrize(("name", "options"), SINGLE + MULTI)
def test_chrome_trace_matches_the_trace(name: str, options: dict) -> None:
    check_chrome_trace(_trace(name, options))


def test_chrome_trace_is_deterministic() -> None:
    first = chrome_trace_json(_trace("localsgd", {"replicas": 2}))
    assert first == chrome_trace_json(_trace("localsgd", {"replicas": 2}))


@pytest.mark.parametrize(("name", "options"), SINGLE)
def test_torch_csv_round_trips_per_stage_order(name: str, options: dict) -> None:
    check_torch_round_trip(_trace(name, options))


@pytest.mark.parametrize(("name", "options"), MULTI)
def test_torch_csv_refuses_several_replicas(name: str, options: dict) -> None:
    trace = _trace(name, options)
    for export in (torch_actions, torch_csv_text):
        with pytest.raises(InputError, match="replicas") as info:
            export(trace)
        assert info.value.field == "torch-csv"


@pytest.mark.parametrize(
    "bad",
    [
        "0X3",
        "F3",
        "0F",
        "0I",
        "(0F3)OVERLAP_F_B",
        "(0F3;1B2)",
        "1UNSHARD",
        "0F3x",
        "0F-1",
        "-1F2",
        "0f3",
        "٣F1",
    ],
)
def test_parse_torch_csv_names_the_bad_row_and_cell(bad: str) -> None:
    with pytest.raises(InputError, match=r"row 2, cell 3: ") as info:
        parse_torch_csv(f"0F0,0B0\n1F0,1B0,{bad}\n")
    assert info.value.field == "torch-csv"


def test_parse_torch_csv_reads_pytorch_idle_cells_and_spaces() -> None:
    text = " 0F1 ,,0B1\r\n1F1,1B1\n"
    assert parse_torch_csv(text) == [[(0, "F", 1), (0, "B", 1)], [(1, "F", 1), (1, "B", 1)]]


def test_parse_torch_csv_refuses_what_csv_cannot_read() -> None:
    with pytest.raises(InputError, match="line 1: not CSV"):
        parse_torch_csv("0F1," + "1" * 200_000 + "\n")


SCHEDULES = st.sampled_from(TIMELINE_SCHEDULES)


@settings(max_examples=40, deadline=None)
@given(
    name=SCHEDULES,
    stages=st.integers(1, 5),
    microbatches=st.integers(1, 14),
    forward=st.floats(0.05, 4.0),
    backward=st.floats(0.05, 4.0),
    comm=st.floats(0.0, 2.0),
    jitter=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**16),
    replicas=st.integers(1, 3),
)
def test_exports_hold_for_random_pipelines(
    name: str,
    stages: int,
    microbatches: int,
    forward: float,
    backward: float,
    comm: float,
    jitter: float,
    seed: int,
    replicas: int,
) -> None:
    costs = CostModel.build(
        stages, forward=forward, backward=backward, comm=comm, jitter=jitter, seed=seed
    )
    options = {"replicas": replicas} if name == "localsgd" else {}
    trace = _trace(name, options, costs, microbatches)
    check_chrome_trace(trace)
    if trace.replicas == 1:
        check_torch_round_trip(trace)
    else:
        with pytest.raises(InputError):
            torch_csv_text(trace)


def test_schedule_command_writes_both_exports(tmp_path, capsys) -> None:
    from pipebench.cli import main

    trace_file, csv_file = tmp_path / "t.json", tmp_path / "t.csv"
    exports = ["--chrome-trace", str(trace_file), "--torch-csv", str(csv_file)]
    args = ["schedule", "1f1b-flush", "-S", "3", "-M", "6", "--forward", "1", "--backward", "2",
            "--comm", "0.5", *exports]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    trace = build_timeline("1f1b-flush", CostModel.build(3, forward=1.0, backward=2.0, comm=0.5), 6)
    assert json.loads(trace_file.read_text()) == json.loads(chrome_trace_json(trace))
    assert csv_file.read_text() == torch_csv_text(trace)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["localsgd", "-S", "2", "-M", "4"], "single pipeline"),
        (["rpd", "-S", "2", "-M", "4"], "iteration plan"),
    ],
)
def test_schedule_command_refuses_what_torch_cannot_express(tmp_path, capsys, args, words):
    from pipebench.cli import main

    target = tmp_path / "t.csv"
    assert main(["schedule", *args, "--torch-csv", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and words in err and not target.exists()


def test_export_into_a_missing_folder_is_refused(tmp_path, capsys) -> None:
    from pipebench.cli import main

    target = tmp_path / "no" / "t.json"
    assert main(["schedule", "pd", "-S", "2", "-M", "4", "--chrome-trace", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--chrome-trace" in err and "does not exist" in err
