"""The options exact reproduction of the Randomized PipeDream simulator needs.

`sampling: sequential` and `batch`, `inflight: input`, and the per-block mean
delay, each against an independent fact: the natural partition written out,
a pigeonhole count, a time-stepped walk of the paper's 1F1B rule, closed
forms of the fill, and delays counted directly from the trace.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import unit
from training import delays_at

from pipebench.objectives.blocklinear import draw_rows
from pipebench.objectives.sketch import SAMPLING_CODES
from pipebench.timeline import build_timeline, stats_of
from pipebench.timeline.trace import BACKWARD, FORWARD, UPDATE


def batch_of(mode: str, n: int, b: int, draw: int, seed: int = 0) -> np.ndarray:
    out = np.empty(b, np.int64)
    draw_rows(SAMPLING_CODES[mode], seed, n, b, draw, out)
    return out


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize(("n", "b"), [(50, 1), (600, 5), (23, 4)])
def test_sequential_visits_the_natural_partition_in_order(n, b):
    partition = np.arange((n // b) * b).reshape(n // b, b)  # rows in stored order
    for m in range(3 * (n // b) + 2):
        assert np.array_equal(batch_of("sequential", n, b, m, seed=7), partition[m % (n // b)])


def test_batch_draws_whole_batches_uniformly_with_replacement():
    n, b = 60, 10
    nb = n // b
    picks = []
    for k in range(6000):
        rows = batch_of("batch", n, b, k, seed=3)
        first = rows[0]
        assert first % b == 0 and np.array_equal(rows, np.arange(first, first + b))
        picks.append(first // b)
    picks = np.array(picks)
    # with replacement: 7 consecutive draws from 6 batches must repeat one (pigeonhole)
    assert all(len(set(picks[i : i + nb + 1])) <= nb for i in range(0, 600, nb + 1))
    counts = np.bincount(picks, minlength=nb)
    expected = len(picks) / nb
    assert np.all(np.abs(counts - expected) < 5 * math.sqrt(expected))  # 5 sigma
    # the draw depends on the seed, not on a visiting order
    other = [batch_of("batch", n, b, k, seed=4)[0] // b for k in range(50)]
    assert other != picks[:50].tolist()


@pytest.mark.parametrize(("R", "nb"), [(4, 10), (16, 50), (3, 7), (6, 6)])
def test_localsgd_replica_sees_the_batches_congruent_to_it(R, nb):
    b = 2
    M = 2 * math.lcm(R, nb)
    tr = build_timeline("localsgd", unit(4), M, replicas=R, local_steps=2)
    first = (tr.kind == FORWARD) & (tr.stage == 0)
    g = math.gcd(R, nb)
    for r in range(R):
        mbs = tr.mb[first & (tr.replica == r)]
        seen = {int(batch_of("sequential", nb * b, b, int(m))[0]) // b for m in mbs}
        assert seen == {k for k in range(nb) if k % g == r % g}


# ---------------------------------------------------------------- inflight


def paper_1f1b(S: int, M: int) -> tuple[np.ndarray, np.ndarray]:
    """Start times (S, M) of F and B in a time-stepped walk of the paper's 1F1B rule.

    Unit steps; stage 0 forwards only while fewer than S micro-batches are
    between its forward and its backward; a later stage forwards whatever
    arrived. A stage backwards when it can unless, after its first backward,
    it last ran a backward and a forward is ready.
    """
    f = np.full((S, M), -1)
    b = np.full((S, M), -1)
    nf, nb = [0] * S, [0] * S
    last = [None] * S
    t = 0
    while nb[0] < M:
        chosen = []
        for s in range(S):
            m = nf[s]
            ready_f = m < M and ((s == 0 and nf[0] - nb[0] < S) or (s > 0 and 0 <= f[s - 1, m] < t))
            m = nb[s]
            ready_b = m < M and 0 <= f[s, m] < t and (s == S - 1 or 0 <= b[s + 1, m] < t)
            if ready_b and (last[s] != "B" or not ready_f):
                chosen.append((s, "B"))
            elif ready_f:
                chosen.append((s, "F"))
        for s, op in chosen:
            if op == "F":
                f[s, nf[s]] = t
                nf[s] += 1
            else:
                b[s, nb[s]] = t
                nb[s] += 1
            last[s] = op
        t += 1
    return f, b


def start_tables(tr) -> tuple[np.ndarray, np.ndarray]:
    return tr.start[tr.op_index(FORWARD)], tr.start[tr.op_index(BACKWARD)]


@pytest.mark.parametrize(("S", "M"), [(1, 3), (2, 5), (4, 4), (4, 13), (5, 30), (8, 40)])
def test_input_inflight_is_the_papers_walk(S, M):
    f, b = start_tables(build_timeline("pd", unit(S), M, inflight="input"))
    ref_f, ref_b = paper_1f1b(S, M)
    assert np.array_equal(f, ref_f) and np.array_equal(b, ref_b)


@pytest.mark.parametrize("S", [2, 3, 4, 6, 9])
def test_input_inflight_fill_and_steady_state(S):
    M = 4 * S
    per_stage = build_timeline("pd", unit(S), M)
    tr = build_timeline("pd", unit(S), M, inflight="input")
    f0, b0 = start_tables(per_stage)
    f1, b1 = start_tables(tr)
    # stage 0 holds S; stage s > 0 holds what arrives before its first backward at
    # 2S - 1 - s, having started forwarding at s: min(S, 2(S - s) - 1) micro-batches
    holds = [S] + [min(S, 2 * (S - s) - 1) for s in range(1, S)]
    assert stats_of(tr).peak_activations == holds
    assert stats_of(per_stage).peak_activations == list(range(S, 0, -1))
    # the same backward times, makespan 2(M + S - 1) and steady-state delay
    assert np.array_equal(b1, b0)
    assert tr.makespan == per_stage.makespan == 2 * (M + S - 1)
    assert stats_of(tr).steady_max_delay == math.floor(S * S - S / 2)
    # only fill forwards move, all earlier: (S - 1)(S - 2) / 2 of them
    assert np.all(f1 <= f0)
    assert np.count_nonzero(f1 < f0) == (S - 1) * (S - 2) // 2
    assert np.array_equal(f1[:, S:], f0[:, S:])


@pytest.mark.parametrize("name", ["pd", "1f1b-flush", "paci", "2bw", "localsgd"])
def test_per_stage_inflight_is_the_default_bit_for_bit(name):
    a = build_timeline(name, unit(5), 23)
    b = build_timeline(name, unit(5), 23, inflight="per-stage")
    for field in ("kind", "stage", "mb", "replica", "start", "end", "v_fwd", "v_bwd", "upd_op"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


# ---------------------------------------------------------------- mean_block_delay


def direct_block_delays(tr) -> np.ndarray:
    """(updates, S): k minus the block updates of the same replica finished when
    F(j, m) started, oldest over the update's micro-batches, counted op by op."""
    u_rows = tr.upd_op
    out = np.zeros((len(u_rows), tr.stages), dtype=np.int64)
    counter: dict[int, int] = {}
    for u, row in enumerate(u_rows):
        r = int(tr.replica[row])
        k = counter.get(r, 0)
        counter[r] = k + 1
        for j in range(tr.stages):
            oldest = None
            for m in range(int(tr.upd_first[u]), int(tr.mb[row]) + 1):
                f = np.flatnonzero((tr.kind == FORWARD) & (tr.stage == j) & (tr.mb == m))[0]
                done = sum(
                    1 for q in u_rows if tr.replica[q] == tr.replica[f] and tr.end[q] <= tr.start[f]
                )
                oldest = done if oldest is None else min(oldest, done)
            out[u, j] = k - oldest
    return out


