"""Closed formulas of docs/schedules.md in the unit model, and the rpd iteration plan."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import BUILT_IN_SCHEDULES, fb_tables, unit
from training import delays_at

from pipebench.errors import InputError
from pipebench.timeline import CostModel, RpdPlan, Trace, build_timeline, stats_of
from pipebench.timeline.stats import update_delays, update_staleness
from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD

# ---------------------------------------------------------------- makespans


@pytest.mark.parametrize("name", ["pd", "2bw", "paci"])
@pytest.mark.parametrize(("S", "M"), [(1, 1), (1, 9), (2, 1), (2, 7), (3, 3), (4, 13), (6, 40)])
def test_no_flush_makespan_is_2_m_plus_s_minus_1(name, S, M):
    tr = build_timeline(name, unit(S), M)
    assert tr.makespan == 2 * (M + S - 1)
    st = stats_of(tr)
    assert st.makespan == tr.makespan
    assert st.bubble_fraction == pytest.approx((S - 1) / (M + S - 1))


@pytest.mark.parametrize("a", [1, 2, 3, 7])
def test_paci_makespan_does_not_depend_on_accumulation(a):
    S, M = 5, 23
    assert build_timeline("paci", unit(S), M, accumulate=a).makespan == 2 * (M + S - 1)


@pytest.mark.parametrize("name", ["gpipe", "1f1b-flush"])
@pytest.mark.parametrize(("S", "G", "n"), [(1, 1, 3), (2, 2, 3), (3, 1, 4), (4, 4, 2), (4, 7, 3)])
def test_flush_makespan_and_bubble(name, S, G, n):
    tr = build_timeline(name, unit(S), n * G, accumulate=G)
    st = stats_of(tr)
    assert tr.makespan == n * 2 * (G + S - 1)
    assert st.bubble_fraction == pytest.approx((S - 1) / (G + S - 1))


def test_flush_default_minibatch_is_stages():
    S = 3
    for name in ("gpipe", "1f1b-flush"):
        assert build_timeline(name, unit(S), 2 * S).makespan == 2 * 2 * (S + S - 1)


@pytest.mark.parametrize(("S", "G"), [(3, 3), (4, 6)])
def test_flush_activations(S, G):
    gpipe = stats_of(build_timeline("gpipe", unit(S), 2 * G, accumulate=G))
    assert gpipe.peak_activations == [G] * S
    flush = stats_of(build_timeline("1f1b-flush", unit(S), 2 * G, accumulate=G))
    assert flush.peak_activations == [S - s for s in range(S)]


@pytest.mark.parametrize(("S", "M"), [(1, 5), (2, 3), (4, 6), (7, 2)])
def test_naive_makespan(S, M):
    tr = build_timeline("naive", unit(S), M)
    st = stats_of(tr)
    assert tr.makespan == 2 * S * M
    assert st.peak_activations == [1] * S
    assert st.bubble_fraction == pytest.approx((S - 1) / S)
    F, B = fb_tables(tr)
    # one micro-batch in the pipeline at a time: F(0, m+1) only after B(0, m)
    assert np.all(tr.start[F[0, 1:]] >= tr.end[B[0, :-1]])
    assert np.array_equal(tr.v_fwd[F], np.broadcast_to(np.arange(M), (S, M)))


@pytest.mark.parametrize("name", BUILT_IN_SCHEDULES)
def test_one_stage_runs(name):
    M = 6
    out = build_timeline(name, unit(1), M)
    if name == "rpd":
        assert isinstance(out, RpdPlan)
        assert out.iterations == M and np.all(out.block == 0)
        return
    assert isinstance(out, Trace)
    assert out.makespan == 2 * M  # S = 1: no bubble at all, whatever the schedule
    st = stats_of(out)
    assert st.bubble_fraction == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- pd


@pytest.mark.parametrize("S", range(2, 33))
def test_pd_steady_state(S):
    M = 3 * S
    tr = build_timeline("pd", unit(S), M)
    st = stats_of(tr)
    assert st.steady_max_delay == math.floor(S * S - S / 2)
    assert st.max_delay >= st.steady_max_delay
    assert st.stage_max_staleness == [S - 1 - s for s in range(S)]
    assert st.peak_versions == [S - s for s in range(S)]
    assert st.peak_activations == [S - s for s in range(S)]
    assert st.stage_max_drift == [0] * S
    assert st.updates == S * M
    b = tr.rows(BACKWARD)
    assert np.array_equal(tr.v_bwd[b], tr.v_fwd[b])  # weight stashing


def test_pd_steady_delay_none_without_steady_state():
    S = 4
    assert stats_of(build_timeline("pd", unit(S), 2 * S)).steady_max_delay is None
    assert stats_of(build_timeline("pd", unit(S), 2 * S)).steady_mean_delay is None


def test_pd_delays_match_definition_unit():
    """Delay of update k from B(s, m): k minus the updates finished when F(j, m) started, max j."""
    S, M = 4, 17
    tr = build_timeline("pd", unit(S), M)
    F = tr.op_index(FORWARD)
    ends = np.sort(tr.upd_time)
    expected = [
        max(k - np.searchsorted(ends, tr.start[F[j, m]], side="right") for j in range(S))
        for k, m in enumerate(tr.upd_last)
    ]
    assert np.array_equal(update_delays(tr), expected)


# ---------------------------------------------------------------- 2bw


@pytest.mark.parametrize(("S", "a"), [(1, 1), (2, 2), (3, 5), (4, 4), (5, 9)])
def test_2bw_one_update_of_delay(S, a):
    M = 6 * a + 1
    tr = build_timeline("2bw", unit(S), M, accumulate=a)
    stale = update_staleness(tr)
    group = tr.upd_first // a
    assert np.all(stale[group >= 2] == 1)
    assert stale.max() <= 1
    st = stats_of(tr)
    assert max(st.peak_versions) <= 2
    assert st.stage_max_staleness == [1] * S
    F, B = fb_tables(tr)
    want = np.broadcast_to(np.maximum(np.arange(M) // a - 1, 0), (S, M))
    assert np.array_equal(tr.v_fwd[F], want)
    assert np.array_equal(tr.v_fwd[B], want)
    assert np.array_equal(tr.v_bwd[B], want)
    assert tr.makespan == 2 * (M + S - 1)
    assert np.array_equal(np.bincount(tr.upd_stage, minlength=S), [math.ceil(M / a)] * S)


def test_2bw_default_accumulate_is_stages():
    S = 4
    tr = build_timeline("2bw", unit(S), 3 * S)
    F = tr.op_index(FORWARD)
    assert np.array_equal(tr.v_fwd[F[0]], np.maximum(np.arange(3 * S) // S - 1, 0))


@pytest.mark.parametrize(("S", "a"), [(2, 1), (4, 3), (6, 1)])
def test_2bw_refuses_small_groups(S, a):
    with pytest.raises(InputError) as err:
        build_timeline("2bw", unit(S), 10, accumulate=a)
    assert err.value.field == "accumulate"


# ---------------------------------------------------------------- paci


@pytest.mark.parametrize(
    ("S", "a"), [(2, 1), (4, 1), (4, 2), (4, 3), (4, 9), (6, 2), (6, 5), (7, 3), (8, 1), (8, 20)]
)
def test_paci_drift_bound_is_reached(S, a):
    M = 4 * (a + S) + 2 * S
    tr = build_timeline("paci", unit(S), M, accumulate=a)
    st = stats_of(tr)
    assert st.stage_max_drift == [math.ceil((S - s - 1) / a) for s in range(S)]
    b = tr.rows(BACKWARD)
    assert np.all(tr.v_bwd[b] >= tr.v_fwd[b])
    assert st.peak_activations == [S - s for s in range(S)]


def test_paci_recompute_lengthens_backward():
    S, M = 3, 8
    plain = build_timeline("paci", unit(S), M)
    again = build_timeline("paci", unit(S), M, recompute=True)
    B = again.op_index(BACKWARD)
    assert np.all(again.end[B] - again.start[B] == 2.0)
    assert again.makespan > plain.makespan


# ---------------------------------------------------------------- localsgd


@pytest.mark.parametrize(("S", "H", "c"), [(1, 2, 0.0), (2, 1, 0.0), (3, 2, 1.5), (4, 3, 2.0)])
def test_localsgd_round_time(S, H, c):
    R = S
    rounds = 3
    costs = CostModel.build(S, allreduce=c)
    tr = build_timeline("localsgd", costs, rounds * R * H, replicas=R, local_steps=H)
    avg = tr.rows(AVERAGE)
    assert len(avg) == rounds
    period = 2 * R * H + 2 * (S - 1) + c
    assert np.allclose(tr.end[avg], period * np.arange(1, rounds + 1), rtol=0, atol=1e-12)
    assert np.allclose(tr.end[avg] - tr.start[avg], c)
    assert tr.makespan == pytest.approx(rounds * period)


@pytest.mark.parametrize(("S", "R", "H", "M"), [(3, 3, 1, 10), (2, 4, 2, 19), (4, 1, 3, 9)])
def test_localsgd_no_staleness(S, R, H, M):
    tr = build_timeline("localsgd", unit(S), M, replicas=R, local_steps=H)
    assert np.all(update_staleness(tr) == 0)
    st = stats_of(tr)
    assert st.stage_max_staleness == [0] * S
    assert st.stage_max_drift == [0] * S
    F, B = fb_tables(tr)
    want = np.broadcast_to(np.arange(M) // R, (S, M))  # replica m % R's (m // R)-th step
    assert np.array_equal(tr.v_fwd[F], want) and np.array_equal(tr.v_bwd[B], want)
    assert np.array_equal(tr.replica[F], np.broadcast_to(np.arange(M) % R, (S, M)))
    assert len(tr.rows(AVERAGE)) == math.ceil(M / (R * H))


# ---------------------------------------------------------------- rpd


def _pd_and_plan(S, M, **kw):
    costs = CostModel.build(S, forward=1.0, backward=2.0, comm=0.25, jitter=0.3, seed=7)
    return build_timeline("pd", costs, M), build_timeline("rpd", costs, M, **kw)


def test_rpd_clock_is_pd():
    S, M = 4, 15
    pd, plan = _pd_and_plan(S, M)
    assert isinstance(plan, RpdPlan)
    assert plan.iterations == S * M
    assert np.array_equal(plan.time, pd.upd_time)
    assert np.array_equal(plan.pd.start, pd.start) and np.array_equal(plan.pd.end, pd.end)
    assert plan.delta == math.floor(S * S - S / 2)
    st = stats_of(plan)
    assert st.updates == S * M and st.peak_activations is None
    assert st.makespan == pd.makespan


@pytest.mark.parametrize("delta", ["auto", 0, 3, 100])
def test_rpd_uniform_delays(delta):
    S, M = 4, 20
    plan = build_timeline("rpd", unit(S), M, delta=delta)
    bound = math.floor(S * S - S / 2) if delta == "auto" else delta
    assert plan.delta == bound
    seen_max = 0
    for k in range(plan.iterations):
        d = delays_at(plan, k)
        assert d.shape == (S,)
        assert np.all((d >= 0) & (d <= min(bound, k))), (k, d)
        seen_max = max(seen_max, int(d.max()))
    if 0 < bound < plan.iterations:
        assert seen_max == bound  # the draw covers the whole range, not just 0
        late = np.concatenate([delays_at(plan, k) for k in range(bound, plan.iterations)])
        assert np.unique(late).size == bound + 1


def test_rpd_max_and_zero_delays():
    S, M = 3, 12
    for delta in (2, "auto"):
        mx = build_timeline("rpd", unit(S), M, delta=delta, delays="max")
        bound = mx.delta
        for k in range(mx.iterations):
            assert np.all(delays_at(mx, k) == min(bound, k))
    zero = build_timeline("rpd", unit(S), M, delays="zero")
    for k in range(zero.iterations):
        assert np.all(delays_at(zero, k) == 0)


def test_rpd_pd_delays_match_pd_trace():
    S, M = 4, 16
    pd, plan = _pd_and_plan(S, M, delays="pd")
    want = update_delays(pd)
    got = [int(delays_at(plan, k).max()) for k in range(plan.iterations)]
    assert np.array_equal(got, want)
    assert all(np.all(delays_at(plan, k) >= 0) for k in range(plan.iterations))


def test_rpd_blocks_uniform_and_seeded():
    S, M = 4, 1000
    a = build_timeline("rpd", CostModel.build(S, seed=3), M)
    counts = np.bincount(a.block, minlength=S)
    assert len(counts) == S and counts.sum() == S * M
    expected = M  # (S * M) / S
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 25.0, counts  # df = 3: p ~ 3e-5
    b = build_timeline("rpd", CostModel.build(S, seed=3), M)
    assert np.array_equal(a.block, b.block) and np.array_equal(a.time, b.time)
    assert all(np.array_equal(delays_at(a, k), delays_at(b, k)) for k in range(0, S * M, 97))
    c = build_timeline("rpd", CostModel.build(S, seed=4), M)
    assert not np.array_equal(a.block, c.block)
    assert np.mean(a.block == c.block) < 0.5


def test_rpd_stats_follow_the_delays():
    S, M = 4, 16
    pd = build_timeline("pd", unit(S), M)
    from_pd = stats_of(build_timeline("rpd", unit(S), M, delays="pd"))
    assert from_pd.max_delay == update_delays(pd).max()
    assert from_pd.steady_max_delay == math.floor(S * S - S / 2) == stats_of(pd).steady_max_delay
    assert from_pd.bubble_fraction == pytest.approx(stats_of(pd).bubble_fraction)
    assert from_pd.stage_max_drift == [0] * S
    delta = 5
    mx = stats_of(build_timeline("rpd", unit(S), M, delta=delta, delays="max"))
    K = S * M
    assert mx.max_delay == delta
    assert mx.mean_delay == pytest.approx(sum(min(delta, k) for k in range(K)) / K)
    assert mx.peak_versions == [delta + 1] * S  # the history must hold delta + 1 iterates
    zero = stats_of(build_timeline("rpd", unit(S), M, delays="zero"))
    assert zero.max_delay == 0 and zero.mean_delay == 0.0


# ---------------------------------------------------------------- compilation


def _compiled_for(kernel) -> set[tuple]:
    """The argument types numba compiled `kernel` for: in this process, and in any process
    sharing its cache (numba's index of it). A caller loaded from the cache types none of
    its callees here, so the process's own list is empty when another test or test worker
    compiled the caller first."""
    index = kernel._cache._cache_file._load_index()  # numba's own record; no public API
    return set(kernel.signatures) | {tuple(key[0]) for key in index}


def test_timeline_kernels_pass_uniform01_no_int_literal():
    """numba compiles a called kernel once per literal argument: the jitter's kinds and
    rpd's stream numbers are int64 scalars, so `uniform01` is compiled once for the
    timeline, not once per kind and stream (a first run's compile time)."""
    from numba import types
    from numba.core import config

    from pipebench.hashrng import uniform01
    from pipebench.timeline.simulate import jitter_factor

    if config.DISABLE_JIT:
        pytest.skip("nothing is compiled with NUMBA_DISABLE_JIT=1")
    from pipebench.timeline.interpret import INTERPRET_UP_TO

    costs = CostModel.build(3, jitter=0.1)
    # runs too large to interpret (timeline/interpret.py): the compiled kernels run
    stats_of(build_timeline("pd", costs, INTERPRET_UP_TO))
    stats_of(build_timeline("rpd", costs, INTERPRET_UP_TO))
    assert _compiled_for(jitter_factor)
    for sig in _compiled_for(jitter_factor):
        assert not any(isinstance(t, types.Literal) for t in sig), sig
    for sig in _compiled_for(uniform01):  # rpd's streams are 11 and 12 (the replay's others)
        assert not (isinstance(sig[1], types.Literal) and sig[1].literal_value in (11, 12)), sig
