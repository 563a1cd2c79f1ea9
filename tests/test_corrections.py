"""Staleness corrections (weight prediction, DC-ASGD): reductions to the uncorrected replay,
closed forms, and plain-NumPy walks of each definition along small pd and 2bw traces."""

from __future__ import annotations

import numpy as np
import pytest
from test_layered import mlp
from training import blocks, delays_at, numpy_gradient, objective, train

from pipebench.engine.staleness import read_delays
from pipebench.objectives.blocklinear import draw_rows
from pipebench.objectives.layered import stage_backward, stage_forward
from pipebench.optim import hyper_array
from pipebench.optim.corrections import compensate, predicted
from pipebench.timeline import CostModel
from pipebench.timeline.trace import BACKWARD, FORWARD, UPDATE

TIGHT = {"rtol": 1e-12, "atol": 1e-12}
COSTS = CostModel.build(4, forward=[1, 1.5, 1, 2], backward=[2, 1, 1.2, 1], comm=0.3)
ADAPTIVE = {"delay_compensation": 0.02, "delay_compensation_adaptive": True}
ON = [
    {"predict": True},
    {"delay_compensation": 0.7},
    {"predict": True, "delay_compensation": 0.3},
    ADAPTIVE,
]


def dc_term(g, ms, lam, adaptive):
    """DC-ASGD's λ·g⊙g, λ divided by √(ms + 1e-7) after ms (updated in place) takes in
    0.05·g⊙g under DC-ASGD-a (Zheng et al. 2017, m = 0.95)."""
    if not adaptive:
        return lam * g * g
    ms *= 0.95
    ms += 0.05 * g * g
    return lam / np.sqrt(ms + 1e-7) * g * g


def run(name, params, optimizer="sgd", kind="quadratic", stages=4, **options):
    obj = mlp(stages) if kind == "mlp" else objective(kind, stages=stages, l2=0.05)
    costs = COSTS if stages == 4 else CostModel.build(stages)
    return train(name, obj, stages, lr=0.05, seed=6, costs=costs, optimizer=optimizer,
                 params=params, budget=("microbatches", 30), **options)  # fmt: skip


SYNC = [(n, "quadratic", p) for n in ("gpipe", "1f1b-flush", "naive") for p in ON] + [
    (n, "mlp", ON[2]) for n in ("gpipe", "1f1b-flush", "naive")
]


@pytest.mark.parametrize("name,kind,params", SYNC)
def test_synchronous_schedules_are_unchanged_bit_for_bit(name, kind, params):
    """No staleness (tau = 0, w_now = w_read): the corrections change nothing."""
    base, _, _ = run(name, {}, "momentum", kind)
    corrected, _, _ = run(name, params, "momentum", kind)
    assert np.array_equal(base.model, corrected.model)
    assert np.array_equal(base.loss, corrected.loss)


def test_delay_compensation_is_neutral_where_the_backward_reads_the_current_weights():
    base, _, _ = run("paci", {}, "momentum")
    corrected, _, _ = run("paci", {"delay_compensation": 0.7}, "momentum")
    assert np.array_equal(base.model, corrected.model)


@pytest.mark.parametrize("params", ON)
def test_one_stage_pd_is_unchanged_bit_for_bit(params):
    base, _, _ = run("pd", {}, "adamw", stages=1)
    corrected, _, _ = run("pd", params, "adamw", stages=1)
    assert np.array_equal(base.model, corrected.model)


@pytest.mark.parametrize("params", ON)
def test_rpd_without_delays_is_unchanged_bit_for_bit(params):
    base, _, _ = run("rpd", {}, "momentum", delays="zero")
    corrected, _, _ = run("rpd", params, "momentum", delays="zero")
    assert np.array_equal(base.model, corrected.model)


@pytest.mark.parametrize("params", ON)
@pytest.mark.parametrize("name", ["pd", "rpd"])
def test_corrections_act_on_stale_schedules(params, name):
    base, _, _ = run(name, {}, "momentum")
    corrected, _, _ = run(name, params, "momentum")
    assert not np.array_equal(base.model, corrected.model)


def test_prediction_with_the_exact_delay_recovers_the_synchronous_iterates():
    """Constant gradient c, SGD: w_k = w_0 - k lr c, the last update is lr c, and
    w_k - tau (lr c) is w_{k+tau} exactly (dyadic numbers: no rounding)."""
    lr, c = 0.25, np.array([1.0, -2.0, 0.5, 3.0])
    iterates = [np.array([4.0, 1.0, -1.0, 0.0])]
    for _ in range(12):
        iterates.append(iterates[-1] - lr * c)
    out = np.zeros(4)
    for k in range(1, 8):
        update = iterates[k - 1] - iterates[k]
        for tau in range(0, 5):
            got = predicted(iterates[k], tau, update, 0, 4, out)
            assert np.array_equal(got, iterates[k + tau])