@pytest.mark.parametrize(
    ("name", "S", "M", "options"),
    [
        ("pd", 4, 12, {}),
        ("pd", 5, 14, {"inflight": "input"}),
        ("paci", 3, 10, {"accumulate": 2}),
        ("1f1b-flush", 3, 9, {"accumulate": 3}),
        ("localsgd", 3, 12, {"local_steps": 2}),
    ],
)
def test_mean_block_delay_is_a_direct_count(name, S, M, options):
    tr = build_timeline(name, unit(S), M, **options)
    assert np.all(tr.kind[tr.upd_op] == UPDATE)
    direct = direct_block_delays(tr)
    st = stats_of(tr)
    assert st.mean_block_delay == pytest.approx(direct.mean(), rel=1e-12)
    np.testing.assert_allclose(st.stage_mean_delay, direct.mean(axis=0), rtol=1e-12)


def test_mean_block_delay_of_pd_is_about_half_s_squared():
    """The paper's "mean delay ~ S^2/2"; the maximum is floor(S^2 - S/2)."""
    for S in (4, 8, 16):
        st = stats_of(build_timeline("pd", unit(S), 40 * S))
        assert st.steady_max_delay == math.floor(S * S - S / 2)
        assert abs(st.mean_block_delay / (S * S / 2) - 1) < 0.1


