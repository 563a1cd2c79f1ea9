"""The replay against independent references: plain SGD, minibatch SGD, 2BW's recursion,
PipeDream's mixed points, LocalSGD's rounds, rpd's delayed iterates."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PROGRAM_SCHEDULES, RULE_SCHEDULES
from hypothesis import given, settings
from hypothesis import strategies as st
from training import blocks, delays_at, numpy_gradient, objective, train

from pipebench.engine.iterates import keep_checkpoint, new_checkpoints, versions_read
from pipebench.engine.replay import _versions_needed, size_replay
from pipebench.report.torch_schedule import torch_csv_text
from pipebench.timeline import CostModel, build_timeline, setup_schedule
from pipebench.timeline.trace import BACKWARD, FORWARD

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def plain_sgd(obj, lr: float, steps: int, seed: int, grad=numpy_gradient) -> np.ndarray:
    w = np.zeros(obj.dim)
    for m in range(steps):
        w = w - lr * grad(obj, w, m, seed)
    return w


def minibatch_sgd(obj, lr: float, groups: int, size: int, seed: int, delay: int = 0) -> np.ndarray:
    """W(t+1) = W(t) - lr * mean of group t's gradients at W(max(t - delay, 0))."""
    iterates = [np.zeros(obj.dim)]
    for t in range(groups):
        point = iterates[max(t - delay, 0)]
        g = np.mean([numpy_gradient(obj, point, t * size + i, seed) for i in range(size)], axis=0)
        iterates.append(iterates[-1] - lr * g)
    return iterates[-1]


# 2bw keeps a one-step delay on one stage too
@pytest.mark.parametrize("name", [name for name in RULE_SCHEDULES if name != "2bw"])
@pytest.mark.parametrize("kind", ["quadratic", "logistic"])
def test_one_stage_is_plain_sgd(name, kind):
    obj = objective(kind, l2=0.01)
    curve, _, _ = train(name, obj, 1, lr=0.05, seed=4, budget=("microbatches", 30))
    np.testing.assert_allclose(curve.model, plain_sgd(obj, 0.05, 30, 4), **TIGHT)
    assert curve.block_updates == 30 and curve.diverged_at is None


@pytest.mark.parametrize("stages", [2, 3, 5])
def test_schedules_without_delay_are_plain_sgd(stages):
    obj = objective(stages=stages, l2=0.01)
    want = plain_sgd(obj, 0.03, 20, 1)
    for name, options in [
        ("naive", {}),
        ("localsgd", {"replicas": 1}),
        ("rpd", {"delays": "zero"}),
    ]:
        curve, _, _ = train(
            name, obj, stages, lr=0.03, seed=1, budget=("microbatches", 20), **options
        )
        if name != "rpd":
            np.testing.assert_allclose(curve.model, want, **TIGHT)
    # rpd with zero delays is randomized block-coordinate SGD: check against that
    curve, plan, _ = train(
        "rpd", obj, stages, lr=0.03, seed=1, delays="zero", budget=("microbatches", 20)
    )
    w = np.zeros(obj.dim)
    parts = blocks(obj, stages)
    for k in range(plan.iterations):
        block = parts[plan.block[k]]
        w[block] -= 0.03 * numpy_gradient(obj, w, k, 1)[block]
    np.testing.assert_allclose(curve.model, w, **TIGHT)


def test_noisy_gradients_reduce_to_noisy_sgd():
    obj = objective(stages=3, grad_noise=0.3)
    curve, _, _ = train("naive", obj, 3, lr=0.02, seed=2, budget=("microbatches", 15))
    want = plain_sgd(obj, 0.02, 15, 2, grad=lambda o, w, m, s: o.batch_gradient(w, m, s))
    np.testing.assert_allclose(curve.model, want, **TIGHT)
    assert not np.allclose(want, plain_sgd(obj, 0.02, 15, 2))  # the noise is really there


@pytest.mark.parametrize("name", ["gpipe", "1f1b-flush"])
@pytest.mark.parametrize("accumulate", [1, 4, 6])
def test_synchronous_schedules_are_minibatch_sgd(name, accumulate):
    obj = objective(stages=4)
    M = 6 * accumulate
    curve, _, _ = train(name, obj, 4, lr=0.04, accumulate=accumulate, budget=("microbatches", M))
    np.testing.assert_allclose(curve.model, minibatch_sgd(obj, 0.04, 6, accumulate, 0), **TIGHT)