def test_delay_compensation_matches_its_formula():
    rng = np.random.default_rng(0)
    before, g, w_now, w_read = rng.normal(size=(4, 9))
    for adaptive in (False, True):
        acc = before + g
        ms = np.full(9, 0.25)
        hyper = hyper_array(
            0.1, {"delay_compensation": 0.3, "delay_compensation_adaptive": adaptive}
        )
        compensate(acc, before, w_now, w_read, hyper, ms, 2, 7)
        want, lam = before + g, np.full(5, 0.3)
        if adaptive:  # DC-ASGD-a: lambda / sqrt(MS + eps), MS <- 0.95 MS + 0.05 g^2
            lam = 0.3 / np.sqrt(0.95 * 0.25 + 0.05 * g[2:7] ** 2 + 1e-7)
            np.testing.assert_allclose(ms[2:7], 0.95 * 0.25 + 0.05 * g[2:7] ** 2, rtol=1e-15)
        want[2:7] += lam * g[2:7] * g[2:7] * (w_now[2:7] - w_read[2:7])
        np.testing.assert_allclose(acc, want, rtol=1e-13, atol=0)  # g is acc - before


@pytest.mark.parametrize("name,options", [("pd", {}), ("2bw", {}), ("2bw", {"accumulate": 6})])
def test_delays_are_the_versions_between_read_and_apply(name, options):
    """tau of F(s, m) = (version the step applying m starts from) - vF, from the update table."""
    _, trace, _ = run(name, {}, **options)
    tau = read_delays(trace, trace.n_ops)
    start = {}
    for u in range(trace.n_updates):
        for m in range(trace.upd_first[u], trace.upd_last[u] + 1):
            start[trace.upd_stage[u], m] = trace.upd_version[u] - 1
    for i in np.flatnonzero(trace.kind == FORWARD):
        key = (trace.stage[i], trace.mb[i])
        if key in start:
            assert tau[i] == start[key] - trace.v_fwd[i]
    backward = trace.kind == BACKWARD
    assert np.all(tau[backward] <= 0)  # weight stashing: the backward reuses the prediction
    assert np.all(tau[trace.kind == UPDATE] == 0)
    assert tau[trace.kind == FORWARD].max() > 0


def reference_walk(trace, obj, lr, seed, until, predict, lam, mu=0.0, adaptive=False):
    """The rows in causal order in NumPy: F and B read their block extrapolated by the
    micro-batch's staleness along the stage's last update (B reuses F's when vB = vF),
    the gradient gets DC-ASGD's term from the backward's weights, U steps (heavy-ball
    momentum mu) the mean."""
    S = trace.stages
    parts = blocks(obj, S)
    versions = [[np.zeros(p.stop - p.start)] for p in parts]
    last = [np.zeros(p.stop - p.start) for p in parts]
    velocity = [np.zeros(p.stop - p.start) for p in parts]
    ms = [np.zeros(p.stop - p.start) for p in parts]
    applied = {}
    for u in range(trace.n_updates):
        for m in range(trace.upd_first[u], trace.upd_last[u] + 1):
            applied[trace.upd_stage[u], m] = trace.upd_version[u] - 1

    def reads(s, m, v):
        tau = applied[s, m] - v if predict else 0
        return versions[s][v] - tau * last[s]

    read, pending = {}, [[] for _ in range(S)]
    for i in range(trace.n_ops):
        if trace.end[i] > until:
            continue
        k, s, m = trace.kind[i], trace.stage[i], trace.mb[i]
        if k == FORWARD:
            read[s, m] = reads(s, m, trace.v_fwd[i])
        elif k == BACKWARD:
            stash = trace.v_bwd[i] == trace.v_fwd[i]
            w = read[s, m] if stash else reads(s, m, trace.v_bwd[i])
            point = np.concatenate([read[j, m] for j in range(S)])
            g = numpy_gradient(obj, point, m, seed)[parts[s]] + obj.l2 * (w - read[s, m])
            pending[s].append(g + dc_term(g, ms[s], lam, adaptive) * (versions[s][-1] - w))
        elif k == UPDATE:
            velocity[s] = mu * velocity[s] + np.mean(pending[s], axis=0)
            pending[s] = []
            versions[s].append(versions[s][-1] - lr * velocity[s])
            last[s] = versions[s][-2] - versions[s][-1]
    return np.concatenate([v[-1] for v in versions])


