"""Schedules as programs: the published orders, their closed forms, and the executor's rules.

Costs are per chunk, as the papers write them: F, I (input gradient) and W
(weight gradient), B = I + W; a rank's `forward`/`backward` are the sums over
its chunks, so a rank with v chunks is given v·F and v·B.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import PROGRAM_SCHEDULES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipebench.cli import main
from pipebench.errors import InputError
from pipebench.schedules.base import program_problem
from pipebench.timeline import CostModel, build_timeline, setup_schedule, stats_of
from pipebench.timeline.registry import SCHEDULES, resolve_options
from pipebench.timeline.simulate import jitter_factor
from pipebench.timeline.trace import (
    BACKWARD,
    FORWARD,
    INPUT_GRAD,
    PAIR_BACKWARD,
    PAIR_FORWARD,
    UPDATE,
    WEIGHT_GRAD,
)

CHUNKS_PER_RANK = {"zbv": 2, "dualpipev": 2}


def _program(name: str, p: int, **options: object):
    schedule = SCHEDULES[name]
    return schedule.program(p, resolve_options(schedule, p, options))


def _run(name, p, m, F, In, W, minibatches=6, chunks=None, **options):
    """The trace of `minibatches` mini-batches of m micro-batches, at chunk costs F, I, W."""
    v = chunks or CHUNKS_PER_RANK.get(name, 1)
    costs = CostModel.build(p, forward=v * F, backward=v * (In + W))
    if chunks is not None:
        options["chunks"] = chunks
    if name in ("zb-h1", "zb-h2", "zbv", "dualpipev"):
        options["weight_grad"] = v * W
    return build_timeline(name, costs, minibatches * m, accumulate=m, **options)


COSTS = [(1, 1, 1), (1, 0.5, 0.5), (1, 2, 0.5), (2, 1.5, 1), (1, 1, 0.25)]


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("p", [2, 3, 5])
@pytest.mark.parametrize("F,In,W", COSTS)
def test_one_f_one_b_iteration(p, F, In, W):
    """1F1B-flush (greedy rules): (m + p - 1)(F + B) between rank 0's steps."""
    m = 2 * p
    costs = CostModel.build(p, forward=F, backward=In + W)
    trace = build_timeline("1f1b-flush", costs, 6 * m, accumulate=m)
    assert stats_of(trace).iteration_time == pytest.approx((m + p - 1) * (F + In + W))


@pytest.mark.parametrize("p", [2, 3, 4, 6])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("F,In,W", [c for c in COSTS if c[2] <= c[1]])
def test_zb_h1_iteration_and_memory(p, k, F, In, W):
    """ZB-H1 (W no longer than I): m(F+I+W) + (p-1)(F+I-W); activations as 1F1B."""
    m = k * p
    stats = stats_of(_run("zb-h1", p, m, F, In, W))
    assert stats.iteration_time == pytest.approx(m * (F + In + W) + (p - 1) * (F + In - W))
    flush = stats_of(build_timeline("1f1b-flush", CostModel.build(p), 2 * m, accumulate=m))
    assert stats.rank_peak_activations == flush.peak_activations
    assert stats.rank_peak_activations[0] == p


@pytest.mark.parametrize("p", [2, 3, 4, 6])
@pytest.mark.parametrize("m_of_p", [lambda p: 2 * p - 1, lambda p: 2 * p, lambda p: 3 * p])
@pytest.mark.parametrize("F,In,W", [*COSTS, (1, 1, 2)])
def test_zb_h2_iteration_and_memory(p, m_of_p, F, In, W):
    """ZB-H2 without a global step barrier: m(F+I+W) + (p-1) max(0, F+I-2W); 2p-1
    activations on rank 0, which starts the next mini-batch right after its own step."""
    m = m_of_p(p)
    trace = _run("zb-h2", p, m, F, In, W)
    stats = stats_of(trace)
    expected = m * (F + In + W) + (p - 1) * max(0.0, F + In - 2 * W)
    assert stats.iteration_time == pytest.approx(expected)
    assert stats.rank_peak_activations[0] == 2 * p - 1
    rank0 = np.flatnonzero(trace.rank == 0)
    first_of_next = rank0[trace.mb[rank0] == m][0]
    assert trace.kind[first_of_next] == FORWARD
    assert trace.start[first_of_next] == trace.end[rank0[trace.kind[rank0] == UPDATE][0]]


