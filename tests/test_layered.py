"""Layered objectives (the MLP) under every schedule, against references written plainly.

The reference walks the trace in Python keeping every weight version and
every micro-batch's saved activations in dictionaries, and applies F, B, U
and AVG as docs/schedules.md says. The engine keeps ring buffers of versions and
in-flight slots instead; both must give the same weights to the last bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TIMELINE_SCHEDULES
from numba.core import config as numba_config
from training import train

from pipebench.objectives import build_objective
from pipebench.objectives.blocklinear import draw_rows
from pipebench.objectives.layered import Layered, stage_backward, stage_forward
from pipebench.timeline import CostModel, RpdPlan, setup_schedule
from pipebench.timeline.trace import (
    AVERAGE,
    BACKWARD,
    FORWARD,
    INPUT_GRAD,
    PAIR_BACKWARD,
    PAIR_FORWARD,
    UPDATE,
    WEIGHT_GRAD,
)

LR = 0.05


def mlp(stages: int, **fields) -> Layered:
    spec = {"kind": "mlp", "task": "regression", "width": 6, "activation": "gelu", "inputs": 5,
            "outputs": 2, "classes": 3, "examples": 48, "batch_size": 4, "sampling": "shuffle",
            "label_noise": 0.0, "seed": 2} | fields  # fmt: skip
    return build_objective(SimpleNamespace(**spec), stages, None)


def reference(trace, obj: Layered, seed: int, recompute: bool = False) -> np.ndarray:
    """Final weights (replica average) of SGD along `trace`, every version kept.

    A program's trace is walked chunk by chunk (`stage` is the chunk): I runs the
    chunk's backward, keeping its weight gradient until W adds it; the halves of
    an F&B pair are a forward and a full backward.
    """
    S, R, off, b = trace.stages, trace.replicas, obj.off, obj.batch_size
    versions = [[[obj.init[off[s] : off[s + 1]].copy()] for s in range(S)] for _ in range(R)]
    acc = np.zeros((R, obj.dim))
    count = np.zeros((R, S))
    acts, saved, grads, rows, pending = {}, {}, {}, {}, {}
    for i in range(trace.n_ops):
        k, s, m, r = trace.kind[i], trace.stage[i], trace.mb[i], trace.replica[i]
        if k in (FORWARD, PAIR_FORWARD):
            if s == 0:
                rows[m] = np.zeros(b, np.int64)
                draw_rows(obj.sampling, seed, obj.examples, b, m, rows[m])
            w = versions[r][s][trace.v_fwd[i]]
            saved[s, m] = np.zeros(obj.saved_size[s])
            out = np.zeros(obj.act_size)
            stage_forward(*obj.archs, s, w, obj.data_f, obj.data_t, obj.data_i, rows[m],
                          acts.get((s, m), np.zeros(obj.act_size)), saved[s, m], out)  # fmt: skip
            acts[s + 1, m] = out
        elif k in (BACKWARD, PAIR_BACKWARD, INPUT_GRAD):
            w = versions[r][s][trace.v_bwd[i]]
            x_in = acts.get((s, m), np.zeros(obj.act_size))
            if recompute:
                stage_forward(*obj.archs, s, w, obj.data_f, obj.data_t, obj.data_i,
                              rows[m], x_in, saved[s, m], np.zeros(obj.act_size))  # fmt: skip
            g_in = np.zeros(obj.act_size)
            if k == INPUT_GRAD:
                pending[s, m] = into = np.zeros(off[s + 1] - off[s])
            else:
                into = acc[r, off[s] : off[s + 1]]
            stage_backward(*obj.archs, s, w, obj.data_f, obj.data_t, obj.data_i, rows[m],
                           saved[s, m], grads.get((s + 1, m), np.zeros(obj.act_size)), g_in,
                           into)  # fmt: skip
            grads[s, m] = g_in
            count[r, s] += k != INPUT_GRAD
        elif k == WEIGHT_GRAD:
            acc[r, off[s] : off[s + 1]] += pending.pop((s, m))
            count[r, s] += 1
        elif k == UPDATE:
            # the kernel's order of operations: (lr * sum) * (1 / count)
            new = versions[r][s][-1] - LR * acc[r, off[s] : off[s + 1]] * (1.0 / count[r, s])
            versions[r][s].append(new)
            acc[r, off[s] : off[s + 1]] = 0.0
            count[r, s] = 0
        elif k == AVERAGE:
            for s2 in range(S):
                mean = sum(versions[r2][s2][-1] for r2 in range(R)) / R
                for r2 in range(R):
                    versions[r2][s2][-1] = mean.copy()
    return np.concatenate([sum(versions[r][s][-1] for r in range(R)) / R for s in range(S)])


COSTS = CostModel.build(3, forward=[1.0, 1.5, 0.7], backward=[2.0, 1.0, 1.3], comm=0.25)
CASES = [
    ("pd", {}),
    ("2bw", {"accumulate": 3}),
    ("paci", {}),
    ("paci", {"accumulate": 2}),
    ("paci", {"recompute": True}),
    ("gpipe", {"accumulate": 4}),
    ("1f1b-flush", {"accumulate": 3}),
    ("naive", {}),
    ("localsgd", {"replicas": 2, "local_steps": 2}),
]


# every synchronous program (p = 3; chunks 3 or 6)
PROGRAMS = [
    ("zb-h1", {"weight_grad": 0.6}),
    ("zb-h2", {}),
    ("interleaved-1f1b", {"chunks": 2}),
    ("interleaved-1f1b", {"chunks": 3, "accumulate": 6}),
    ("zbv", {}),
    ("dualpipev", {"overlap": 2.5}),
]


@pytest.mark.parametrize(("name", "options"), CASES + PROGRAMS)
def test_every_schedule_matches_the_plain_reference(name, options):
    obj = mlp(setup_schedule(name, 3, options).chunks)  # one block per chunk
    curve, trace, until = train(name, obj, 3, lr=LR, seed=5, costs=COSTS,
                                budget=("microbatches", 24), **options)  # fmt: skip
    assert until == trace.makespan
    expected = reference(trace, obj, 5, recompute=options.get("recompute", False))
    assert np.array_equal(curve.model, expected)
    assert curve.loss[-1] == pytest.approx(obj.loss(expected), rel=1e-12)


@pytest.mark.parametrize(("name", "options"), PROGRAMS)
def test_programs_are_minibatch_sgd_as_gpipe(name, options):
    """A synchronous program on C chunks trains what gpipe does on C stages with the same
    mini-batch (the order of the summed gradients differs: equal to rounding)."""
    setup = setup_schedule(name, 3, options)
    C, m = setup.chunks, setup.unit
    obj = mlp(C)
    budget = ("microbatches", 4 * m)
    curve, _, _ = train(name, obj, 3, lr=LR, seed=3, costs=COSTS, budget=budget, **options)
    flat, _, _ = train("gpipe", obj, C, lr=LR, seed=3, budget=budget, accumulate=m)
    np.testing.assert_allclose(curve.model, flat.model, rtol=1e-12, atol=1e-13)
    assert curve.block_updates == flat.block_updates == 4 * C


def charlm(stages: int) -> Layered:
    spec = {"kind": "charlm", "corpus": "markov", "layers": None, "width": 8, "heads": 2,
            "context": 4, "batch_size": 3, "validation": 0.2, "eval_windows": 8,
            "sampling": "uniform", "symbols": 5, "length": 2000, "seed": 1}  # fmt: skip
    return build_objective(SimpleNamespace(**spec), stages, None)


@pytest.mark.parametrize(
    ("name", "options"),
    [("pd", {}), ("2bw", {"accumulate": 3}), ("paci", {"accumulate": 2}),
     ("paci", {"recompute": True}), ("localsgd", {"replicas": 2})],
)  # fmt: skip
def test_the_transformer_matches_the_plain_reference(name, options):
    obj = charlm(3)
    curve, trace, _ = train(name, obj, 3, lr=LR, seed=2, costs=COSTS,
                            budget=("microbatches", 12), **options)  # fmt: skip
    expected = reference(trace, obj, 2, recompute=options.get("recompute", False))
    assert np.array_equal(curve.model, expected)
    assert curve.loss[-1] == pytest.approx(obj.loss(expected), rel=1e-12)


def test_stashing_matters_for_layered_objectives():
    """pd multiplies by the stashed weights, paci by the current ones: different runs here,
    where for a block-linear objective they are the same (docs/schedules.md)."""
    obj = mlp(3)
    pd_run = train("pd", obj, 3, lr=LR, costs=COSTS)[0]
    paci_run = train("paci", obj, 3, lr=LR, costs=COSTS)[0]
    assert not np.array_equal(pd_run.model, paci_run.model)


@pytest.mark.parametrize("name", TIMELINE_SCHEDULES)
def test_one_stage_is_sequential_sgd(name):
    """S = 1 has no delay: sequential minibatch SGD (2bw keeps its one-step delay)."""
    obj = mlp(1, task="classification")
    options = {"accumulate": 2} if name in ("gpipe", "1f1b-flush", "2bw") else {}
    curve, _, _ = train(name, obj, 1, lr=LR, seed=1, budget=("microbatches", 12), **options)
    group = options.get("accumulate", 1)
    w, previous = obj.init.copy(), obj.init.copy()
    rows = np.zeros(obj.batch_size, np.int64)
    for first in range(0, 12, group):
        grad = np.zeros(obj.dim)
        at = previous if name == "2bw" else w
        for m in range(first, first + group):
            draw_rows(obj.sampling, 1, obj.examples, obj.batch_size, m, rows)
            grad += obj.gradient(at, rows)[1]
        previous = w.copy()
        w = w - LR * grad * (1.0 / group)
    assert np.array_equal(curve.model, w)


def test_rpd_with_zero_delays_is_randomized_block_sgd():
    obj = mlp(3)
    curve, plan, _ = train("rpd", obj, 3, lr=LR, seed=4, delays="zero",
                           budget=("microbatches", 10))  # fmt: skip
    assert isinstance(plan, RpdPlan)
    w = obj.init.copy()
    rows = np.zeros(obj.batch_size, np.int64)
    for k in range(plan.iterations):
        draw_rows(obj.sampling, 4, obj.examples, obj.batch_size, k, rows)
        grad = obj.gradient(w, rows)[1]
        lo, hi = obj.off[plan.block[k]], obj.off[plan.block[k] + 1]
        w[lo:hi] -= LR * grad[lo:hi]
    assert np.allclose(curve.model, w, rtol=0, atol=1e-14)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_mlp_gradient_matches_finite_differences(task, activation):
    obj = mlp(
        3,
        task=task,
        activation=activation,
        **({"label_noise": 0.1} if task == "regression" else {}),
    )
    rng = np.random.default_rng(0)
    w = obj.init + 0.1 * rng.standard_normal(obj.dim)
    rows = np.array([3, 11, 7, 0])
    _, grad = obj.gradient(w, rows)
    h = 1e-6
    numeric = np.array([
        (obj.gradient(w + h * e, rows)[0] - obj.gradient(w - h * e, rows)[0]) / (2 * h)
        for e in np.eye(obj.dim)
    ])  # fmt: skip
    assert np.abs(numeric - grad).max() <= 1e-7 * max(1.0, np.abs(grad).max())


def test_regression_without_noise_is_realisable():
    """f* = 0: the teacher itself (a student with its weights) has zero loss."""
    obj = mlp(2)
    assert obj.f_star == 0.0 and mlp(2, label_noise=0.1).f_star is None
    assert mlp(2, task="classification").f_star is None


MLP_SCENARIO = """\
name: tiny-mlp
seeds: [0]
objective: {kind: mlp, width: 8, inputs: 4, outputs: 2, examples: 64, batch_size: 8}
pipeline: {stages: 3}
budget: {microbatches: 24}
record: {points: 8}
optimizer: {name: muon, lr: 0.01, warmup: 2, cosine: true}
schedules:
  - pd
  - {name: 2bw, accumulate: 3, optimizer: {name: adamw, ef: true}, lr: 0.001}
  - {name: paci, recompute: true}