WALKS = [("pd", {}), ("2bw", {}), ("2bw", {"accumulate": 6}), ("paci", {"accumulate": 2})]


@pytest.mark.parametrize("name,options", WALKS)
@pytest.mark.parametrize("params", ON)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_replay_equals_the_numpy_walk_of_each_definition(name, options, params, optimizer):
    obj = objective("quadratic", stages=4, l2=0.05)
    hyper = {"nesterov": False, "momentum": 0.8} if optimizer == "momentum" else {}
    curve, trace, until = train(
        name, obj, 4, lr=0.05, seed=6, costs=COSTS, optimizer=optimizer, params=params | hyper,
        budget=("microbatches", 30), **options,
    )  # fmt: skip
    want = reference_walk(
        trace, obj, 0.05, 6, until, params.get("predict", False),
        params.get("delay_compensation", 0.0), hyper.get("momentum", 0.0),
        params.get("delay_compensation_adaptive", False),
    )  # fmt: skip
    assert curve.diverged_at is None
    np.testing.assert_allclose(curve.model, want, **TIGHT)


def layered_walk(trace, obj, lr, seed, predict, lam, adaptive=False):
    """reference_walk for a layered objective (SGD): activations flow through the
    predicted blocks; the backward multiplies by the same ones."""
    S, off, b = trace.stages, obj.off, obj.batch_size
    data = (obj.data_f, obj.data_t, obj.data_i)
    versions = [[obj.init[off[s] : off[s + 1]].copy()] for s in range(S)]
    last = [np.zeros(off[s + 1] - off[s]) for s in range(S)]
    ms = [np.zeros(off[s + 1] - off[s]) for s in range(S)]
    applied = {}
    for u in range(trace.n_updates):
        for m in range(trace.upd_first[u], trace.upd_last[u] + 1):
            applied[trace.upd_stage[u], m] = trace.upd_version[u] - 1
    read, acts, saved, grads, rows, pending = {}, {}, {}, {}, {}, [[] for _ in range(S)]
    zero = np.zeros(obj.act_size)
    for i in range(trace.n_ops):
        k, s, m = trace.kind[i], trace.stage[i], trace.mb[i]
        if k == FORWARD:
            if s == 0:
                rows[m] = np.zeros(b, np.int64)
                draw_rows(obj.sampling, seed, obj.examples, b, m, rows[m])
            tau = applied[s, m] - trace.v_fwd[i] if predict else 0
            read[s, m] = versions[s][trace.v_fwd[i]] - tau * last[s]
            saved[s, m] = np.zeros(obj.saved_size[s])
            acts[s + 1, m] = np.zeros(obj.act_size)
            stage_forward(*obj.archs, s, read[s, m], *data, rows[m], acts.get((s, m), zero),
                          saved[s, m], acts[s + 1, m])  # fmt: skip
        elif k == BACKWARD:
            g = np.zeros(off[s + 1] - off[s])
            grads[s, m] = np.zeros(obj.act_size)
            stage_backward(*obj.archs, s, read[s, m], *data, rows[m], saved[s, m],
                           grads.get((s + 1, m), zero), grads[s, m], g)  # fmt: skip
            pending[s].append(g + dc_term(g, ms[s], lam, adaptive) * (versions[s][-1] - read[s, m]))
        elif k == UPDATE:
            versions[s].append(versions[s][-1] - lr * np.mean(pending[s], axis=0))
            pending[s] = []
            last[s] = versions[s][-2] - versions[s][-1]
    return np.concatenate([v[-1] for v in versions])


@pytest.mark.parametrize("name,options", [("pd", {}), ("2bw", {"accumulate": 6})])
@pytest.mark.parametrize("params", ON)
def test_layered_replay_equals_the_numpy_walk(name, options, params):
    obj = mlp(4)
    curve, trace, until = train(name, obj, 4, lr=0.05, seed=6, costs=COSTS, params=params,
                                budget=("microbatches", 24), **options)  # fmt: skip
    assert until == trace.makespan and curve.diverged_at is None
    want = layered_walk(trace, obj, 0.05, 6, params.get("predict", False),
                        params.get("delay_compensation", 0.0),
                        params.get("delay_compensation_adaptive", False))  # fmt: skip
    np.testing.assert_allclose(curve.model, want, **TIGHT)