def minibatch_iterates(obj, lr: float, groups: int, size: int, seed: int) -> list[np.ndarray]:
    """W(0), ..., W(groups) of minibatch SGD."""
    iterates = [np.zeros(obj.dim)]
    for t in range(groups):
        g = np.mean([numpy_gradient(obj, iterates[t], t * size + i, seed) for i in range(size)], 0)
        iterates.append(iterates[-1] - lr * g)
    return iterates


# Every synchronous program, with the chunks it cuts the objective into (p = 3 ranks).
PROGRAM_CASES = [
    ("zb-h1", {"weight_grad": 0.5}),
    ("zb-h2", {}),
    ("interleaved-1f1b", {"chunks": 2}),
    ("interleaved-1f1b", {"chunks": 3}),
    ("zbv", {"weight_grad": 0.8}),
    ("dualpipev", {"overlap": 3.0}),
]
RANKS3 = CostModel.build(3, forward=[1.0, 1.5, 0.8], backward=[2.0, 1.0, 1.6], comm=0.3)


def test_program_cases_are_every_program():
    assert {name for name, _ in PROGRAM_CASES} == set(PROGRAM_SCHEDULES)


@pytest.mark.parametrize(("name", "options"), PROGRAM_CASES)
@pytest.mark.parametrize("kind", ["quadratic", "logistic"])
def test_programs_are_minibatch_sgd_after_every_step(name, options, kind):
    """Cut after each block update in turn: every chunk holds the minibatch-SGD iterate of
    as many steps as it has taken (the replay follows I, W and F&B chunk by chunk)."""
    setup = setup_schedule(name, 3, options)
    C, m = setup.chunks, setup.unit
    obj = objective(kind, stages=C, l2=0.02, grad_noise=0.0)
    iterates = minibatch_iterates(obj, 0.05, 3, m, 2)
    parts = blocks(obj, C)
    for k in range(1, 3 * C + 1):
        curve, trace, until = train(name, obj, 3, lr=0.05, seed=2, costs=RANKS3,
                                    budget=("updates", k), **options)  # fmt: skip
        made = trace.upd_stage[trace.upd_time <= until]  # with the k-th, those ending with it
        steps = np.bincount(made, minlength=C)
        want = np.concatenate([iterates[steps[c]][parts[c]] for c in range(C)])
        np.testing.assert_allclose(curve.model, want, **TIGHT)
        assert curve.block_updates == len(made) >= k


def test_a_torch_csv_round_trip_trains_the_same_weights(tmp_path):
    obj = objective("logistic", stages=6, l2=0.01)
    one = build_timeline("zbv", RANKS3, 6)
    path = tmp_path / "zbv.csv"
    path.write_text(torch_csv_text(one))
    budget = ("microbatches", 18)
    direct, _, _ = train("zbv", obj, 3, lr=0.05, seed=1, costs=RANKS3, budget=budget)
    read, _, _ = train("torch-csv", obj, 3, lr=0.05, seed=1, costs=RANKS3, budget=budget,
                       path=str(path))  # fmt: skip
    assert np.array_equal(read.model, direct.model)
    np.testing.assert_allclose(read.model, minibatch_sgd(obj, 0.05, 3, 6, 1), **TIGHT)


@pytest.mark.parametrize("stages,accumulate", [(2, 2), (4, 4), (4, 6), (3, 7)])
def test_2bw_is_one_step_delayed_sgd(stages, accumulate):
    obj = objective(stages=stages, l2=0.02)
    M = 5 * accumulate
    curve, _, _ = train(
        "2bw", obj, stages, lr=0.05, accumulate=accumulate, budget=("microbatches", M)
    )
    want = minibatch_sgd(obj, 0.05, 5, accumulate, 0, delay=1)
    np.testing.assert_allclose(curve.model, want, **TIGHT)


