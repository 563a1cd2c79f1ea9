"""Invariants every simulated timeline must satisfy, under random costs and options.

The checker below re-derives each rule of docs/schedules.md from the trace alone:
dependencies (with link latency), barriers, one operation per stage at a time,
in-flight caps, durations, the update table, the versions read, and the greedy
1F1B choice rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import TIMELINE_SCHEDULES, fb_tables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipebench.timeline import CostModel, build_timeline, stats_of
from pipebench.timeline.budget import run_bound
from pipebench.timeline.stats import update_delays
from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, UPDATE

ONE_F_ONE_B = ("pd", "2bw", "paci", "1f1b-flush", "localsgd")


@dataclass
class Setup:
    """What docs/schedules.md says the simulator must do, from the user's inputs alone."""

    name: str
    S: int
    M: int
    fwd: np.ndarray  # base durations, straggler included, before jitter
    bwd: np.ndarray
    comm: float
    update: float
    allreduce: float
    jitter: float
    options: dict

    @property
    def acc(self) -> int:
        if self.name in ("2bw", "gpipe", "1f1b-flush"):
            return self.options.get("accumulate", self.S)
        return self.options.get("accumulate", 1) if self.name == "paci" else 1

    @property
    def R(self) -> int:
        return self.options.get("replicas", self.S) if self.name == "localsgd" else 1

    @property
    def group(self) -> int:
        if self.name in ("gpipe", "1f1b-flush"):
            return self.acc
        if self.name == "localsgd":
            return self.R * self.options.get("local_steps", 1)
        return 0

    @property
    def cap(self) -> np.ndarray:
        if self.name == "gpipe":
            return np.full(self.S, self.acc)
        if self.name == "naive":
            return np.ones(self.S, dtype=int)
        if self.options.get("inflight") == "input":  # stage 0 holds S; the rest: no cap
            return np.array([self.S] + [self.M + 1] * (self.S - 1))
        return np.arange(self.S, 0, -1)

    @property
    def recompute(self) -> bool:
        return bool(self.options.get("recompute", False))


def build(setup_kwargs: dict, name: str, M: int, options: dict):
    kw = dict(setup_kwargs)
    S = kw["stages"]
    fwd = np.broadcast_to(np.asarray(kw.get("forward", 1.0), float), (S,)).copy()
    bwd = np.broadcast_to(np.asarray(kw.get("backward", 1.0), float), (S,)).copy()
    if kw.get("straggler") is not None:
        s, f = kw["straggler"]
        fwd[s] *= f
        bwd[s] *= f
    setup = Setup(
        name=name,
        S=S,
        M=M,
        fwd=fwd,
        bwd=bwd,
        comm=kw.get("comm", 0.0),
        update=kw.get("update", 0.0),
        allreduce=kw.get("allreduce", 0.0),
        jitter=kw.get("jitter", 0.0),
        options=options,
    )
    trace = build_timeline(name, CostModel.build(**kw), M, **options)
    return setup, trace


def _close_within(d, lo, hi, scale):
    tol = 1e-9 * (1.0 + scale)
    return np.all(d >= lo - tol) and np.all(d <= hi + tol)