"""


def test_an_mlp_scenario_runs_with_muon_ef_and_a_schedule(tmp_path, capsys):
    from test_scenario import write

    from pipebench.cli import main

    code = main(["run", str(write(tmp_path, MLP_SCENARIO)), "--out", str(tmp_path / "o"),
                 "--quiet", "--no-plots", "--format", "csv"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert "muon" in out and "adamw" in out and out.count("tiny-mlp") >= 3


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (("kind: mlp", "kind: mlp, classes: 3"), "does not apply to task regression"),
        (("width: 8", "width: 0"), "objective.width"),
        (("name: muon", "name: muon, ns_steps: 0"), "ns_steps"),
        (("optimizer: {name: adamw, ef: true}", "optimizer: {name: sgd, beta1: 0.5}"), "beta1"),
    ],
)
def test_bad_mlp_scenarios_are_one_line(tmp_path, capsys, edit, words):
    from test_scenario import write

    from pipebench.cli import main

    text = MLP_SCENARIO.replace(*edit)
    assert main(["validate", str(write(tmp_path, text))]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and words in err


def test_muon_needs_weight_matrices(tmp_path, capsys):
    from test_scenario import BASE, write

    from pipebench.cli import main

    text = BASE.replace("optimizer: {name: sgd, lr: 0.01}", "optimizer: {name: muon, lr: 0.01}")
    assert main(["validate", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert "s.yaml:" in err and "optimizer.name" in err and "mlp" in err


PRUNED = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_layered import mlp
from pipebench.objectives.charlm import layers
from pipebench.objectives.layered import stage_forward
obj = mlp(3)
x = np.zeros(obj.act_size)
stage_forward(*obj.archs, 0, obj.init[obj.off[0] : obj.off[1]], obj.data_f, obj.data_t,
              obj.data_i, np.arange(obj.batch_size), x, np.zeros(obj.saved_size[0]), x.copy())
print(len(stage_forward.signatures), len(layers.attention_forward.signatures))
"""


@pytest.mark.skipif(numba_config.DISABLE_JIT, reason="compilation is numba's")
def test_an_mlp_run_does_not_compile_the_transformer(tmp_path):
    """The stage kernels prune the other objective's branch: compiled from an empty cache,
    an mlp stage leaves the transformer's kernels uncompiled."""
    code = PRUNED.format(tests=str(Path(__file__).parent))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["1", "0"], out.stderr[-2000:]