def mixed_point_reference(trace, obj, lr: float, seed: int, until: float) -> list[list]:
    """Every version of every stage, by direct evaluation of each micro-batch's gradient at
    its mixed point (block j at the version F(j, m) read), applied in update order."""
    parts = blocks(obj, trace.stages)
    versions = [[np.zeros(p.stop - p.start)] for p in parts]
    fwd, bwd = trace.op_index(FORWARD), trace.op_index(BACKWARD)
    for u in range(trace.n_updates):
        if trace.upd_time[u] > until:
            break
        s = trace.upd_stage[u]
        grads = []
        for m in range(trace.upd_first[u], trace.upd_last[u] + 1):
            point = np.concatenate(
                [versions[j][trace.v_fwd[fwd[j, m]]] for j in range(trace.stages)]
            )
            g = numpy_gradient(obj, point, m, seed)[parts[s]]
            # the l2 term multiplies the weights the backward uses
            g += obj.l2 * (versions[s][trace.v_bwd[bwd[s, m]]] - point[parts[s]])
            grads.append(g)
        assert trace.upd_version[u] == len(versions[s])
        versions[s].append(versions[s][-1] - lr * np.mean(grads, axis=0))
    return versions


@pytest.mark.parametrize(
    "name,options",
    [("pd", {}), ("paci", {"accumulate": 3}), ("paci", {}), ("2bw", {"accumulate": 5})],
)
@pytest.mark.parametrize("kind", ["quadratic", "logistic"])
def test_replay_equals_mixed_point_evaluation(name, options, kind):
    obj = objective(kind, stages=4, l2=0.05)
    costs = CostModel.build(4, forward=[1, 1.5, 1, 2], backward=[2, 1, 1.2, 1], comm=0.3)
    curve, trace, until = train(
        name, obj, 4, lr=0.05, seed=6, costs=costs, budget=("microbatches", 30), **options
    )
    versions = mixed_point_reference(trace, obj, 0.05, 6, until)
    np.testing.assert_allclose(curve.model, np.concatenate([v[-1] for v in versions]), **TIGHT)


def test_loss_samples_see_only_finished_steps():
    """With a slow optimizer step, a sample taken mid-step reads the version before it."""
    obj = objective(stages=3)
    costs = CostModel.build(3, update=0.75)
    curve, trace, until = train(
        "pd", obj, 3, lr=0.05, costs=costs, budget=("time", 40.0), points=160
    )
    versions = mixed_point_reference(trace, obj, 0.05, 0, until)
    for t, loss, updates in zip(curve.times, curve.loss, curve.updates, strict=True):
        done = trace.upd_time <= t
        assert updates == done.sum()
        w = np.concatenate([versions[s][int((trace.upd_stage[done] == s).sum())] for s in range(3)])
        assert loss == pytest.approx(obj.value(w), rel=1e-11)


def test_localsgd_is_rounds_of_independent_sgd_then_average():
    obj = objective(stages=3, l2=0.01)
    R, H, rounds = 3, 2, 4
    curve, _, _ = train(
        "localsgd", obj, 3, lr=0.04, seed=5, replicas=R, local_steps=H,
        budget=("microbatches", R * H * rounds),
    )  # fmt: skip
    w = np.zeros(obj.dim)
    for k in range(rounds):
        replicas = []
        for r in range(R):
            v = w.copy()
            for h in range(H):
                v -= 0.04 * numpy_gradient(obj, v, k * R * H + r + R * h, 5)
            replicas.append(v)
        w = np.mean(replicas, axis=0)
    np.testing.assert_allclose(curve.model, w, **TIGHT)


@pytest.mark.parametrize("delays", ["uniform", "max", "pd"])
def test_rpd_reads_the_delayed_iterates(delays):
    obj = objective(stages=4, l2=0.01)
    curve, plan, _ = train(
        "rpd", obj, 4, lr=0.02, seed=7, delays=delays, budget=("microbatches", 12)
    )
    parts = blocks(obj, 4)
    iterates = [np.zeros(obj.dim)]
    for k in range(plan.iterations):
        d = delays_at(plan, k)
        point = np.concatenate([iterates[k - d[j]][parts[j]] for j in range(4)])
        w = iterates[-1].copy()
        s = parts[plan.block[k]]
        w[s] -= 0.02 * numpy_gradient(obj, point, k, 7)[s]
        iterates.append(w)
    np.testing.assert_allclose(curve.model, iterates[-1], **TIGHT)
    assert curve.block_updates == plan.iterations == 48


