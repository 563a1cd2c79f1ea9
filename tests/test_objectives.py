"""Objectives: gradients against finite differences, optima, Hessians, smoothness, sampling."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from training import objective

from pipebench.errors import InputError
from pipebench.hashrng import mix32, permuted, permuted_run
from pipebench.objectives import build_objective
from pipebench.objectives.blocklinear import mean_loss
from pipebench.objectives.quadratic import tridiagonal_hessian
from pipebench.objectives.sketch import SAMPLE_FULL

VARIANTS = [
    ("quadratic", {"variant": "random", "label_noise": 0.5, "l2": 0.01}),
    ("quadratic", {"variant": "tridiagonal", "dim": 16, "mu": 0.1}),
    ("quadratic", {"variant": "diagonal", "dim": 10, "spectrum": [0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9]}),
    ("logistic", {"l2": 1e-3}),
    ("logistic", {"l2": 0.1, "sampling": "uniform"}),
]


def finite_difference(f, w: np.ndarray, h: float = 1e-6) -> np.ndarray:
    out = np.empty_like(w)
    for i in range(len(w)):
        e = np.zeros_like(w)
        e[i] = h
        out[i] = (f(w + e) - f(w - e)) / (2 * h)
    return out


def batch_loss(obj, w: np.ndarray, draw: int, seed: int) -> float:
    """The minibatch loss whose gradient `batch_gradient` is (without noise)."""
    rows = obj.batch_rows(draw, seed)
    return float(mean_loss(obj.loss, obj.X[rows] @ w, obj.y[rows], obj.l2, w))


@pytest.mark.parametrize("kind,fields", VARIANTS)
def test_minibatch_gradient_matches_finite_differences(kind, fields):
    obj = objective(kind, **fields)
    w = np.random.default_rng(0).standard_normal(obj.dim) * 0.3
    for draw in (0, 7):
        got = obj.batch_gradient(w, draw, seed=2)
        want = finite_difference(lambda v, d=draw: batch_loss(obj, v, d, seed=2), w)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind,fields", VARIANTS)
def test_full_gradient_matches_finite_differences_and_vanishes_at_the_optimum(kind, fields):
    obj = objective(kind, **fields)
    w = np.random.default_rng(1).standard_normal(obj.dim) * 0.3
    np.testing.assert_allclose(
        obj.full_gradient(w), finite_difference(obj.value, w), rtol=1e-6, atol=1e-7
    )
    assert obj.f_star is not None
    assert np.linalg.norm(obj.full_gradient(obj.w_star)) < 1e-8
    assert obj.value(obj.w_star) == obj.f_star
    # an optimum: no random nearby point is lower
    rng = np.random.default_rng(2)
    for _ in range(20):
        assert obj.value(obj.w_star + 1e-3 * rng.standard_normal(obj.dim)) >= obj.f_star


def test_tridiagonal_hessian_is_exact():
    obj = objective("quadratic", variant="tridiagonal", dim=20, mu=0.05)
    hessian = obj.X.T @ obj.X / obj.examples
    np.testing.assert_allclose(hessian, tridiagonal_hessian(20, 0.05), atol=1e-12)
    assert obj.smoothness == pytest.approx(np.linalg.eigvalsh(hessian).max(), rel=1e-12)


def test_diagonal_quadratic_is_the_separable_form_with_exact_gradients():
    lam = np.array([0.1, 0.4, 1.0, 2.5, 7.0])
    obj = objective("quadratic", variant="diagonal", dim=5, spectrum=lam.tolist())
    c = obj.w_star
    w = np.random.default_rng(99).standard_normal(5)
    assert obj.value(w) == pytest.approx(0.5 * np.sum(lam * (w - c) ** 2), rel=1e-12)
    assert obj.sampling == SAMPLE_FULL and obj.f_star == pytest.approx(0, abs=1e-20)
    np.testing.assert_allclose(obj.batch_gradient(w, 3, 0), lam * (w - c), rtol=1e-12)
    assert obj.smoothness == 7.0
    spread = objective(
        "quadratic", variant="diagonal", dim=9, spectrum=SimpleNamespace(min=0.01, max=100)
    )
    np.testing.assert_allclose(np.diag(spread.X) ** 2 / 9, np.geomspace(0.01, 100, 9), rtol=1e-12)


@pytest.mark.parametrize("kind", ["quadratic", "logistic"])
def test_smoothness_bounds_the_hessian(kind):
    obj = objective(kind, l2=0.01)
    gram = obj.X.T @ obj.X / obj.examples
    top = np.linalg.eigvalsh(gram).max()
    want = top + 0.01 if kind == "quadratic" else top / 4 + 0.01
    assert obj.smoothness == pytest.approx(want, rel=1e-10)


def test_shuffled_batches_are_a_fixed_partition_visited_in_a_new_order_each_epoch():
    obj = objective(examples=62, batch_size=4)  # 15 batches; 2 examples left over
    epochs = [
        [tuple(sorted(obj.batch_rows(e * 15 + p, seed=5))) for p in range(15)] for e in range(3)
    ]
    rows = [r for batch in epochs[0] for r in batch]
    assert len(set(rows)) == 60  # disjoint batches of distinct examples
    assert all(set(e) == set(epochs[0]) for e in epochs)  # the same batches every epoch
    assert epochs[0] != epochs[1] != epochs[2]  # in a new order
    assert set(rows) != set(range(60))  # which examples are left over is shuffled too


def test_uniform_batches_cover_the_data_evenly():
    obj = objective(examples=50, batch_size=10, sampling="uniform")
    counts = np.bincount(np.concatenate([obj.batch_rows(d, 1) for d in range(2000)]), minlength=50)
    assert counts.min() > 300 and counts.max() < 500  # expected 400 each


@pytest.mark.parametrize("n", [1, 2, 5, 17, 64, 100])
def test_hashed_permutation_is_a_permutation(n):
    for epoch in range(3):
        assert sorted(permuted(9, 4, epoch, i, n) for i in range(n)) == list(range(n))


def feistel_reference(seed, stream, epoch, i, n):
    """`permuted` as first written: four Feistel rounds on (left, right) halves of
    2h bits, 4^h >= n, walked until the value falls below n."""
    half = 1
    while (1 << (2 * half)) < n:
        half += 1
    mask = (1 << half) - 1
    x = i
    while True:
        left, right = x >> half, x & mask
        for r in range(4):
            f = mix32(seed ^ mix32(stream ^ mix32(epoch ^ mix32(r * 65536 + right))))
            left, right = right, left ^ (f & mask)
        x = (left << half) | right
        if x < n:
            return x


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 15, 16, 17, 60, 63, 64, 65, 600, 1024, 1025])
def test_permutation_runs_are_the_reference_permutation(n):
    """`permuted` and `permuted_run` (all positions' rounds side by side) give the
    reference's values, for sizes at, below and above the powers of four."""
    for epoch in (0, 3):
        expected = [feistel_reference(9, 4, epoch, i, n) for i in range(n)]
        assert [permuted(9, 4, epoch, i, n) for i in range(n)] == expected
        for first, count in [(0, n), (0, 0), (n // 3, n - n // 3), (n - 1, 1)]:
            out = np.full(count + 1, -1, dtype=np.int64)  # one spare: must stay untouched
            permuted_run(9, 4, epoch, first, n, count, out)
            assert list(out[:count]) == expected[first : first + count]
            assert out[count] == -1


def spec(**fields):
    base = {"kind": "logistic", "variant": "csv", "path": None, "target": "label",
            "standardize": True, "intercept": True, "batch_size": 2, "sampling": "shuffle",
            "l2": 0.1, "grad_noise": 0.0, "seed": 0, "examples": None, "dim": None}  # fmt: skip
    base.update(fields)
    return SimpleNamespace(**base)


def test_csv_objective_reads_features_and_maps_labels(tmp_path: Path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,label\n1,2,yes_\n2,0,no\n3,1,yes_\n0,5,no\n4,4,yes_\n")
    data.write_text(data.read_text().replace("yes_", "7").replace("no", "3"))
    obj = build_objective(spec(), 3, data)
    assert obj.X.shape == (5, 3) and list(obj.y) == [1, 0, 1, 0, 1]
    np.testing.assert_allclose(obj.X[:, :2].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(obj.X[:, 2], 1)
    assert obj.f_star is not None


@pytest.mark.parametrize(
    "text,field,words",
    [
        ("a,b\n1,2\n", "target", "no column 'label'"),
        ("a,label\n1,x\n2,y\n", "path", "not numeric"),
        ("a,b,label\n1,,0\n2,3,1\n", "path", "missing values"),
        ("a,b,label\n1,2,0\n2,3,1\n4,4,2\n", "target", "exactly two"),
    ],
)
def test_unusable_csv_files_name_the_field(tmp_path: Path, text, field, words):
    data = tmp_path / "d.csv"
    data.write_text(text)
    with pytest.raises(InputError) as error:
        build_objective(spec(intercept=False), 1, data)
    assert error.value.field == field and words in error.value.message


@pytest.mark.parametrize("kind", ["quadratic", "logistic"])
@pytest.mark.parametrize(
    "fields",
    [{}, {"examples": None, "dim": None}, {"sampling": "uniform", "l2": 0.25}, {"batch_size": 61}],
)
def test_a_sketch_is_what_the_built_objective_says_and_fails_where_it_fails(kind, fields):
    """`validate` checks a random objective from its sketch (objectives.sketch_objective)."""
    from pipebench.objectives import sketch_objective

    base = {"kind": kind, "variant": "random" if kind == "quadratic" else "synthetic",
            "examples": 60, "dim": 12, "batch_size": 4, "sampling": "shuffle", "l2": 0.0,
            "grad_noise": 0.0, "seed": 3, "label_noise": 0.0}  # fmt: skip
    s = SimpleNamespace(**(base | fields))
    for stages in (3, 12, 13):
        try:
            built = build_objective(s, stages, None)
        except InputError as error:
            with pytest.raises(InputError) as sketched:
                sketch_objective(s, stages)
            assert (sketched.value.field, sketched.value.message) == (error.field, error.message)
            continue
        sketch = sketch_objective(s, stages)
        shown = (sketch.description, sketch.examples, sketch.dim, sketch.sampling)
        assert shown == (built.description, built.examples, built.dim, built.sampling)


def test_objectives_whose_data_must_be_made_to_know_are_not_sketched():
    from pipebench.objectives import sketch_objective

    for kind, variant in [("quadratic", "tridiagonal"), ("quadratic", "diagonal"),
                          ("quadratic", "csv"), ("logistic", "csv")]:  # fmt: skip
        assert sketch_objective(SimpleNamespace(kind=kind, variant=variant), 2) is None
    assert sketch_objective(SimpleNamespace(kind="mlp"), 2) is None
    assert sketch_objective(SimpleNamespace(kind="charlm"), 2) is None


def test_validate_s_experiment_makes_the_same_objective_when_it_is_read():
    from pipebench.api import load_experiment

    quickstart = Path(__file__).parent.parent / "benchmarks" / "scenarios" / "quickstart.yaml"
    small = ["objective.examples=30", "objective.dim=16"]
    made, later = load_experiment(quickstart, small), load_experiment(quickstart, small, make=False)
    assert later.made is None and made.made is not None
    assert later.description == made.description == made.objective.description
    assert np.array_equal(later.objective.X, made.objective.X)
    assert later.objective.smoothness == made.objective.smoothness
