"""Least squares as a block-linear pipeline, on four kinds of data.

`random`: Gaussian X, y = X w_true (+ label noise). `tridiagonal`: rows of a
scaled Cholesky factor, so the Hessian X^T X / n is exactly tridiag(-1, 2, -1)
+ mu I. `diagonal`: f(w) = 1/2 sum lambda_i (w_i - c_i)^2 with exact
gradients. `csv`: the user's data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipebench.errors import InputError
from pipebench.objectives.blocklinear import LOSS_SQUARED, BlockLinear
from pipebench.objectives.data import load_csv
from pipebench.objectives.sketch import SAMPLE_FULL, SAMPLING_CODES
from pipebench.objectives.sketch import quadratic as sketch


def tridiagonal_hessian(dim: int, mu: float) -> np.ndarray:
    return 2.0 * np.eye(dim) - np.eye(dim, k=1) - np.eye(dim, k=-1) + mu * np.eye(dim)


def _spectrum(spec, dim: int | None) -> np.ndarray:
    if isinstance(spec, list):
        return np.asarray(spec, dtype=np.float64)
    low, high = (1e-3, 1.0) if spec is None else (spec.min, spec.max)
    return np.geomspace(low, high, 512 if dim is None else dim)


def least_squares_optimum(X: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """argmin 1/(2n)|Xw - y|^2 + l2/2 |w|^2 (the minimum-norm one when not unique)."""
    n, d = X.shape
    if l2 > 0:
        X = np.vstack([X / np.sqrt(n), np.sqrt(l2) * np.eye(d)])
        y = np.concatenate([y / np.sqrt(n), np.zeros(d)])
    return np.linalg.lstsq(X, y, rcond=None)[0]


def build(spec, data_file: Path | None) -> BlockLinear:
    """The least-squares objective a `QuadraticSpec` describes."""
    rng = np.random.default_rng(spec.seed)
    variant = spec.variant
    sampling = SAMPLING_CODES[spec.sampling]
    if variant == "random":
        shape = sketch(spec)
        n, d = shape.examples, shape.dim
        X = rng.standard_normal((n, d))
        y = X @ rng.standard_normal(d)
        curvature = np.linalg.norm(X, 2) ** 2 / n
        what = shape.description
    elif variant == "tridiagonal":
        d = spec.dim or 512
        hessian = tridiagonal_hessian(d, spec.mu)
        factor = np.linalg.cholesky(hessian).T
        if spec.examples is None:  # the scaled factor itself: d rows, two non-zeros each
            X = np.sqrt(d) * factor
        elif spec.examples < d:
            raise InputError("examples", f"must be >= dim ({d}) for an exact Hessian")
        else:  # dense rows: a seeded orthonormal basis times the factor, X^T X / n unchanged
            n = spec.examples
            X = np.sqrt(n) * np.linalg.qr(rng.standard_normal((n, d)))[0] @ factor
        y = X @ rng.standard_normal(d)
        curvature = spec.mu + 2.0 - 2.0 * np.cos(d * np.pi / (d + 1))
        what = f"tridiagonal least squares, dim {d}, mu {spec.mu:g}, {len(X)} examples"
    elif variant == "diagonal":
        lam = _spectrum(spec.spectrum, spec.dim)
        if spec.dim is not None and len(lam) != spec.dim:
            raise InputError("spectrum", f"has {len(lam)} values for dim {spec.dim}")
        d = len(lam)
        X = np.diag(np.sqrt(d * lam))
        y = X @ rng.standard_normal(d)
        curvature = float(lam.max())
        sampling = SAMPLE_FULL
        what = f"diagonal quadratic, dim {d}, eigenvalues {lam.min():g}..{lam.max():g}"
    else:
        X, y = load_csv(data_file, spec.target, spec.standardize, spec.intercept)
        curvature = np.linalg.norm(X, 2) ** 2 / len(X)
        what = f"least squares on {data_file.name}, {X.shape[0]} examples x {X.shape[1]}"
    if variant in ("random", "tridiagonal") and spec.label_noise > 0:
        y = y + spec.label_noise * rng.standard_normal(len(y))
    return BlockLinear(
        kind="quadratic",
        description=what,
        X=np.ascontiguousarray(X, dtype=np.float64),
        y=np.ascontiguousarray(y, dtype=np.float64),
        loss=LOSS_SQUARED,
        l2=spec.l2,
        grad_noise=spec.grad_noise,
        sampling=sampling,
        batch_size=spec.batch_size,
        smoothness=float(curvature) + spec.l2,
        optimum=_optimum,
    )


def _optimum(model: BlockLinear) -> np.ndarray:
    return least_squares_optimum(model.X, model.y, model.l2)
