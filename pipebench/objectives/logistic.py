"""Logistic regression as a block-linear pipeline: synthetic data or a user's CSV.

f(w) = 1/n sum [log(1 + e^{x_i.w}) - y_i x_i.w] + l2/2 |w|^2 with labels in
{0, 1}. The optimum comes from Newton's method; without l2 on separable data
there is none, and results then report no f*.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipebench.objectives.blocklinear import LOSS_LOGISTIC, BlockLinear
from pipebench.objectives.data import binary_labels, load_csv
from pipebench.objectives.sketch import SAMPLING_CODES
from pipebench.objectives.sketch import logistic as sketch


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def newton_optimum(model: BlockLinear, max_iter: int = 100) -> np.ndarray | None:
    """The minimiser by damped Newton steps, or None if the gradient does not vanish."""
    X, n, d = model.X, model.examples, model.dim
    w = np.zeros(d)
    value = model.value(w)
    for _ in range(max_iter):
        grad = model.full_gradient(w)
        if np.linalg.norm(grad) <= 1e-10 * max(1.0, abs(value)):
            return w
        p = _sigmoid(X @ w)
        hessian = (X.T * (p * (1 - p))) @ X / n + model.l2 * np.eye(d)
        try:
            step = np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError:
            return None
        t = 1.0
        while t > 1e-12:  # backtracking (Armijo) line search
            trial = w - t * step
            trial_value = model.value(trial)
            if trial_value <= value - 1e-4 * t * grad @ step:
                break
            t *= 0.5
        else:
            return None
        w, value = trial, trial_value
    grad = model.full_gradient(w)
    return w if np.linalg.norm(grad) <= 1e-8 * max(1.0, abs(value)) else None


def build(spec, data_file: Path | None) -> BlockLinear:
    """The logistic-regression objective a `LogisticSpec` describes."""
    if spec.variant == "synthetic":
        rng = np.random.default_rng(spec.seed)
        shape = sketch(spec)
        n, d = shape.examples, shape.dim
        X = rng.standard_normal((n, d))
        y = (rng.random(n) < _sigmoid(X @ rng.standard_normal(d))).astype(np.float64)
        what = shape.description
    else:
        X, raw = load_csv(data_file, spec.target, spec.standardize, spec.intercept)
        y = binary_labels(raw, data_file)
        what = f"logistic regression on {data_file.name}, {X.shape[0]} x {X.shape[1]}"
    return BlockLinear(
        kind="logistic",
        description=what,
        X=np.ascontiguousarray(X),
        y=y,
        loss=LOSS_LOGISTIC,
        l2=spec.l2,
        grad_noise=spec.grad_noise,
        sampling=SAMPLING_CODES[spec.sampling],
        batch_size=spec.batch_size,
        smoothness=float(np.linalg.norm(X, 2) ** 2 / (4 * len(X))) + spec.l2,
        optimum=newton_optimum,
    )
