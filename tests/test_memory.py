"""Memory in bytes per rank (timeline/memory.py) against closed counts, the trace's own
peak statistics, a plain-NumPy event sweep, and a measured H200 pipeline rank."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PROGRAM_SCHEDULES, TIMELINE_SCHEDULES, unit
from hypothesis import given, settings
from hypothesis import strategies as st
from test_scenario import BASE, write

import pipebench
from pipebench.api import load_experiment
from pipebench.cli import main
from pipebench.experiment import chunk_bytes
from pipebench.hardware.gpus import gpu_preset
from pipebench.hardware.model import model_preset
from pipebench.optim import OPTIMIZERS, PRECISIONS, static_bytes_per_param
from pipebench.scenario.hardware import build_machine
from pipebench.timeline import CostModel, build_timeline, setup_schedule, stats_of
from pipebench.timeline.budget import timeline_for
from pipebench.timeline.memory import ChunkBytes, memory_profile
from pipebench.timeline.stats import FORWARDS, RELEASES
from pipebench.timeline.trace import (
    BACKWARD,
    INPUT_GRAD,
    UPDATE,
    WEIGHT_GRAD,
)


def sizes(chunks: int, params=0.0, act=0.0, w=0.0, send=0.0, **kw) -> ChunkBytes:
    """Hand-made sizes: a number (the same for every chunk) or an array per field."""
    full = [
        np.broadcast_to(np.asarray(v, dtype=np.float64), chunks) for v in (params, act, w, send)
    ]
    return ChunkBytes.of(*full, **kw)


def test_adamw_under_mixed_precision_is_megatrons_18_bytes_per_parameter():
    assert PRECISIONS["bf16"].weights + static_bytes_per_param("adamw", "bf16") == 18
    # and through the sweep: a synchronous schedule, nothing in flight but the weights
    S, params = 4, np.array([10, 20, 30, 40])
    trace = build_timeline("1f1b-flush", unit(S), 8)
    mem = memory_profile(trace, sizes(S, params=params))
    assert np.array_equal(mem.peak, 18 * params)
    assert np.array_equal(mem.static, 16 * params)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_static_bytes_count_the_optimizer_state(optimizer):
    state = {"sgd": 0, "momentum": 1, "adamw": 2, "muon": 1}[optimizer]
    assert static_bytes_per_param(optimizer, "fp32") == 4 + 4 * state
    assert static_bytes_per_param(optimizer, "bf16") == 4 + 4 + 4 * state


@pytest.mark.parametrize("S", [2, 3, 5, 8])
def test_pd_holds_s_minus_s_versions_of_a_stage(S):
    params = np.arange(1, S + 1) * 1000.0
    trace = build_timeline("pd", unit(S), 4 * S)
    mem = memory_profile(trace, sizes(S, params=params, optimizer="sgd"))
    versions = np.arange(S, 0, -1)
    assert np.array_equal(mem.peak_weights, versions * 2 * params)
    assert np.array_equal(mem.peak, versions * 2 * params + 8 * params)


@pytest.mark.parametrize("S", [2, 4, 6])
def test_2bw_holds_two_versions(S):
    params = np.full(S, 1000.0)
    trace = build_timeline("2bw", unit(S), 8 * S, accumulate=S)
    mem = memory_profile(trace, sizes(S, params=params))
    assert np.array_equal(mem.peak_weights, 2 * 2 * params)


def test_localsgd_holds_a_copy_of_everything_per_replica():
    S, R = 3, 2
    trace = build_timeline("localsgd", unit(S), 12, replicas=R)
    mem = memory_profile(trace, sizes(S, params=100.0))
    assert np.array_equal(mem.peak, np.full(S, R * 18 * 100.0))


@pytest.mark.parametrize("p", [2, 4, 8])
def test_1f1b_rank0_peak_is_p_activations_and_the_static_part(p):
    act, params = 3e6, 5e5
    trace = build_timeline("1f1b-flush", unit(p), 4 * p)
    mem = memory_profile(trace, sizes(p, params=params, act=act))
    assert mem.peak[0] == p * act + 18 * params
    assert np.array_equal(mem.peak_activations, (p - np.arange(p)) * act)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_zb_h2_keeps_up_to_2p_minus_1_activations(p):
    act, w, params = 3e6, 1e6, 5e5
    trace = build_timeline("zb-h2", unit(p), 4 * p)
    mem = memory_profile(trace, sizes(p, params=params, act=act, w=w))
    assert mem.peak_activations[0] == (2 * p - 1) * act
    assert mem.peak[0] <= (2 * p - 1) * act + 18 * params + mem.peak_pending_w[0]
    assert mem.peak[0] >= (2 * p - 1) * act + 18 * params


def _trace(name: str, S: int, groups: int, seed: int):
    """A jittered run of `groups` mini-batches (programs run whole ones)."""
    costs = CostModel.build(S, update=0.25, comm=0.1, jitter=0.3, seed=seed)
    options = {"recompute": True} if name == "paci" and seed % 2 else {}
    unit_size = setup_schedule(name, S, options).options.get("accumulate", 1)
    return build_timeline(name, costs, groups * int(unit_size), **options)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(TIMELINE_SCHEDULES + PROGRAM_SCHEDULES),
    S=st.integers(2, 5),
    groups=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_counts_agree_with_the_traces_peak_statistics(name, S, groups, seed):
    """Each part alone, in bytes, is the trace's peak count times the bytes of one."""
    trace = _trace(name, S, groups, seed)
    stats = stats_of(trace)
    C = trace.stages
    held = sizes(C, act=7.0)  # what a micro-batch in flight keeps: under recompute, its input
    if trace.recompute:
        held = replace(held, activations=np.zeros(C), boundary=np.full(C, 7.0))
    assert np.array_equal(
        memory_profile(trace, held).peak_activations, 7.0 * np.array(stats.rank_peak_activations)
    )
    assert np.array_equal(
        memory_profile(trace, sizes(C, w=5.0)).peak_pending_w,
        5.0 * np.array(stats.rank_peak_pending_w),
    )
    if trace.chunk_rank is None:  # one chunk per rank: versions per stage are per rank
        weights = np.arange(1, C + 1, dtype=np.float64)
        mem = memory_profile(trace, sizes(C, params=weights / 2))
        assert np.array_equal(mem.peak_weights, weights * np.array(stats.peak_versions))