@pytest.mark.parametrize("delta", [0, 1, 31, 32, 45])
def test_rpd_far_past_the_delay_bound(delta):
    """Many more iterations than the bound: the iterates it reads are recycled many times."""
    obj = objective(stages=3)
    curve, plan, _ = train(
        "rpd", obj, 3, lr=0.01, seed=3, delta=delta, budget=("microbatches", 120)
    )
    assert plan.iterations == 360
    iterates = [np.zeros(obj.dim)]
    for k in range(plan.iterations):
        point = np.concatenate(
            [
                iterates[k - d][part]
                for d, part in zip(delays_at(plan, k), blocks(obj, 3), strict=True)
            ]
        )
        w = iterates[-1].copy()
        s = blocks(obj, 3)[plan.block[k]]
        w[s] -= 0.01 * numpy_gradient(obj, point, k, 3)[s]
        iterates.append(w)
    np.testing.assert_allclose(curve.model, iterates[-1], **TIGHT)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=50), st.integers(0, 60))
def test_rpd_keeps_the_most_versions_a_block_needs_at_once(drawn, window):
    """One more than the most updates of one block within `window` consecutive
    iterations, counted here window by window."""
    block = np.array(drawn, dtype=np.int32)
    most = 0
    for end in range(len(block) if window > 0 else 0):
        most = max(most, int(np.bincount(block[max(0, end - window + 1) : end + 1]).max()))
    assert _versions_needed(block, window) == most + 1


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 100), st.integers(0, 2**32 - 1))
def test_rpd_versions_read_are_the_updates_before_each_iterate(stages, depth, seed):
    """Checkpoints every 32 iterations in a power-of-two ring, each with its span's
    draw bits: every read is the count of the block's draws before its iterate,
    counted here from the draws themselves."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, stages, 250)
    checkpoints = new_checkpoints(depth, stages)
    rows = len(checkpoints)
    assert rows & (rows - 1) == 0 and rows >= (depth - 1) // 32 + 2
    version = np.zeros((1, stages), np.int64)
    read = np.zeros(stages, np.int64)
    for k in range(len(block)):
        keep_checkpoint(k, block[k], version, checkpoints)
        delays = rng.integers(0, min(depth - 1, k) + 1, stages)
        delays[0] = min(depth - 1, k)  # the oldest iterate it may read
        versions_read(k, delays, checkpoints, read)
        assert list(read) == [int(np.sum(block[: k - delays[j]] == j)) for j in range(stages)]
        version[0, block[k]] += 1


@pytest.mark.parametrize("delta", [0, 5, 40])
def test_rpd_ring_of_versions_is_a_power_of_two_big_enough(delta):
    obj = objective(stages=3)
    _, plan, until = train("rpd", obj, 3, lr=0.01, seed=3, delta=delta, budget=("microbatches", 60))
    sized = size_replay(plan, until)
    needed = _versions_needed(plan.block[: sized.length], sized.lookback - 1)
    assert sized.depth & (sized.depth - 1) == 0 and needed <= sized.depth < 2 * needed


def momentum_reference(obj, lr, mu, nesterov, steps, seed):
    w, v = np.zeros(obj.dim), np.zeros(obj.dim)
    for m in range(steps):
        g = numpy_gradient(obj, w, m, seed)
        v = mu * v + g
        w = w - lr * (g + mu * v if nesterov else v)
    return w


def adamw_reference(obj, lr, b1, b2, eps, decay, steps, seed):
    w, m1, m2 = np.zeros(obj.dim), np.zeros(obj.dim), np.zeros(obj.dim)
    for t in range(1, steps + 1):
        g = numpy_gradient(obj, w, t - 1, seed)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        step = (m1 / (1 - b1**t)) / (np.sqrt(m2 / (1 - b2**t)) + eps)
        w = w - lr * (step + decay * w)
    return w


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_its_definition(nesterov):
    obj = objective(stages=2)
    curve, _, _ = train(
        "naive", obj, 2, lr=0.01, optimizer="momentum",
        params={"momentum": 0.8, "nesterov": nesterov}, budget=("microbatches", 25),
    )  # fmt: skip
    np.testing.assert_allclose(
        curve.model, momentum_reference(obj, 0.01, 0.8, nesterov, 25, 0), **TIGHT
    )


def test_adamw_matches_its_definition():
    obj = objective("logistic", stages=2)
    params = {"beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.1}
    curve, _, _ = train(
        "naive", obj, 2, lr=0.01, optimizer="adamw", params=params, budget=("microbatches", 25)
    )
    want = adamw_reference(obj, 0.01, 0.8, 0.95, 1e-6, 0.1, 25, 0)
    np.testing.assert_allclose(curve.model, want, **TIGHT)


def test_curve_starts_at_the_initial_loss_and_ends_at_the_final_model():
    obj = objective(stages=4)
    curve, _, until = train("pd", obj, 4, lr=0.02, budget=("time", 50.0), points=25)
    assert curve.times[0] == 0 and curve.times[-1] == until == 50.0 and len(curve.times) == 26
    assert curve.loss[0] == pytest.approx(obj.value(np.zeros(obj.dim)), rel=1e-14)
    assert curve.loss[-1] == pytest.approx(obj.value(curve.model), rel=1e-12)
    assert np.all(np.diff(curve.updates) >= 0)


@pytest.mark.parametrize(
    "name", ["pd", "1f1b-flush", "2bw", "localsgd", "rpd", "zb-h2", "dualpipev"]
)
def test_a_time_budget_is_the_prefix_of_a_longer_run(name):
    obj = objective(stages=4)
    short, _, _ = train(name, obj, 4, lr=0.02, budget=("time", 60.0), points=12)
    long, _, _ = train(name, obj, 4, lr=0.02, budget=("time", 120.0), points=24)
    np.testing.assert_array_equal(short.loss, long.loss[:13])
    np.testing.assert_array_equal(short.updates, long.updates[:13])


def test_update_budget_stops_at_the_kth_block_update():
    obj = objective(stages=4)
    curve, trace, until = train("pd", obj, 4, budget=("updates", 37))
    assert until == trace.upd_time[36]
    assert curve.block_updates == int((trace.upd_time <= until).sum()) >= 37


def test_divergence_is_reported_with_its_time_not_raised():
    obj = objective(stages=2)
    curve, _, _ = train("pd", obj, 2, lr=50.0, budget=("time", 200.0), points=100)
    assert curve.diverged_at is not None and 0 < curve.diverged_at < 200
    assert curve.times[-1] == curve.diverged_at
    last = curve.loss[-1]
    assert not np.isfinite(last) or last > 1e6 * curve.loss[0]


def test_a_diverged_run_stops_at_its_diverged_sample():
    """Samples are taken two at a time (recorder.sample_pair), the first held until the
    second's time: a run that diverges at either still reports the micro-batches done and
    the block updates ended by that sample's time, counted here from the trace, and the
    model of that sample."""
    obj = objective(stages=2)
    parities = set()
    for points in range(30, 40):
        curve, trace, until = train("pd", obj, 2, lr=1.0, budget=("time", 200.0), points=points)
        assert curve.diverged_at is not None
        t, last = curve.diverged_at, len(curve.loss) - 1
        parities.add(last % 2)
        done = (trace.kind == BACKWARD) & (trace.stage == 0) & (trace.start <= t)
        assert curve.microbatches == int((done & (trace.end <= until)).sum())
        assert curve.block_updates == curve.updates[-1] == int((trace.upd_time <= t).sum())
        assert all(v <= 1e6 * curve.loss[0] for v in curve.loss[:-1])
        assert obj.value(curve.model) == pytest.approx(curve.loss[-1], rel=1e-9)  # its model
    assert parities == {0, 1}  # held samples and the samples taken with them


def test_runs_are_reproducible_and_seeds_differ():
    obj = objective(stages=3, grad_noise=0.1)
    a, _, _ = train("pd", obj, 3, seed=1)
    b, _, _ = train("pd", obj, 3, seed=1)
    c, _, _ = train("pd", obj, 3, seed=2)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.array_equal(a.loss, c.loss)