def test_pipemare_factor_is_its_formula():
    from pipebench.optim.corrections import pipemare_factor

    for tau in (0.0, 1.0, 2.5, 7.0):
        for step in (1, 5, 10, 40):
            want = 1.0 if tau <= 1 else tau ** -(1 - min(step / 10, 1))
            assert pipemare_factor(tau, step, 10.0) == pytest.approx(want, rel=1e-15)
    assert pipemare_factor(7.0, 1, 10.0) == pytest.approx(7.0**-0.9)


def test_pipemare_lr_scales_each_stage_by_its_mean_delay():
    """SGD on pd: step k of stage s is w -= lr * tau_s^-(1 - min(k/K, 1)) * g, tau_s the
    mean staleness of the stage's forwards; the NumPy walk with that lr per step."""
    obj = objective("quadratic", stages=4, l2=0.05)
    params = {"delay_lr": 1, "delay_lr_warmup": 6}
    curve, trace, until = train("pd", obj, 4, lr=0.05, seed=6, costs=COSTS, params=params,
                                budget=("microbatches", 30))  # fmt: skip
    tau = read_delays(trace, trace.n_ops)
    forward = trace.kind == FORWARD
    mean = [tau[forward & (trace.stage == s)].mean() for s in range(4)]
    assert max(mean) > 1  # the test exercises the rescaling
    S, parts = 4, blocks(obj, 4)
    versions = [[np.zeros(p.stop - p.start)] for p in parts]
    read, pending = {}, [[] for _ in range(S)]
    for i in range(trace.n_ops):
        if trace.end[i] > until:
            continue
        k, s, m = trace.kind[i], trace.stage[i], trace.mb[i]
        if k == FORWARD:
            read[s, m] = versions[s][trace.v_fwd[i]]
        elif k == BACKWARD:
            point = np.concatenate([read[j, m] for j in range(S)])
            pending[s].append(numpy_gradient(obj, point, m, 6)[parts[s]])
        elif k == UPDATE:
            step = len(versions[s])
            factor = 1.0 if mean[s] <= 1 else mean[s] ** -(1 - min(step / 6, 1))
            versions[s].append(versions[s][-1] - factor * 0.05 * np.mean(pending[s], axis=0))
            pending[s] = []
    np.testing.assert_allclose(curve.model, np.concatenate([v[-1] for v in versions]), **TIGHT)


def test_pipemare_lr_is_neutral_without_delay():
    base, _, _ = run("gpipe", {}, "adamw")
    scaled, _, _ = run("gpipe", {"delay_lr": 1}, "adamw")
    assert np.array_equal(base.model, scaled.model)


@pytest.mark.parametrize("params", ON)
@pytest.mark.parametrize("delays", ["uniform", "pd"])
def test_rpd_equals_the_numpy_walk(params, delays):
    """rpd: block j of the point is extrapolated by its lag (its updates since the
    iterate read) along its last update; the gradient of block s gets DC-ASGD's term."""
    predict, lam = params.get("predict", False), params.get("delay_compensation", 0.0)
    adaptive = params.get("delay_compensation_adaptive", False)
    obj = objective(stages=4, l2=0.01)
    curve, plan, _ = train("rpd", obj, 4, lr=0.02, seed=7, delays=delays, params=params,
                           budget=("microbatches", 12))  # fmt: skip
    parts = blocks(obj, 4)
    iterates = [np.zeros(obj.dim)]
    last = np.zeros(obj.dim)
    ms = np.zeros(obj.dim)
    for k in range(plan.iterations):
        d = delays_at(plan, k)
        point = np.concatenate([iterates[k - d[j]][parts[j]] for j in range(4)])
        if predict:
            for j in range(4):
                lag = int(np.sum(plan.block[k - d[j] : k] == j))
                point[parts[j]] -= lag * last[parts[j]]
        w = iterates[-1].copy()
        s = parts[plan.block[k]]
        g = numpy_gradient(obj, point, k, 7)[s]
        w[s] -= 0.02 * (g + dc_term(g, ms[s], lam, adaptive) * (w[s] - point[s]))
        last[s] = iterates[-1][s] - w[s]
        iterates.append(w)
    np.testing.assert_allclose(curve.model, iterates[-1], **TIGHT)