def reference_peaks(trace, chunks: ChunkBytes) -> np.ndarray:
    """Peak bytes per rank by sorting +/- events in time (releases first at a tie)."""
    S, R = trace.stages, trace.replicas
    chunk_rank = np.arange(S) if trace.chunk_rank is None else trace.chunk_rank
    rank = trace.rank
    events = []  # (rank, time, 0 release / 1 acquire, bytes)
    keep = chunks.boundary if trace.recompute else chunks.activations
    for i in range(trace.n_ops):
        k, c, r = trace.kind[i], trace.stage[i], rank[i]
        if r < 0:
            continue
        t0, t1 = trace.start[i], trace.end[i]
        if k in FORWARDS:
            events.append((r, t0, 1, keep[c]))
        if k in RELEASES:
            events.append((r, t1, 0, -keep[c]))
        if k == BACKWARD and trace.recompute:
            events += [(r, t0, 1, chunks.activations[c]), (r, t1, 0, -chunks.activations[c])]
        if k == INPUT_GRAD:
            events.append((r, t1, 1, chunks.pending_w[c]))
        if k == WEIGHT_GRAD:
            events.append((r, t1, 0, -chunks.pending_w[c]))
    # weight version v of (chunk, replica): from the start of the U that made it until the
    # next U starts or its last backward ends, whichever is later
    made, last_use = {}, {}
    for i in np.flatnonzero(trace.kind == UPDATE):
        key = (trace.stage[i], trace.replica[i])
        made.setdefault(key, [-np.inf]).append(trace.start[i])
    for i in np.flatnonzero(np.isin(trace.kind, RELEASES)):
        key = (trace.stage[i], trace.replica[i], trace.v_bwd[i])
        last_use[key] = max(last_use.get(key, -np.inf), trace.end[i])
    for c in range(S):
        for q in range(R):
            starts = made.get((c, q), [-np.inf])
            for v, t0 in enumerate(starts):
                nxt = starts[v + 1] if v + 1 < len(starts) else np.inf
                t1 = max(nxt, last_use.get((c, q, v), -np.inf))
                r = chunk_rank[c]
                events += [(r, t0, 1, chunks.weights[c]), (r, t1, 0, -chunks.weights[c])]
    peaks = np.zeros(trace.ranks)
    for c in range(S):
        peaks[chunk_rank[c]] += R * chunks.static[c]
    level = peaks.copy()
    for r, _, _, b in sorted(events, key=lambda e: (e[0], e[1], e[2])):
        level[r] += b
        peaks[r] = max(peaks[r], level[r])
    return peaks


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(TIMELINE_SCHEDULES + PROGRAM_SCHEDULES),
    S=st.integers(2, 5),
    groups=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_peaks_match_a_sorted_event_sweep(name, S, groups, seed):
    trace = _trace(name, S, groups, seed)
    rng = np.random.default_rng(seed)
    C = trace.stages
    chunks = sizes(C, *(rng.integers(1, 1000, (4, C)).astype(np.float64)))
    mem = memory_profile(trace, chunks, until=np.inf)
    assert np.allclose(mem.peak, reference_peaks(trace, chunks), rtol=1e-12)
    # the samples reach each rank's peak and never exceed it
    for r in range(trace.ranks):
        mine = mem.total[mem.ranks == r]
        assert mine.max() == mem.peak[r]