def check_trace(tr, cfg: Setup) -> None:
    S, M, R, acc, group = cfg.S, cfg.M, cfg.R, cfg.acc, cfg.group
    kind, stage, mb, rep, start, end = tr.kind, tr.stage, tr.mb, tr.replica, tr.start, tr.end
    assert (tr.stages, tr.microbatches, tr.replicas) == (S, M, R)
    avg_barrier = cfg.name == "localsgd"
    flush_barrier = cfg.name in ("gpipe", "1f1b-flush")
    per_stage_updates = M if cfg.name in ("localsgd", "naive", "pd") else math.ceil(M / acc)
    n_avg = math.ceil(M / group) if avg_barrier else 0
    assert tr.n_ops == 2 * S * M + S * per_stage_updates + n_avg
    assert tr.n_updates == S * per_stage_updates
    assert set(np.unique(kind)) <= {FORWARD, BACKWARD, UPDATE, AVERAGE}
    assert (kind == AVERAGE).sum() == n_avg

    # causal order, durations
    assert np.all(np.diff(start) >= 0), "rows not in non-decreasing start order"
    assert np.all(end >= start)
    assert tr.makespan == end.max()
    F, B = fb_tables(tr)
    fs, fe, bs, be = start[F], end[F], start[B], end[B]
    lo, hi = 1.0 - cfg.jitter, 1.0 + cfg.jitter
    base_b = cfg.bwd + (cfg.fwd if cfg.recompute else 0.0)
    assert _close_within(fe - fs, lo * cfg.fwd[:, None], hi * cfg.fwd[:, None], fe)
    assert _close_within(be - bs, lo * base_b[:, None], hi * base_b[:, None], be)
    urows, arows = tr.rows(UPDATE), tr.rows(AVERAGE)
    assert np.allclose(end[urows] - start[urows], cfg.update, rtol=1e-9, atol=1e-9)
    assert np.allclose(end[arows] - start[arows], cfg.allreduce, rtol=1e-9, atol=1e-9)

    # row labels
    fb = np.concatenate([F.ravel(), B.ravel()])
    assert np.array_equal(rep[fb], mb[fb] % R)
    assert np.array_equal(rep[urows], mb[urows] % R)
    assert np.all((stage[urows] >= 0) & (stage[urows] < S))
    assert np.all(tr.v_fwd[urows] == -1) and np.all(tr.v_bwd[urows] == -1)
    for col in (stage, mb, rep, tr.v_fwd, tr.v_bwd):
        assert np.all(col[arows] == -1)

    # dependencies, with link latency, and row order following them
    assert np.all(fs[1:] >= fe[:-1] + cfg.comm) and np.all(F[1:] > F[:-1])
    assert np.all(bs >= fe) and np.all(B > F)
    assert np.all(bs[:-1] >= be[1:] + cfg.comm) and np.all(B[:-1] > B[1:])

    # the update table
    upd_op = tr.upd_op
    assert np.array_equal(np.sort(upd_op), urows)
    assert np.array_equal(tr.upd_stage, stage[upd_op])
    assert np.array_equal(tr.upd_time, end[upd_op])
    assert np.array_equal(np.lexsort((tr.upd_stage, tr.upd_time)), np.arange(tr.n_updates))
    us, ulast = tr.upd_stage, tr.upd_last
    assert np.array_equal(start[upd_op], be[us, ulast]), "U must start when its last B ends"
    assert np.all(upd_op > B[us, ulast])
    for s in range(S):
        for r in range(R):
            mine = (us == s) & (tr.upd_replica == r)
            assert np.array_equal(tr.upd_version[mine], np.arange(1, mine.sum() + 1))
            firsts, lasts = tr.upd_first[mine], ulast[mine]
            if R > 1 or cfg.name == "localsgd":
                want = np.arange(r, M, R)
                assert np.array_equal(firsts, want) and np.array_equal(lasts, want)
            else:
                want_first = np.arange(0, M, acc)
                assert np.array_equal(firsts, want_first)
                assert np.array_equal(lasts, np.minimum(want_first + acc, M) - 1)

    # barriers: which micro-batches form a group, and when the next one may enter
    op_group = np.where(kind == AVERAGE, -1, mb // group if group else 0)
    n_groups = math.ceil(M / group) if group else 1
    gate = np.zeros(n_groups)
    if flush_barrier or avg_barrier:
        for g in range(n_groups):
            mine = op_group == g
            if g > 0:
                assert start[mine].min() >= gate[g], f"group {g} started before the barrier"
            if g + 1 < n_groups or avg_barrier:
                done = end[mine].max()
                if avg_barrier:
                    a = arows[g]
                    assert start[a] == done, "AVG must start when the round's last op ends"
                    assert np.all(end[mine] <= start[a]) and np.all(arows[g] > np.flatnonzero(mine))
                    done = end[a]
                if g + 1 < n_groups:
                    gate[g + 1] = done
        if flush_barrier:  # one update per stage per mini-batch
            assert np.array_equal(np.bincount(us, minlength=S), [n_groups] * S)

    # per stage: exclusivity, caps, versions read, and the greedy choice
    cap = cfg.cap
    peak = np.zeros(S, dtype=int)
    for s in range(S):
        seq = np.flatnonzero((stage == s) | (kind == AVERAGE))
        prev_end = 0.0
        version = np.zeros(R, dtype=int)
        inflight = next_f = next_b = 0
        last_fb = -1
        for i in seq:
            t = start[i]
            assert t >= prev_end, f"stage {s} runs two operations at once (row {i})"
            k = kind[i]
            if k == UPDATE:
                version[rep[i]] += 1
            elif k in (FORWARD, BACKWARD):
                if cfg.name != "gpipe":  # greedy list scheduling, lowest micro-batch first
                    rf = rb = np.inf
                    if next_f < M and inflight < cap[s]:
                        m = next_f
                        rf = fe[s - 1, m] + cfg.comm if s > 0 else gate[m // group if group else 0]
                        if avg_barrier and m >= R:
                            rf = max(rf, be[s, m - R] if next_b > m - R else np.inf)
                    if next_b < next_f:
                        m = next_b
                        rb = fe[s, m] if s == S - 1 else max(fe[s, m], be[s + 1, m] + cfg.comm)
                    assert t == max(prev_end, min(rf, rb)), f"stage {s} idles at row {i}"
                    pick_b = rb <= t and (last_fb != BACKWARD or not rf <= t)
                    assert (k == BACKWARD) == pick_b, f"1F1B choice broken at row {i}"
                m, r = mb[i], rep[i]
                if k == FORWARD:
                    assert m == next_f
                    next_f += 1
                    inflight += 1
                    assert inflight <= cap[s], f"stage {s} exceeds its in-flight cap"
                    peak[s] = max(peak[s], inflight)
                    if cfg.name == "2bw":
                        assert tr.v_fwd[i] == max(m // acc - 1, 0) <= version[r]
                    else:
                        assert tr.v_fwd[i] == version[r]
                else:
                    if cfg.name != "gpipe":
                        assert m == next_b
                    next_b += 1
                    inflight -= 1
                    if cfg.name == "paci":
                        assert tr.v_bwd[i] == version[r]
                    else:  # stashed, or no update can fall between F and B
                        assert tr.v_bwd[i] == tr.v_fwd[F[s, m]]
                last_fb = k
            prev_end = end[i]
        assert next_f == next_b == M and inflight == 0

    # closed forms of the versions read
    vf = tr.v_fwd[F]
    ms = np.broadcast_to(np.arange(M), (S, M))
    if cfg.name in ("gpipe", "1f1b-flush"):
        assert np.array_equal(vf, ms // acc)
    elif cfg.name == "naive":
        assert np.array_equal(vf, ms)
    elif cfg.name == "localsgd":
        assert np.array_equal(vf, ms // R)

    # gpipe: every stage runs all forwards of a mini-batch before its backwards
    if cfg.name == "gpipe":
        for g in range(n_groups):
            cols = slice(g * group, min((g + 1) * group, M))
            assert np.all(bs[:, cols].min(axis=1) >= fe[:, cols].max(axis=1))

    # delays in block updates, from the definition in docs/schedules.md: update k from
    # micro-batches first..last has delay k minus the fewest updates finished when one
    # of its forwards F(j, m) started; a forward reading an older version than the
    # current one (2bw) reads the last iterate that still had it (stats.py's rule)
    delays = update_delays(tr)
    if R == 1:
        ends = np.sort(tr.upd_time)
        reads = np.searchsorted(ends, fs, side="right")  # (S, M)
        maker = {(s, v): k for k, (s, v) in enumerate(zip(us, tr.upd_version, strict=True))}
        for j in range(S):
            for m in range(M):
                k = maker.get((j, tr.v_fwd[F[j, m]] + 1))
                if k is not None:
                    reads[j, m] = min(reads[j, m], k)
        if cfg.name in ("pd", "paci"):  # they read the current version: nothing older
            assert np.array_equal(reads, np.searchsorted(ends, fs, side="right"))
        oldest_per_block = np.array(
            [reads[:, a : b + 1].min(axis=1) for a, b in zip(tr.upd_first, ulast, strict=True)]
        )  # (updates, S)
        oldest = reads.min(axis=0)
        oldest = [oldest[a : b + 1].min() for a, b in zip(tr.upd_first, ulast, strict=True)]
        assert np.array_equal(delays, np.arange(tr.n_updates) - np.array(oldest))
        block_delays = np.arange(tr.n_updates)[:, None] - oldest_per_block
        st = stats_of(tr)
        assert math.isclose(st.mean_block_delay, block_delays.mean(), rel_tol=1e-12)
        assert np.allclose(st.stage_mean_delay, block_delays.mean(axis=0), rtol=1e-12, atol=0)
    if cfg.name in ("gpipe", "1f1b-flush", "naive", "localsgd"):
        # sequential, or stale-free with each replica numbered apart: stage s's update
        # comes right after those of the S - 1 - s later stages for the same micro-batches
        assert np.array_equal(delays, S - 1 - us)

    stats = stats_of(tr)
    assert stats.updates == tr.n_updates and stats.makespan == tr.makespan
    assert stats.peak_activations == peak.tolist()
    b = tr.rows(BACKWARD)
    drift = np.zeros(S, dtype=int)
    np.maximum.at(drift, stage[b], tr.v_bwd[b] - tr.v_fwd[b])
    assert stats.stage_max_drift == drift.tolist()
    busy = (end - start)[kind != AVERAGE].sum() + S * (end - start)[arows].sum()
    assert math.isclose(stats.bubble_fraction, 1 - busy / (S * tr.makespan), abs_tol=1e-9)
    assert stats.max_delay == delays.max()
    versions = np.array(stats.peak_versions)
    if cfg.name == "pd":
        assert np.all(versions <= cfg.cap.clip(max=S))  # stage s keeps what it may hold
    elif cfg.name == "2bw":
        assert np.all(versions <= 2)
    elif cfg.name == "localsgd":
        assert np.all(versions == R)  # one copy per replica, nothing stashed
    else:  # no stashing at all
        assert np.all(versions == 1)


# ---------------------------------------------------------------- strategies


def _costs(S):
    positive = st.floats(0.05, 5.0, allow_nan=False)
    nonneg = st.one_of(st.just(0.0), st.floats(0.0, 3.0, allow_nan=False))
    per_stage = st.one_of(st.just(1.0), positive, st.lists(positive, min_size=S, max_size=S))
    straggler = st.one_of(
        st.none(), st.tuples(st.integers(0, S - 1), st.floats(1.0, 4.0, allow_nan=False))
    )
    return st.fixed_dictionaries(
        {
            "stages": st.just(S),
            "forward": per_stage,
            "backward": per_stage,
            "comm": nonneg,
            "update": nonneg,
            "allreduce": nonneg,
            "jitter": st.one_of(st.just(0.0), st.floats(0.0, 0.9, exclude_max=True)),
            "seed": st.integers(0, 2**31 - 1),
            "straggler": straggler,
        }
    )


def _options(name, S):
    options = _schedule_options(name, S)
    if name not in ONE_F_ONE_B:
        return options
    inflight = st.sampled_from([{}, {"inflight": "per-stage"}, {"inflight": "input"}])
    return st.builds(lambda o, i: o | i, options, inflight)


def _schedule_options(name, S):
    maybe = st.booleans()
    if name in ("gpipe", "1f1b-flush"):
        return st.one_of(st.just({}), st.builds(lambda a: {"accumulate": a}, st.integers(1, 12)))
    if name == "2bw":
        return st.one_of(st.just({}), st.builds(lambda a: {"accumulate": a}, st.integers(S, S + 6)))
    if name == "paci":
        return st.builds(
            lambda a, rc, use_a: ({"accumulate": a} if use_a else {}) | {"recompute": rc},
            st.integers(1, 8),
            st.booleans(),
            maybe,
        )
    if name == "localsgd":
        return st.builds(
            lambda r, h, use: {"replicas": r, "local_steps": h} if use else {},
            st.integers(1, 6),
            st.integers(1, 4),
            maybe,
        )
    return st.just({})


@st.composite
def scenarios(draw):
    name = draw(st.sampled_from(TIMELINE_SCHEDULES))
    S = draw(st.integers(1, 10))
    M = draw(st.integers(1, 40))
    return name, M, draw(_costs(S)), draw(_options(name, S))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_timeline_invariants(scenario):
    name, M, cost_kwargs, options = scenario
    cfg, tr = build(cost_kwargs, name, M, options)
    check_trace(tr, cfg)
    _, again = build(cost_kwargs, name, M, options)
    for field in ("kind", "stage", "mb", "replica", "start", "end", "v_fwd", "v_bwd", "upd_op"):
        assert np.array_equal(getattr(tr, field), getattr(again, field)), field
    assert np.array_equal(tr.upd_first, again.upd_first)
    assert np.array_equal(tr.upd_version, again.upd_version)


# The same checker on fixed cases, so the rules are exercised without hypothesis too.
FIXED = [
    ("pd", 4, 11, {}),
    ("2bw", 3, 10, {"accumulate": 4}),
    ("paci", 5, 17, {"accumulate": 2, "recompute": True}),
    ("gpipe", 3, 10, {"accumulate": 4}),
    ("1f1b-flush", 4, 9, {"accumulate": 2}),
    ("localsgd", 3, 14, {"replicas": 2, "local_steps": 3}),
    ("localsgd", 4, 13, {}),
    ("naive", 3, 5, {}),
    ("pd", 5, 17, {"inflight": "input"}),
    ("localsgd", 4, 21, {"local_steps": 2, "inflight": "input"}),
    ("1f1b-flush", 4, 13, {"accumulate": 6, "inflight": "input"}),
    ("paci", 4, 11, {"accumulate": 3, "inflight": "input"}),
    ("2bw", 4, 17, {"accumulate": 5, "inflight": "input"}),
]


@pytest.mark.parametrize(("name", "S", "M", "options"), FIXED)
def test_fixed_case_unit_model(name, S, M, options):
    cfg, tr = build({"stages": S}, name, M, options)
    check_trace(tr, cfg)


@pytest.mark.parametrize(("name", "S", "M", "options"), FIXED)
def test_fixed_case_with_costs(name, S, M, options):
    kw = {"forward": 0.7, "backward": 1.9, "comm": 0.3, "update": 0.2, "allreduce": 1.1}
    cfg, tr = build({"stages": S, **kw, "jitter": 0.4, "seed": 5}, name, M, options)
    check_trace(tr, cfg)


def test_update_order_ties_by_stage_after_rounding():
    """Updates are ordered by end time, ties by stage, even when rounding is involved.

    In exact arithmetic U(2, mb 1) and U(0, mb 1) both run over [7.6, 8.4]; in floats the
    second starts at 7.6000000000000005, but both end at 8.4: stage 0 must come first.
    """
    tr = build_timeline("pd", CostModel.build(3, comm=0.4, update=0.8), 2)
    order = np.lexsort((tr.upd_stage, tr.upd_time))
    assert np.array_equal(order, np.arange(tr.n_updates))


def _streaming(S):
    """LocalSGD's other options: fragments of the model, quantized AVGs, overlapped rounds."""
    return st.builds(
        lambda h, f, q, o: (
            {"local_steps": h, "fragments": f}
            | ({"quantize": q} if q else {})
            | ({"overlap_steps": o} if o else {})
        ),
        st.integers(1, 4),
        st.integers(1, S),
        st.one_of(st.none(), st.integers(2, 16)),
        st.one_of(st.none(), st.integers(0, 1)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_no_operation_ends_after_the_run_bound(scenario, data):
    """`budget.run_bound` bounds every simulation of rules: validate trusts it for its
    budget check (`budget.updates_by`) instead of simulating the first update."""
    name, M, cost_kwargs, options = scenario
    if name == "localsgd" and data.draw(st.booleans()):
        options = options | data.draw(_streaming(cost_kwargs["stages"]))
    costs = CostModel.build(**cost_kwargs)
    trace = build_timeline(name, costs, M, **options)
    recompute = bool(options.get("recompute", False))
    assert trace.end.max() <= run_bound(costs, M, recompute)


@pytest.mark.parametrize("recompute", [False, True])
def test_the_run_bound_is_the_run_of_one_stage(recompute):
    """One stage runs its operations one after another: the bound is met, not passed."""
    costs = CostModel.build(1, forward=0.1, backward=0.7, update=0.3)
    options = {"accumulate": 1, "recompute": recompute}
    trace = build_timeline("paci", costs, 37, **options)
    longest = costs.longest_run(37, recompute)
    assert math.isclose(trace.end.max(), longest, rel_tol=1e-12)
    assert trace.end.max() <= run_bound(costs, 37, recompute)