def test_rpd_mean_block_delay_is_the_mean_of_its_draws():
    plan = build_timeline("rpd", unit(4), 30, delta=9)
    draws = np.array([delays_at(plan, k) for k in range(plan.iterations)])
    st = stats_of(plan)
    assert st.mean_block_delay == pytest.approx(draws.mean(), rel=1e-12)
    np.testing.assert_allclose(st.stage_mean_delay, draws.mean(axis=0), rtol=1e-12)


# ---------------------------------------------------------------- exactness


def paper_pd_walk(X, y, S, M, b, lr) -> np.ndarray:
    """The loss after every unit time step of PD in the paper's simulator, in plain NumPy:
    the 1F1B walk above, micro-batch m on rows of batch m mod (n // b) in stored order,
    a forward stashing its block, the backward stepping that block at once."""
    n, d = X.shape
    assert d % S == 0  # equal blocks: where the paper's split and pipebench's agree
    blocks = [slice(s * d // S, (s + 1) * d // S) for s in range(S)]
    f_at, b_at = paper_1f1b(S, M)
    steps = int(b_at[0, M - 1]) + 1
    w = np.zeros(d)
    stash, act, grad_out = {}, {}, {}
    losses = [0.5 * np.mean((X @ w - y) ** 2)]
    for t in range(steps):
        for s in range(S):
            fm = np.flatnonzero(f_at[s] == t)
            bm = np.flatnonzero(b_at[s] == t)
            rows = None
            if len(fm):
                m = int(fm[0])
                rows = slice((m % (n // b)) * b, (m % (n // b)) * b + b)
                stash[s, m] = w[blocks[s]].copy()
                z = (act[m] if s > 0 else np.zeros(b)) + X[rows, blocks[s]] @ stash[s, m]
                act[m] = z
                if s == S - 1:
                    grad_out[m] = (z - y[rows]) / b
            if len(bm):
                m = int(bm[0])
                rows = slice((m % (n // b)) * b, (m % (n // b)) * b + b)
                w[blocks[s]] -= lr * (X[rows, blocks[s]].T @ grad_out[m])
        losses.append(0.5 * np.mean((X @ w - y) ** 2))
    return np.array(losses)


@pytest.mark.parametrize(("S", "M", "b"), [(3, 11, 4), (4, 17, 5), (5, 9, 3)])
def test_pd_with_input_inflight_and_sequential_batches_is_the_papers_walk(S, M, b):
    from training import objective, train

    obj = objective(examples=40, dim=4 * S, batch_size=b, sampling="sequential")
    lr = 0.05
    makespan = 2 * (M + S - 1)
    curve, _, until = train(
        "pd", obj, S, lr=lr, budget=("microbatches", M), points=makespan, inflight="input"
    )
    assert until == makespan and np.array_equal(curve.times, np.arange(makespan + 1))
    want = paper_pd_walk(obj.X, obj.y, S, M, b, lr)
    assert len(want) == makespan + 1
    np.testing.assert_allclose(curve.loss, want, rtol=1e-9, atol=0)
    # and per-stage caps move the fill's forwards: the curves part (S > 2)
    other, _, _ = train("pd", obj, S, lr=lr, budget=("microbatches", M), points=makespan)
    assert not np.allclose(other.loss, want, rtol=1e-9, atol=0)


def test_rpd_sampling_option_overrides_the_objectives():
    from training import objective, train

    kw = {"lr": 0.05, "budget": ("microbatches", 12), "points": 20, "delta": 5}
    seq = objective(examples=40, dim=12, batch_size=4, sampling="sequential")
    drawn = objective(examples=40, dim=12, batch_size=4, sampling="batch")
    a, _, _ = train("rpd", seq, 3, sampling="batch", **kw)
    b, _, _ = train("rpd", drawn, 3, **kw)
    c, _, _ = train("rpd", seq, 3, **kw)
    assert np.array_equal(a.loss, b.loss) and not np.array_equal(a.loss, c.loss)