def test_recompute_keeps_only_the_boundary():
    S, act, send = 4, 1000.0, 10.0
    plain = build_timeline("paci", unit(S), 4 * S)
    again = build_timeline("paci", unit(S), 4 * S, recompute=True)
    chunks = sizes(S, act=act, send=send)
    held = np.array(stats_of(plain).peak_activations)
    assert np.array_equal(memory_profile(plain, chunks).peak, held * act)
    # the input of each micro-batch in flight, and one micro-batch's activations in B
    boundary = np.concatenate(([0.0], np.full(S - 1, send)))
    assert np.array_equal(memory_profile(again, chunks).peak, held * boundary + act)


# ---------------------------------------------------------------- against a real GPU

MEASURED = Path(__file__).parent / "data" / "h200_stage_memory.csv"
LAYER_COSTS = Path(pipebench.__file__).parent / "hardware" / "data" / "h200_layer_costs.csv"


def _saved_bytes() -> dict[tuple[str, str, str, str], float]:
    """(model, seq, micro_batch, part) -> measured saved bytes of one micro-batch."""
    with LAYER_COSTS.open() as f:
        return {
            (r["model"], r["seq"], r["micro_batch"], r["part"]): float(r["saved_bytes"])
            for r in csv.DictReader(f)
        }


def measured_ranks() -> list[dict]:
    with MEASURED.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("row", measured_ranks(), ids=lambda r: f"{r['model']}-{r['blocks']}b"
                         f"{'+embed' * int(r['embed'])}{'+head' * int(r['head'])}")  # fmt: skip
def test_a_measured_rank_against_the_count(row):
    """h200_stage_memory.csv: one H200 rank of fp32 weights under bf16 autocast with fused
    AdamW holds 16 bytes per parameter at its peak (weights, gradients, two moments: our
    `fp32` count) and its micro-batches' activations. Counted with the measured saved bytes
    of its parts, the peak of a rank without the head is at most 15% above the measurement
    (each part's saved bytes include its input, which in a stack is the previous part's
    output, kept once). The head's loss keeps transient fp32 logits that are not counted.
    """
    saved = _saved_bytes()
    key = (row["model"], row["seq"], row["micro_batch"])
    parts = int(row["blocks"]) * saved[(*key, "block")]
    parts += int(row["embed"]) * saved[(*key, "embed")] + int(row["head"]) * saved[(*key, "head")]
    in_flight = int(row["in_flight"])
    trace = build_timeline("gpipe", unit(1), in_flight, accumulate=in_flight)
    chunks = sizes(1, params=float(row["params"]), act=parts, precision="fp32")
    predicted = memory_profile(trace, chunks).peak[0]
    measured = float(row["peak_bytes"])
    assert predicted == 16 * float(row["params"]) + in_flight * parts
    if not int(row["head"]):
        assert measured <= predicted <= 1.15 * measured


# ---------------------------------------------------------------- in `pipebench run`

MODEL_RUN = BASE.replace(
    "  costs: {forward: 1, backward: 1}\n",
    "  model: {preset: gpt2-medium, seq: 1024, micro_batch: 8}\n  hardware: HARDWARE\n",
).replace("optimizer: {name: sgd, lr: 0.01}", "optimizer: {name: adamw, lr: 0.001}")


def _run_model(tmp_path, capsys, hardware: str, plots: bool = False) -> tuple[pd.DataFrame, str]:
    out = tmp_path / "out"
    scenario = write(tmp_path, MODEL_RUN.replace("HARDWARE", hardware))
    flags = [] if plots else ["--no-plots"]
    code = main(["run", str(scenario), "--out", str(out), "--quiet", *flags])
    assert code == 0
    if plots:  # a memory picture beside each Gantt chart
        gantts = sorted(p.name[len("gantt-") :] for p in out.glob("gantt-*.png"))
        assert sorted(p.name[len("memory-") :] for p in out.glob("memory-*.png")) == gantts
        assert len(gantts) == 2
    return pd.read_csv(out / "summary.csv"), capsys.readouterr().err


