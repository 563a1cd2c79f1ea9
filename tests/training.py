"""Shared helpers for the training tests: build objectives and run replays without a file."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from pipebench.engine.recorder import block_offsets
from pipebench.engine.replay import Curve, prepare, replay
from pipebench.objectives import build_objective
from pipebench.optim import OPTIMIZERS, hyper_array
from pipebench.timeline import CostModel, RpdPlan
from pipebench.timeline.budget import timeline_for


def objective(kind: str = "quadratic", stages: int = 1, **fields):
    """A small objective (60 examples x 12, batch 4, shuffled), built like a scenario's."""
    spec = {
        "kind": kind,
        "variant": "random" if kind == "quadratic" else "synthetic",
        "examples": 60,
        "dim": 12,
        "batch_size": 4,
        "sampling": "shuffle",
        "l2": 0.0,
        "grad_noise": 0.0,
        "seed": 3,
        "label_noise": 0.0,
        "mu": 0.01,
        "spectrum": None,
    }
    spec.update(fields)
    return build_objective(SimpleNamespace(**spec), stages, None)


def train(
    name: str,
    obj,
    stages: int,
    *,
    lr: float = 0.01,
    seed: int = 0,
    budget: tuple[str, float] = ("microbatches", 24),
    points: int = 10,
    optimizer: str = "sgd",
    params: dict | None = None,
    costs: CostModel | None = None,
    **options,
) -> tuple[Curve, object, float]:
    """(curve, timeline, until) of one run of schedule `name`."""
    costs = CostModel.build(stages) if costs is None else costs
    timeline, until, iterations = timeline_for(name, options, costs, *budget)
    if isinstance(timeline, RpdPlan):  # as the runner does: rpd's draws follow the seed
        timeline = timeline.reseeded(seed)
    prepared = prepare(timeline, until, iterations)
    hyper = hyper_array(lr, {**OPTIMIZERS[optimizer].defaults, **(params or {})})
    curve = replay(
        prepared, obj, OPTIMIZERS[optimizer].code, hyper, seed, points,
        recompute=bool(options.get("recompute", False)),
    )  # fmt: skip
    return curve, timeline, until


def numpy_gradient(obj, w: np.ndarray, draw: int, seed: int) -> np.ndarray:
    """The minibatch gradient written directly in NumPy (no noise), for references."""
    rows = obj.batch_rows(draw, seed)
    z = obj.X[rows] @ w
    g = z - obj.y[rows] if obj.kind == "quadratic" else 1.0 / (1.0 + np.exp(-z)) - obj.y[rows]
    return obj.X[rows].T @ g / len(rows) + obj.l2 * w


def blocks(obj, stages: int) -> list[slice]:
    off = block_offsets(obj.dim, stages)
    return [slice(off[s], off[s + 1]) for s in range(stages)]