@pytest.mark.parametrize(
    "entry,words",
    [
        ("{name: rpd, optimizer: {name: sgd, delay_lr: pipemare}}", "delay_lr: does not apply"),
        ("{name: pd, optimizer: {name: sgd, delay_lr: linear}}", "delay_lr"),
        ("{name: pd, optimizer: {name: sgd, delay_compensation: -1}}", "delay_compensation"),
        ("{name: pd, optimizer: {name: sgd, predict: 3}}", "predict"),
        ("{name: pd, optimizer: {name: adamw, lookahead: true}}", "only to: momentum"),
        ("{name: pd, optimizer: {name: sgd, delay_compensation_adaptive: true}}", "λ0 > 0"),
        ("{name: pd, optimizer: {name: momentum, lookahead: true, nesterov: true}}", "lookahead"),
    ],
)
def test_bad_corrections_are_one_line(tmp_path, capsys, entry, words):
    from test_diloco import SCENARIO
    from test_scenario import write

    from pipebench.cli import main

    assert main(["validate", str(write(tmp_path, SCENARIO.replace("ENTRY", entry)))]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and words in err, err


def lookahead_walk(trace, obj, lr, mu, seed, until):
    """Eq. 10 of Ajanthan et al. (2025) as written, per stage, on the base iterates w_t
    (w_{-1} = w_0): a pass reading version v reads the look-ahead point w_v + γ (w_v −
    w_{v−1}); step t is w_{t+1} = w_t + γ (w_t − w_{t−1}) − η (1 − γ) ḡ, ḡ the mean of the
    gradients it applies. Returns the last look-ahead points (what the replay stores)."""
    S = trace.stages
    parts = blocks(obj, S)
    base = [[np.zeros(p.stop - p.start)] for p in parts]

    def ahead(s, v):
        return base[s][v] + mu * (base[s][v] - base[s][max(v - 1, 0)])

    read, pending = {}, [[] for _ in range(S)]
    for i in range(trace.n_ops):
        if trace.end[i] > until:
            continue
        k, s, m = trace.kind[i], trace.stage[i], trace.mb[i]
        if k == FORWARD:
            read[s, m] = ahead(s, trace.v_fwd[i])
        elif k == BACKWARD:
            point = np.concatenate([read[j, m] for j in range(S)])
            w = ahead(s, trace.v_bwd[i])
            pending[s].append(
                numpy_gradient(obj, point, m, seed)[parts[s]] + obj.l2 * (w - read[s, m])
            )
        elif k == UPDATE:
            t = len(base[s]) - 1
            d = mu * (base[s][t] - base[s][max(t - 1, 0)])
            base[s].append(base[s][t] + d - lr * (1 - mu) * np.mean(pending[s], axis=0))
            pending[s] = []
    return np.concatenate([ahead(s, len(base[s]) - 1) for s in range(S)])


LOOKAHEAD = {"lookahead": True, "momentum": 0.9}


@pytest.mark.parametrize(
    "name,options", [("pd", {}), ("2bw", {}), ("2bw", {"accumulate": 6}), ("gpipe", {})]
)
def test_lookahead_equals_the_numpy_walk_of_its_equation(name, options):
    obj = objective("quadratic", stages=4, l2=0.05)
    curve, trace, until = train(
        name, obj, 4, lr=0.05, seed=6, costs=COSTS, optimizer="momentum", params=LOOKAHEAD,
        budget=("microbatches", 30), **options,
    )  # fmt: skip
    assert curve.diverged_at is None
    np.testing.assert_allclose(
        curve.model, lookahead_walk(trace, obj, 0.05, 0.9, 6, until), **TIGHT
    )


@pytest.mark.parametrize("name", ["gpipe", "pd"])
def test_lookahead_is_nesterov_momentum_with_the_gradient_discounted(name):
    """Eq. 10 in the look-ahead coordinates is PyTorch's Nesterov step at lr η (1 − γ)
    (as the paper runs it); without delay, that is the paper's reduction to NAG (eq. 8)."""
    obj = objective("quadratic", stages=4, l2=0.05)
    ahead, _, _ = train(name, obj, 4, lr=0.05, seed=6, costs=COSTS, optimizer="momentum",
                        params=LOOKAHEAD, budget=("microbatches", 30))  # fmt: skip
    nesterov, _, _ = train(name, obj, 4, lr=0.05 * (1 - 0.9), seed=6, costs=COSTS,
                           optimizer="momentum", params={"nesterov": True, "momentum": 0.9},
                           budget=("microbatches", 30))  # fmt: skip
    np.testing.assert_allclose(ahead.model, nesterov.model, rtol=1e-11, atol=1e-13)
    plain, _, _ = run(name, {}, "momentum")
    assert not np.allclose(plain.model, ahead.model)