def test_run_reports_peak_memory_and_flags_oom_exactly_above_the_memory(tmp_path, capsys):
    summary, err = _run_model(tmp_path, capsys, "h200", plots=True)
    assert err == ""
    exp = load_experiment(write(tmp_path, MODEL_RUN.replace("HARDWARE", "h200")))
    for entry in exp.entries:
        trace, until, _ = timeline_for(entry.setup, exp.costs, exp.budget_kind, exp.budget)
        expected = memory_profile(trace.cut(until), chunk_bytes(exp.machine, "adamw")).peak.max()
        rows = summary[summary["label"] == entry.label]
        assert np.allclose(rows["peak_memory_gb"], expected / 1e9, rtol=1e-12)
        assert not rows["oom"].any()
    peak = summary["peak_memory_gb"].max()
    for factor, oom in ((1 + 1e-9, False), (1 - 1e-9, True)):
        summary, err = _run_model(
            tmp_path, capsys, f"{{base: h200, memory_gb: {float(peak * factor)!r}}}"
        )
        worst = summary["peak_memory_gb"] == summary["peak_memory_gb"].max()
        assert summary.loc[worst, "oom"].all() == oom
        assert summary["oom"].tolist() == (summary["peak_memory_gb"] > peak * factor).tolist()
        assert ("out of memory" in err) == oom


def test_a_ranks_bytes_spread_over_its_chunks_add_up_again():
    """A program's chunks share their rank's sizes: each rank keeps its own static part,
    and one micro-batch on one of zbv's two chunks per rank keeps half the rank's bytes."""
    p, params, act = 4, np.array([10.0, 20.0, 30.0, 40.0]), 1000.0
    trace = build_timeline("zbv", unit(p), 4 * p)
    mem = memory_profile(trace, sizes(p, params=params, act=act))
    assert np.array_equal(mem.static, 16 * params)
    stats = stats_of(trace)
    assert np.array_equal(mem.peak_activations, np.array(stats.rank_peak_activations) * act / 2)


# ---------------------------------------------------------------- in `pipebench schedule`

GPT2 = ["--model", "gpt2-medium", "--hardware", "h200", "--seq", "1024", "--micro-batch", "8"]


def _schedule(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["schedule", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_reports_the_peaks_with_a_model_only(capsys, tmp_path):
    code, plain, _ = _schedule(capsys, "pd", "-S", "4", "-M", "16", "--json")
    assert code == 0 and "peak_memory_bytes" not in json.loads(plain)
    peaks = {}
    for optimizer in ("adamw", "sgd"):
        code, out, _ = _schedule(
            capsys, "pd", "-S", "4", "-M", "16", "--json", *GPT2, "--optimizer", optimizer
        )
        assert code == 0
        peaks[optimizer] = np.array(json.loads(out)["peak_memory_bytes"])
    code, out, _ = _schedule(capsys, "pd", "-S", "4", "-M", "16", "--json", *GPT2)
    assert json.loads(out)["peak_memory_bytes"] == peaks["adamw"].tolist()  # the default
    machine = build_machine(model_preset("gpt2-medium", seq=1024, micro_batch=8),
                            gpu_preset("h200"), 4)  # fmt: skip
    trace = build_timeline("pd", machine.cost_model(), 16)
    expected = memory_profile(trace, chunk_bytes(machine, "adamw")).peak
    assert peaks["adamw"].tolist() == [round(b) for b in expected]
    # AdamW's two fp32 moments: 8 bytes per parameter more than SGD on every rank
    assert np.array_equal(peaks["adamw"] - peaks["sgd"], 8 * machine.sizes.params)
    png = tmp_path / "memory.png"
    code, out, _ = _schedule(capsys, "pd", "-S", "4", "-M", "16", *GPT2, "--memory-png", str(png))
    assert code == 0 and "memory per rank" in out
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizer", "adamw"], "pipebench schedule: --optimizer: needs --model"),
        (["--memory-png", "m.png"], "pipebench schedule: --memory-png: needs --model"),
        ([*GPT2, "--optimizer", "adam"], "pipebench schedule: --optimizer: unknown optimizer"),
        ([*GPT2, "--memory-png", "m.txt"], "pipebench schedule: --memory-png: a file name ending"),
    ],
)
def test_schedule_refuses_memory_flags_it_cannot_use(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = _schedule(capsys, "pd", "-S", "2", "-M", "4", *args)
    assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