@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("v", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("F,In,W", COSTS[:3])
def test_interleaved_iteration(p, v, k, F, In, W):
    """Interleaved 1F1B: m v (F + B) + (p - 1)(F + B) at chunk costs (Megatron's bubble
    (p - 1) / (v m) of the work)."""
    m = k * p
    stats = stats_of(_run("interleaved-1f1b", p, m, F, In, W, chunks=v))
    B = In + W
    assert stats.iteration_time == pytest.approx(m * v * (F + B) + (p - 1) * (F + B))


@pytest.mark.parametrize("p", [2, 3, 4, 5])
def test_zbv_has_no_steady_state_bubble_when_f_i_w_are_equal(p):
    """ZB-V at F = I = W: one more micro-batch per mini-batch costs exactly its work
    2(F + I + W) per rank, so all idle time is the fixed warm-up and cool-down."""
    times = [stats_of(_run("zbv", p, m, 1, 1, 1)).iteration_time for m in range(2 * p, 2 * p + 5)]
    assert np.diff(times) == pytest.approx(6.0)


@pytest.mark.parametrize("p", [2, 3, 4, 5])
@pytest.mark.parametrize("overlap", [None, 2.0, 2.5])
def test_dualpipev_bubble(p, overlap):
    """DualPipeV at F = I = W (the DualPipe README's setting): the largest idle time of a
    rank per mini-batch is (p - 1)(F&B + B - 3W), F&B the time of an overlapped pair."""
    F = In = W = 1.0
    options = {} if overlap is None else {"overlap": 2 * overlap}
    trace = _run("dualpipev", p, 2 * p + 2, F, In, W, minibatches=1, **options)
    busy = np.zeros(p)
    timed = trace.kind != PAIR_BACKWARD  # an F&B is one action, timed by its forward row
    np.add.at(busy, trace.rank[timed], (trace.end - trace.start)[timed])
    pair = F + In + W if overlap is None else overlap
    assert (trace.makespan - busy).max() == pytest.approx((p - 1) * (pair + In + W - 3 * W))


# ---------------------------------------------------------------- golden orders


def _rows(text: str) -> list[list[str]]:
    """One list of actions per rank: a rank's row starts at the text's indentation, and
    lines indented further continue it."""
    return [block.split() for block in re.split(r"\n(?=\s{8}\S)", text.strip("\n"))]


def test_zb_h1_order():
    """ZB-H1, p = 3, m = 4 (the paper's Figure 3 rule): p - 1 - r warm-up forwards, each
    steady F followed by I, and rank r holding back its first r W's to the cool-down."""
    expected = """
        0F0 0F1 0F2 0I0 0W0 0F3 0I1 0W1 0I2 0W2 0I3 0W3
        1F0 1F1 1I0 1F2 1I1 1W0 1F3 1I2 1W1 1I3 1W2 1W3
        2F0 2I0 2F1 2I1 2F2 2I2 2W0 2F3 2I3 2W1 2W2 2W3
    """
    program = _program("zb-h1", 3, accumulate=4)
    assert [program.rank_actions(r) for r in range(3)] == _rows(expected)


def test_zb_h2_order():
    """ZB-H2, p = 3, m = 6: 2(p - r) - 1 warm-up forwards, then I, F with every W held
    back, then I, W, then the held-back W's (the paper's Figure 4 at F = I = W)."""
    expected = """
        0F0 0F1 0F2 0F3 0F4 0I0 0F5 0I1 0W0 0I2 0W1 0I3 0W2 0I4 0W3 0I5 0W4 0W5
        1F0 1F1 1F2 1I0 1F3 1I1 1F4 1I2 1F5 1I3 1W0 1I4 1W1 1I5 1W2 1W3 1W4 1W5
        2F0 2I0 2F1 2I1 2F2 2I2 2F3 2I3 2F4 2I4 2F5 2I5 2W0 2W1 2W2 2W3 2W4 2W5
    """
    program = _program("zb-h2", 3, accumulate=6)
    assert [program.rank_actions(r) for r in range(3)] == _rows(expected)


def test_interleaved_order():
    """Megatron's interleaving, p = 2, v = 2, m = 4: chunk c on rank c mod 2; forwards in
    rounds of p micro-batches per chunk; rank r warms up with (v-1)p + 2(p-1-r)."""
    expected = """
        0F0 0F1 2F0 2F1 0F2 2B0 0F3 2B1 2F2 0B0 2F3 0B1 2B2 2B3 0B2 0B3
        1F0 1F1 3F0 3B0 3F1 3B1 1F2 1B0 1F3 1B1 3F2 3B2 3F3 3B3 1B2 1B3
    """
    program = _program("interleaved-1f1b", 2, accumulate=4, chunks=2)
    assert [program.rank_actions(r) for r in range(2)] == _rows(expected)


@pytest.mark.parametrize(("p", "m"), [(2, 2), (3, 6), (4, 4), (4, 12)])
def test_interleaved_with_one_chunk_is_1f1b_with_megatrons_warm_up(p, m):
    """chunks = 1 is not 1F1B's order: Megatron's (and PyTorch's) interleaved warm-up,
    (v - 1)p + 2(p - 1 - r), is 2(p - 1 - r) forwards at v = 1, twice 1F1B's p - 1 - r
    (docs/schedules.md says why). The rest is 1F1B's: alternate F and B, then drain.
    At unit costs the iteration time is 1F1B's; rank r holds up to 2(p - r) - 1
    activations instead of p - r."""
    program = _program("interleaved-1f1b", p, accumulate=m, chunks=1)
    for r in range(p):
        w = min(2 * (p - 1 - r), m)
        order = [f"{r}F{k}" for k in range(w)]
        for k in range(m - w):
            order += [f"{r}F{w + k}", f"{r}B{k}"]
        order += [f"{r}B{k}" for k in range(m - w, m)]
        assert program.rank_actions(r) == order
    unit = CostModel.build(p)
    interleaved = stats_of(build_timeline("interleaved-1f1b", unit, 8 * m, accumulate=m, chunks=1))
    flush = stats_of(build_timeline("1f1b-flush", unit, 8 * m, accumulate=m))
    assert interleaved.iteration_time == flush.iteration_time == 2 * (m + p - 1)
    assert interleaved.rank_peak_activations == [min(2 * (p - r) - 1, m) for r in range(p)]
    assert flush.peak_activations == [min(p - r, m) for r in range(p)]


def test_zbv_order():
    """ZB-V, p = 2, m = 4: rank r holds chunks r and 3 - r (a V); 2(p - r) - 1 forwards of
    the first chunk, r pairs F(second) F(first), p - r rounds F I W of the second chunk."""
    expected = """
        0F0 0F1 0F2 3F0 3I0 3W0 3F1 3I1 3W1 0F3 0I0 0W0 3F2 3I2 3W2 0I1 0W1 3F3 3I3 3W3
            0I2 0W2 0I3 0W3
        1F0 2F0 1F1 2F1 2I0 2W0 1F2 1I0 1W0 2F2 2I1 2W1 1F3 1I1 1W1 2F3 2I2 2W2 1I2 2I3
            1I3 1W2 2W3 1W3
    """
    program = _program("zbv", 2, accumulate=4)
    assert [program.rank_actions(r) for r in range(2)] == _rows(expected)


def test_dualpipev_order_is_pytorchs():
    """DualPipeV, p = 4, m = 10: the per-rank order torch.distributed.pipelining's
    ScheduleDualPipeV produces (its golden file dualpipev_4rank_10mb), an F&B written
    here as (forward;backward)."""
    expected = """
        0F0 0F1 0F2 0F3 0F4 0F5 0F6 7F0 7I0 7W0 7F1 7I1 7W1 7F2 7I2 7W2 7F3 (0F7;7B3) (7F4;0B0)
          (0F8;7B4) (7F5;0B1) (0F9;7B5) (7F6;0B2) 7B6 (7F7;0B3) 7B7 (7F8;0B4) 7B8 (7F9;0B5)
          7B9 0I6 0W6 0I7 0W7 0I8 0W8 0I9 0W9
        1F0 1F1 1F2 1F3 1F4 6F0 1F5 6F1 6I0 6W0 6F2 6I1 6W1 6F3 (1F6;6B2) (6F4;1B0) (1F7;6B3)
          (6F5;1B1) (1F8;6B4) (6F6;1B2) (1F9;6B5) (6F7;1B3) 6B6 (6F8;1B4) 6B7 (6F9;1B5) 6B8
          1B6 6I9 1I7 6W9 1I8 1W7 1I9 1W8 1W9
        2F0 2F1 2F2 5F0 2F3 5F1 2F4 5F2 5I0 5W0 5F3 (2F5;5B1) (5F4;2B0) (2F6;5B2) (5F5;2B1)
          (2F7;5B3) (5F6;2B2) (2F8;5B4) (5F7;2B3) (2F9;5B5) (5F8;2B4) 5B6 (5F9;2B5) 5B7 2B6
          5B8 2I7 5I9 2I8 2W7 2I9 5W9 2W8 2W9
        3F0 4F0 3F1 4F1 3F2 4F2 3F3 4F3 3F4 4B0 (4F4;3B0) (3F5;4B1) (4F5;3B1) (3F6;4B2)
          (4F6;3B2) (3F7;4B3) (4F7;3B3) (3F8;4B4) (4F8;3B4) (3F9;4B5) (4F9;3B5) 4B6 3B6 4B7
          3B7 4I8 3I8 4I9 3I9 4W8 3W8 4W9 3W9
    """
    program = _program("dualpipev", 4, accumulate=10)
    assert [program.rank_actions(r) for r in range(4)] == _rows(expected)


# ---------------------------------------------------------------- properties


@st.composite
def setups(draw):
    name = draw(st.sampled_from(PROGRAM_SCHEDULES))
    p = draw(st.integers(1, 5))
    options: dict[str, object] = {}
    if name == "interleaved-1f1b":
        options["chunks"] = draw(st.integers(1, 3))
        m = p * draw(st.integers(1, 3))
    elif name == "dualpipev":
        m = draw(st.integers(2 * p, 2 * p + 4))
    else:
        m = draw(st.integers(1, 3 * p + 1))
    options["accumulate"] = m
    cost = st.floats(0.25, 4.0, allow_nan=False)
    fwd = draw(st.lists(cost, min_size=p, max_size=p))
    bwd = draw(st.lists(cost, min_size=p, max_size=p))
    if name != "interleaved-1f1b":
        options["weight_grad"] = draw(st.floats(0.05, 0.95)) * min(bwd)
    if name == "dualpipev" and draw(st.booleans()):
        options["overlap"] = draw(st.floats(0.3, 1.0)) * (min(fwd) + min(bwd))
    costs = CostModel.build(
        p,
        forward=fwd,
        backward=bwd,
        comm=draw(st.sampled_from([0.0, 0.5, 1.25])),
        update=draw(st.sampled_from([0.0, 0.75])),
        jitter=draw(st.sampled_from([0.0, 0.3])),
        seed=draw(st.integers(0, 100)),
    )
    return name, costs, m * draw(st.integers(1, 3)), options


def _check_trace(name, costs, M, options):
    program = _program(name, costs.stages, **options)
    assert program_problem(program) is None
    trace = build_timeline(name, costs, M, **options)
    m, C, p = program.microbatches, program.chunks, program.ranks
    place = program.chunk_rank
    assert np.array_equal(trace.rank, place[trace.stage])
    # every (chunk, micro-batch): one forward, one input gradient, one weight gradient
    F = np.full((C, M), -1)
    In = np.full((C, M), -1)
    W = np.full((C, M), -1)
    for table, kinds in ((F, (FORWARD, PAIR_FORWARD)), (In, (BACKWARD, INPUT_GRAD, PAIR_BACKWARD)),
                         (W, (BACKWARD, WEIGHT_GRAD, PAIR_BACKWARD))):  # fmt: skip
        rows = np.flatnonzero(np.isin(trace.kind, kinds))
        counts = np.bincount(trace.stage[rows] * M + trace.mb[rows], minlength=C * M)
        assert np.all(counts == 1)
        table[trace.stage[rows], trace.mb[rows]] = rows
    hop = np.where(place[1:] != place[:-1], costs.comm, 0.0)[:, None]
    tol = 1e-9 * trace.makespan
    # dependencies, with the link latency where a result crosses ranks
    assert np.all(trace.start[F[1:]] >= trace.end[F[:-1]] + hop - tol)
    assert np.all(trace.start[In[:-1]] >= trace.end[In[1:]] + hop - tol)
    assert np.all(trace.start[In] >= trace.end[F] - tol)
    assert np.all((trace.start[W] >= trace.end[In] - tol) | (In == W))
    # one action at a time per rank, in the program's order, starting as soon as it can
    ready = np.zeros(len(trace.kind))
    f_arrive = np.zeros((C, M))  # when the input of F(c, m) is there
    f_arrive[1:] = trace.end[F[:-1]] + hop
    i_arrive = np.zeros((C, M))  # when the gradient from c + 1 is there
    i_arrive[:-1] = trace.end[In[1:]] + hop
    is_f = np.isin(trace.kind, (FORWARD, PAIR_FORWARD))
    ready[is_f] = f_arrive[trace.stage[is_f], trace.mb[is_f]]
    pair_b = np.flatnonzero(trace.kind == PAIR_BACKWARD)
    is_i = np.isin(trace.kind, (BACKWARD, INPUT_GRAD))
    ready[is_i] = i_arrive[trace.stage[is_i], trace.mb[is_i]]
    pair_f = np.flatnonzero(trace.kind == PAIR_FORWARD)
    assert np.array_equal(pair_f + 1, pair_b)  # a pair's halves are adjacent rows
    ready[pair_f] = np.maximum(ready[pair_f], i_arrive[trace.stage[pair_b], trace.mb[pair_b]])
    assert np.array_equal(trace.start[pair_b], trace.start[pair_f])
    assert np.array_equal(trace.end[pair_b], trace.end[pair_f])
    steps = np.flatnonzero(trace.kind == UPDATE)
    gate = np.zeros(M // m + 1)
    if program.flush:
        np.maximum.at(gate, trace.mb[steps] // m + 1, trace.end[steps])
    for r in range(p):
        rows = np.flatnonzero((trace.rank == r) & (trace.kind != PAIR_BACKWARD))
        actions = program.offsets[r + 1] - program.offsets[r]
        per_batch = actions + int(np.count_nonzero(place == r))
        assert len(rows) == per_batch * (M // m)
        free = 0.0
        for n, i in enumerate(rows):
            k = n % per_batch
            if k < actions:
                a = program.offsets[r] + k
                assert trace.kind[i] == program.kind[a] and trace.stage[i] == program.chunk[a]
                assert trace.mb[i] == n // per_batch * m + program.mb[a]
            else:
                assert trace.kind[i] == UPDATE
            earliest = max(free, ready[i], gate[n // per_batch] if k == 0 else 0.0)
            assert trace.start[i] == pytest.approx(earliest, abs=tol)
            free = trace.end[i]
    # durations: the chunk's share of its rank's cost, times the seeded jitter
    share = np.bincount(place, minlength=p)[place]
    compute = np.flatnonzero(np.isin(trace.kind, (FORWARD, BACKWARD, INPUT_GRAD, WEIGHT_GRAD)))
    k, c = trace.kind[compute], trace.stage[compute]
    wg = options.get("weight_grad", "half")
    fwd, bwd = np.asarray(costs.forward), np.asarray(costs.backward)
    w = bwd / 2 if wg == "half" else wg * bwd / bwd.mean()
    base = np.select(
        [k == FORWARD, k == BACKWARD, k == INPUT_GRAD, k == WEIGHT_GRAD],
        [fwd[place[c]], bwd[place[c]], (bwd - w)[place[c]], w[place[c]]],
    ) / share[c]  # fmt: skip
    jit = [jitter_factor(costs.jitter, costs.seed, kk, cc, mm) for kk, cc, mm in
           zip(k, c, trace.mb[compute], strict=True)]  # fmt: skip
    assert np.allclose(trace.end[compute] - trace.start[compute], base * np.array(jit))
    # synchronous: every pass of mini-batch g reads version g; each chunk steps once per batch
    passes = trace.kind != UPDATE
    assert np.array_equal(trace.v_fwd[passes], trace.mb[passes] // m)
    assert trace.n_updates == C * (M // m)
    versions = np.repeat(np.arange(1, M // m + 1), C)
    assert np.array_equal(np.sort(trace.upd_version), versions)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setups())
def test_program_traces_follow_the_rules(setup):
    _check_trace(*setup)


@pytest.mark.parametrize("name", PROGRAM_SCHEDULES)
@pytest.mark.parametrize("p", [1, 2, 3, 6, 8])
def test_programs_are_complete(name, p):
    """Every (chunk, micro-batch) gets F, then I or B, then W, on its chunk's rank."""
    options = {"chunks": 3} if name == "interleaved-1f1b" else {}
    program = _program(name, p, **options)
    assert program_problem(program) is None
    assert program.ranks == p


# ---------------------------------------------------------------- greedy traces, reduction


@pytest.mark.parametrize("name", ["pd", "gpipe", "1f1b-flush", "localsgd"])
def test_greedy_traces_have_one_chunk_per_rank(name):
    trace = build_timeline(name, CostModel.build(3), 12)
    assert trace.chunk_rank is None and trace.ranks == trace.stages
    assert np.array_equal(trace.chunk, trace.stage) and np.array_equal(trace.rank, trace.stage)
    stats = stats_of(trace)
    assert stats.rank_peak_activations == stats.peak_activations
    assert stats.rank_peak_pending_w == [0, 0, 0]


# ---------------------------------------------------------------- the command line


def _cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_json_has_iteration_time_and_ranks(capsys):
    import json

    code, out, err = _cli(capsys, "schedule", "zbv", "--stages", "4", "-M", "24", "--json")
    assert code == 0 and err == ""
    record = json.loads(out)
    assert record["ranks"] == 4 and record["stages"] == 8
    assert record["iteration_time"] < record["makespan"]
    assert len(record["rank_bubble_fraction"]) == 4 and len(record["peak_activations"]) == 8
    assert record["options"] == {"accumulate": 8, "weight_grad": "half"}


def test_schedule_chart_labels_chunks(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = _cli(capsys, "schedule", "dualpipev", "-S", "2", "-M", "4", "--update", "0")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("rank ")]
    assert len(rows) == 2 and rows[0].split()[2].startswith("0F0─") and "3F0" in rows[0]
    assert "0X3" in rows[0]  # the F&B pair of rank 0, by its forward's chunk and micro-batch
    assert "per rank" in out


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["zbv", "-S", "4", "-M", "12"], "--microbatches"),  # not whole mini-batches of 8
        (["interleaved-1f1b", "-S", "4", "-M", "12", "--accumulate", "6"], "--accumulate"),
        (["dualpipev", "-S", "4", "-M", "12", "--accumulate", "6"], "--accumulate"),
        (["zbv", "-S", "2", "-M", "8", "--chunks", "3"], "--chunks"),
        (["zb-h1", "-S", "2", "-M", "8", "--weight-grad", "1"], "--weight-grad"),
        (["zb-h1", "-S", "2", "-M", "8", "--weight-grad", "lots"], "--weight-grad"),
        (["interleaved-1f1b", "-S", "2", "-M", "8", "--weight-grad", "0.5"], "--weight-grad"),
        (["dualpipev", "-S", "2", "-M", "8", "--overlap", "-1"], "--overlap"),
    ],
)
def test_bad_program_options_are_one_line_errors(capsys, args, field):
    code, out, err = _cli(capsys, "schedule", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and field in err


def _durations(trace) -> tuple[np.ndarray, np.ndarray]:
    """(duration, rank) of every pass, ordered by (kind, chunk, micro-batch)."""
    passes = np.flatnonzero(trace.kind != UPDATE)
    order = np.lexsort((trace.mb[passes], trace.stage[passes], trace.kind[passes]))
    rows = passes[order]
    return trace.end[rows] - trace.start[rows], trace.rank[rows]


@pytest.mark.parametrize(
    ("name", "options"),
    [("zb-h1", {"weight_grad": 0.4}), ("dualpipev", {"weight_grad": 0.3, "overlap": 1.5})],
)
def test_a_straggler_slows_every_pass_of_its_rank(name, options):
    """An explicit W and F&B time scale with the straggler's factor, as its F and B do."""
    plain = build_timeline(name, CostModel.build(3, backward=1.5), 12, **options)
    slow = CostModel.build(3, backward=1.5, straggler=(1, 2.5))
    slowed = build_timeline(name, slow, 12, **options)
    before, rank = _durations(plain)
    after, _ = _durations(slowed)
    assert np.allclose(after, np.where(rank == 1, 2.5, 1.0) * before, rtol=1e-14)


def test_per_rank_costs_scale_an_explicit_weight_grad():
    """W is given for the mean backward (2 here) and scales with each rank's."""
    costs = CostModel.build(3, backward=[1.0, 2.0, 3.0])
    trace = build_timeline("zb-h1", costs, 3, weight_grad=0.5)
    w = trace.kind == WEIGHT_GRAD
    spans = (trace.end - trace.start)[w]
    assert np.allclose(spans, np.array([0.25, 0.5, 0.75])[trace.rank[w]], rtol=1e-14)


def test_weight_grad_must_leave_an_input_gradient():
    with pytest.raises(InputError) as info:
        build_timeline("zbv", CostModel.build(2, backward=2.0), 8, weight_grad=2.0)
    assert info.value.field == "weight_grad"


@pytest.mark.parametrize("name", PROGRAM_SCHEDULES)
def test_torch_csv_export_is_the_program(name):
    """One mini-batch exported as PyTorch's compute_only CSV is the program, rank by rank
    (an F&B as PyTorch writes it, `(0F7;7B3)OVERLAP_F_B`)."""
    from pipebench.report.torch_schedule import torch_csv_text

    p = 3
    program = _program(name, p)
    costs = CostModel.build(p, forward=[1.0, 2.0, 1.5], comm=0.5, jitter=0.2)
    trace = build_timeline(name, costs, program.microbatches)
    expected = [
        ",".join(a + "OVERLAP_F_B" if a.startswith("(") else a for a in program.rank_actions(r))
        for r in range(p)
    ]
    assert torch_csv_text(trace).splitlines() == expected


# ---------------------------------------------------------------- PyTorch CSV in


def _torch_round_trip(trace, tmp_path):
    """`trace` exported as PyTorch's compute_only CSV: the file's path."""
    from pipebench.report.torch_schedule import torch_csv_text

    path = tmp_path / "order.csv"
    path.write_text(torch_csv_text(trace))
    return path


@pytest.mark.parametrize("name", PROGRAM_SCHEDULES)
def test_torch_csv_round_trip_of_programs_is_the_identity(name, tmp_path):
    """Export one mini-batch, read it back as `torch-csv`, run it: the same trace."""
    p = 3
    costs = CostModel.build(p, forward=[1.0, 2.0, 1.5], backward=2.5, comm=0.5, jitter=0.2)
    m = _program(name, p).microbatches
    split = {} if name == "interleaved-1f1b" else {"weight_grad": 0.75}
    trace = build_timeline(name, costs, 2 * m, **split)
    path = _torch_round_trip(build_timeline(name, costs, m, **split), tmp_path)
    again = build_timeline("torch-csv", costs, 2 * m, path=str(path), **split)
    for field in ("kind", "stage", "mb", "start", "end", "v_fwd", "v_bwd", "upd_op", "upd_first"):
        assert np.array_equal(getattr(again, field), getattr(trace, field)), field
    assert np.array_equal(again.chunk_rank, trace.chunk_rank)


@pytest.mark.parametrize("name", ["1f1b-flush", "gpipe"])
def test_torch_csv_round_trip_of_greedy_schedules(name, tmp_path):
    """A greedy schedule's order, exported and run as a program, keeps every F and B time."""
    p, m = 4, 6
    costs = CostModel.build(p, forward=[1.0, 1.5, 0.5, 2.0], backward=2.0, comm=0.25)
    trace = build_timeline(name, costs, 3 * m, accumulate=m)
    one = build_timeline(name, costs, m, accumulate=m)
    again = build_timeline("torch-csv", costs, 3 * m, path=str(_torch_round_trip(one, tmp_path)))
    for kind in (FORWARD, BACKWARD):
        a, b = again.op_index(kind), trace.op_index(kind)
        assert np.array_equal(again.start[a], trace.start[b])
        assert np.array_equal(again.end[a], trace.end[b])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0F0,0B0\n0F1\n", "stage 0 runs on rows 1 and 2"),
        ("0F0,0B0\n2F0,2B0\n", "stage 1 has no action"),
        ("0F0\n1F0,1B0\n", "no I"),
        ("0B0,0F0\n1F0,1B0\n", "backward runs before its forward"),
        ("0F0,0B0,0F1,0B1\n1F1,1F0,1B0,1B1\n", "deadlocks: rank 0 at 0B0, rank 1 at 1F1"),
        ("0F0,0I0\n1F0,1B0\n", "no W"),
    ],
)
def test_torch_csv_in_refuses_bad_orders(text, says, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=says) as info:
        build_timeline("torch-csv", CostModel.build(2), 2, path=str(path))
    assert info.value.field == "torch-csv"


def test_torch_csv_without_a_file_is_refused_when_set_up():
    with pytest.raises(InputError, match="torch-csv reads a file") as info:
        setup_schedule("torch-csv", 2, {})
    assert info.value.field == "path"


def test_torch_csv_in_on_the_command_line(capsys, tmp_path):
    path = tmp_path / "dualpipev.csv"
    code, _, err = _cli(capsys, "schedule", "dualpipev", "-S", "2", "-M", "4",
                        "--torch-csv", str(path), "--json")  # fmt: skip
    assert code == 0 and err == ""
    code, _, err = _cli(capsys, "schedule", "torch-csv", "-S", "2", "-M", "8",
                        "--torch-csv-in", str(path), "--json")  # fmt: skip
    assert code == 0 and err == ""
    code, _, err = _cli(capsys, "schedule", "torch-csv", "-S", "3", "-M", "8",
                          "--torch-csv-in", str(path))  # fmt: skip
    assert code == 2 and "2 ranks" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, "schedule", "zbv", "-S", "2", "-M", "8",
                          "--torch-csv-in", str(path))  # fmt: skip
    assert code == 2 and "--torch-csv-in" in err
    code, _, err = _cli(capsys, "schedule", "torch-csv", "-S", "2", "-M", "8",
                        "--torch-csv-in", str(tmp_path / "none.csv"))  # fmt: skip
    assert code == 2 and "cannot read" in err and "--torch-csv-in" in err


@pytest.mark.parametrize("name", PROGRAM_SCHEDULES)
def test_chrome_trace_of_programs(name):
    """One track per rank; an arrow for every activation, loss and input gradient, each
    from a slice that ends before the slice it points to starts."""
    from pipebench.report.chrome_trace import chrome_trace

    p = 3
    trace = build_timeline(name, CostModel.build(p, comm=0.5), _program(name, p).microbatches)
    events = chrome_trace(trace)["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert {e["tid"] for e in slices} == set(range(1, p + 1))
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    C, M = trace.stages, trace.microbatches
    assert len(starts) == len(ends) == (2 * (C - 1) + 1) * M
    by_track = {}
    for e in slices:
        by_track.setdefault((e["pid"], e["tid"]), []).append(e)
    for flow, s in starts.items():
        f = ends[flow]
        src = next(
            e for e in by_track[s["pid"], s["tid"]] if e["ts"] <= s["ts"] <= e["ts"] + e["dur"]
        )
        dst = next(
            e for e in by_track[f["pid"], f["tid"]] if e["ts"] <= f["ts"] <= e["ts"] + e["dur"]
        )
        assert src["ts"] + src["dur"] <= dst["ts"] + 1e-6


def test_programs_too_large_to_build_are_refused():
    with pytest.raises(InputError, match="too large to build") as info:
        build_timeline("zbv", CostModel.build(2000), 4000, accumulate=2000)
    assert info.value.field == "accumulate"
