"""DiLoCo and streaming DiLoCo on localsgd: reductions to plain averaging, a NumPy walk of
the outer step, the all-reduce's share on the clock, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from test_layered import mlp
from training import blocks, numpy_gradient, objective, train

from pipebench.optim.outer import outer_params
from pipebench.timeline import CostModel
from pipebench.timeline.trace import AVERAGE, FORWARD, UPDATE

R, H, ROUNDS, LR = 3, 2, 5, 0.04


def run(obj, outer=None, fragments=None, optimizer="sgd", costs=None, quantize=None, **streaming):
    given = (("outer", outer), ("fragments", fragments), ("quantize", quantize), *streaming.items())
    options = {k: v for k, v in given if v is not None}
    return train("localsgd", obj, 3, lr=LR, seed=5, replicas=R, local_steps=H,
                 optimizer=optimizer, params=outer_params(options), costs=costs,
                 budget=("microbatches", R * H * ROUNDS), **options)  # fmt: skip


@pytest.mark.parametrize("kind", ["quadratic", "mlp"])
@pytest.mark.parametrize("fragments", [None, 1])
def test_outer_sgd_with_lr_1_is_plain_averaging_bit_for_bit(kind, fragments):
    obj = mlp(3) if kind == "mlp" else objective(stages=3, l2=0.01)
    base, _, _ = run(obj, optimizer="momentum")
    diloco, _, _ = run(obj, {"name": "sgd", "lr": 1.0}, fragments, optimizer="momentum")
    assert np.array_equal(base.model, diloco.model)
    assert np.array_equal(base.loss, diloco.loss)


def test_one_fragment_is_diloco_bit_for_bit():
    obj = objective(stages=3, l2=0.01)
    outer = {"name": "nesterov", "lr": 0.7, "momentum": 0.9}
    a, _, _ = run(obj, outer)
    b, _, _ = run(obj, outer, fragments=1)
    assert np.array_equal(a.model, b.model) and not np.array_equal(a.model, run(obj)[0].model)


def diloco_reference(obj, lr_out, mu, nesterov, fragments, bits=0, tau=0, alpha=0.0):
    """Rounds of independent SGD per replica, then per fragment of stages an outer step on
    the pseudo-gradient theta - mean (PyTorch's momentum convention); with `bits`, each
    replica's theta - w rounded to the grid of its largest magnitude / (2^(bits-1) - 1).
    With `tau` > 0 the replicas go on from their own weights and, after their tau-th step
    of the next round, take alpha w + (1 - alpha) theta on the stages last synced."""
    parts = blocks(obj, 3)
    theta = np.zeros(obj.dim)
    momentum = np.zeros(obj.dim)
    replicas = [np.zeros(obj.dim) for _ in range(R)]
    synced = []  # the parts whose new theta is still to be merged
    for k in range(ROUNDS):
        for r in range(R):
            for h in range(H):
                replicas[r] = replicas[r] - LR * numpy_gradient(
                    obj, replicas[r], k * R * H + r + R * h, 5
                )
                if h == tau - 1:
                    for part in synced:
                        local = replicas[r][part]
                        replicas[r][part] = alpha * local + (1 - alpha) * theta[part]
        synced = []
        mean = np.mean(replicas, axis=0)
        for s, part in enumerate(parts):
            if s % fragments != k % fragments:
                continue
            sent = [theta[part] - w[part] for w in replicas]
            if bits:
                steps = [np.abs(x).max() / (2.0 ** (bits - 1) - 1) for x in sent]
                sent = [
                    np.round(x / h) * h if h > 0 else x for x, h in zip(sent, steps, strict=True)
                ]
                mean[part] = np.mean([theta[part] - x for x in sent], axis=0)
            delta = theta[part] - mean[part]
            momentum[part] = mu * momentum[part] + delta
            step = delta + mu * momentum[part] if nesterov else momentum[part]
            theta[part] = theta[part] - lr_out * step
            synced.append(part)
            for r in range(R):
                if tau == 0:
                    replicas[r][part] = alpha * replicas[r][part] + (1 - alpha) * theta[part]
    return np.mean(replicas, axis=0)


@pytest.mark.parametrize(
    "outer,fragments,quantize",
    [
        ({"name": "nesterov"}, None, None),
        ({"name": "sgd", "lr": 0.5, "momentum": 0.6}, None, None),
        ({"name": "nesterov", "lr": 0.9, "momentum": 0.5}, 2, None),
        (None, 3, None),
        (None, None, 4),
        ({"name": "nesterov"}, 2, 3),
    ],
)
def test_outer_step_matches_a_numpy_walk(outer, fragments, quantize):
    obj = objective(stages=3, l2=0.01)
    curve, _, _ = run(obj, outer, fragments, quantize=quantize)
    hyper = outer_params({"outer": outer, "fragments": fragments, "quantize": quantize})
    want = diloco_reference(obj, hyper["outer_lr"], hyper["outer_momentum"],
                            hyper["outer_nesterov"] == 1.0, int(hyper["fragments"]),
                            int(hyper["quantize"]))  # fmt: skip
    np.testing.assert_allclose(curve.model, want, rtol=1e-12, atol=1e-12)


def test_diloco_defaults_are_the_published_ones():
    assert outer_params({"outer": {"name": "nesterov"}}) == {
        "outer_lr": 0.7, "outer_momentum": 0.9, "outer_nesterov": 1.0, "fragments": 1.0,
        "quantize": 0.0, "overlap_steps": 0.0, "alpha": 0.0,
    }  # fmt: skip
    assert outer_params({"outer": None, "fragments": 1, "overlap_steps": 0, "alpha": 0.0}) == {}


STREAMING = [
    ({"name": "nesterov"}, None, 1, 0.0),
    ({"name": "nesterov"}, None, 2, 0.5),
    (None, None, 1, 0.5),
    ({"name": "sgd", "lr": 0.8, "momentum": 0.3}, 3, 2, 0.25),
    ({"name": "nesterov"}, None, 0, 0.5),
]


@pytest.mark.parametrize("outer,fragments,tau,alpha", STREAMING)
def test_overlapped_averaging_matches_a_numpy_walk(outer, fragments, tau, alpha):
    obj = objective(stages=3, l2=0.01)
    streaming = {"overlap_steps": tau, "alpha": alpha}
    curve, _, _ = run(obj, outer, fragments, **streaming)
    hyper = outer_params({"outer": outer, "fragments": fragments, **streaming})
    want = diloco_reference(obj, hyper["outer_lr"], hyper["outer_momentum"],
                            hyper["outer_nesterov"] == 1.0, int(hyper["fragments"]),
                            tau=tau, alpha=alpha)  # fmt: skip
    np.testing.assert_allclose(curve.model, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["quadratic", "mlp"])
def test_no_overlap_and_alpha_0_is_diloco_bit_for_bit(kind):
    obj = mlp(3) if kind == "mlp" else objective(stages=3, l2=0.01)
    outer = {"name": "nesterov"}
    costs = CostModel.build(3, allreduce=2.0)
    base, trace, _ = run(obj, outer, costs=costs, optimizer="momentum")
    same, same_trace, _ = run(obj, outer, costs=costs, optimizer="momentum", overlap_steps=0,
                              alpha=0.0)  # fmt: skip
    assert np.array_equal(base.model, same.model) and np.array_equal(base.loss, same.loss)
    assert np.array_equal(trace.start, same_trace.start)


@pytest.mark.parametrize("tau", [1, 2])
def test_an_overlapped_average_holds_back_only_the_step_that_merges_it(tau):
    """The next round enters when the last stage has stepped (not when the AVG ends); the
    tau-th step of each stage and replica after the AVG starts no earlier than its end."""
    costs = CostModel.build(3, allreduce=40.0)
    _, blocking, _ = run(objective(stages=3), costs=costs)
    _, trace, _ = run(objective(stages=3), costs=costs, overlap_steps=tau)
    assert trace.makespan < blocking.makespan
    rows = np.flatnonzero(trace.kind == AVERAGE)
    for a in rows[:-1]:
        later = np.arange(a + 1, trace.n_ops)
        first_f = later[(trace.kind[later] == FORWARD) & (trace.stage[later] == 0)][0]
        assert trace.start[first_f] == trace.start[a] < trace.end[a]
        for s in range(3):
            for r in range(R):
                mine = later[(trace.kind[later] == UPDATE) & (trace.stage[later] == s)
                             & (trace.replica[later] == r)]  # fmt: skip
                assert trace.start[mine[tau - 1]] >= trace.end[a]


@pytest.mark.parametrize("fragments,quantize", [(1, None), (2, None), (3, None), (1, 4), (3, 8)])
def test_an_all_reduce_costs_the_share_of_the_bytes_it_sends(fragments, quantize):
    costs = CostModel.build(3, allreduce=6.0)
    _, trace, _ = run(objective(stages=3), fragments=fragments, costs=costs, quantize=quantize)
    avg = trace.kind == AVERAGE
    share = (quantize or 32) / 32 / fragments
    np.testing.assert_allclose(trace.end[avg] - trace.start[avg], 6.0 * share)


SCENARIO = """\
name: s
seeds: [0]
objective: {kind: quadratic, dim: 12, examples: 48, batch_size: 4}
pipeline: {stages: 3}
budget: {microbatches: 24}
optimizer: {name: sgd, lr: 0.01}
schedules:
  - ENTRY
"""


@pytest.mark.parametrize(
    "entry,words",
    [
        ("{name: pd, outer: {name: sgd}}", "outer: does not apply to pd"),
        ("{name: 1f1b-flush, fragments: 2}", "fragments: does not apply"),
        ("{name: localsgd, outer: {name: adam}}", "name: sgd or nesterov"),
        ("{name: localsgd, outer: {name: sgd, lr: 0}}", "lr > 0"),
        ("{name: localsgd, outer: {name: sgd, beta: 1}}", "unknown: beta"),
        ("{name: localsgd, fragments: 4}", "must be <= stages (3)"),
        ("{name: localsgd, quantize: 1}", "an integer in 2..16"),
        ("{name: pd, quantize: 4}", "quantize: does not apply"),
        ("{name: localsgd, local_steps: 2, overlap_steps: 3}", "must be <= local_steps (2)"),
        ("{name: localsgd, overlap_steps: auto}", "an integer >= 0"),
        ("{name: localsgd, alpha: 1}", "a number in [0, 1)"),
        ("{name: gpipe, alpha: 0.5}", "alpha: does not apply"),
    ],
)
def test_diloco_options_are_refused_where_they_make_no_sense(tmp_path, capsys, entry, words):
    from test_scenario import write

    from pipebench.cli import main

    assert main(["validate", str(write(tmp_path, SCENARIO.replace("ENTRY", entry)))]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and words in err, err


def union_length(intervals):
    """Measure of a union of intervals, merged in plain Python."""
    total, reach = 0.0, -np.inf
    for a, b in sorted(intervals):
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


@pytest.mark.parametrize("tau", [0, 1, 2])
def test_busy_time_counts_a_rank_once_while_an_average_overlaps_its_steps(tau):
    from pipebench.timeline.stats import busy_time

    costs = CostModel.build(3, allreduce=40.0)
    _, trace, _ = run(objective(stages=3), costs=costs, overlap_steps=tau)
    avg = [
        (a, b) for a, b, k in zip(trace.start, trace.end, trace.kind, strict=True) if k == AVERAGE
    ]
    want = sum(
        union_length(
            avg + [(trace.start[i], trace.end[i]) for i in np.flatnonzero(trace.stage == s)]
        )
        for s in range(3)
    )
    assert busy_time(trace) == pytest.approx(want, rel=1e-12)
