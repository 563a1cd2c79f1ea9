"""Objectives: what the pipeline trains, each knowing its smoothness L and optimum f*.

`OBJECTIVE_KINDS` is light; the objectives themselves (numba kernels) are
imported when one is built, so that `pipebench list` does not load numba.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from pipebench.errors import InputError
from pipebench.objectives.kinds import BUILTIN_CORPORA, LAYERED_KINDS

if TYPE_CHECKING:
    from pipebench.objectives.blocklinear import BlockLinear
    from pipebench.objectives.layered import Layered
    from pipebench.objectives.sketch import Sketch

OBJECTIVE_KINDS = {
    "quadratic": "least squares; variants random, tridiagonal, diagonal, csv",
    "logistic": "logistic regression with l2; variants synthetic, csv",
    "mlp": "residual MLP, one block per stage, teacher-student regression or classification",
    "charlm": "character-level transformer LM; corpus shakespeare, markov or a text file",
}

_HOME = {"BlockLinear": "blocklinear", "Layered": "layered", "Sketch": "sketch"}


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)


# What the recorded loss of each objective kind is, as the loss axes of the pictures say.
LOSS_LABELS = {
    "quadratic": "loss on the full dataset",
    "logistic": "loss on the full dataset",
    "mlp": "loss on all examples",
    "charlm": "held-out loss, nats/char",
}


def loss_label(kind: object) -> str:
    """What the recorded loss of objective `kind` is; a plain "loss" for an unknown kind."""
    return LOSS_LABELS.get(kind, "loss") if isinstance(kind, str) else "loss"


def build_objective(spec, stages: int, data_file: Path | None) -> BlockLinear | Layered:
    """Build the objective of a scenario and check it fits the pipeline.

    Raises `InputError` naming the objective field at fault.
    """
    # each kind's builder is imported when built: a quadratic loads no layered model
    if spec.kind == "charlm":
        from pipebench.objectives.charlm_objective import build_charlm

        return build_charlm(spec, stages, data_file)
    if spec.kind == "mlp":
        from pipebench.objectives.mlp_objective import build_mlp

        model = build_mlp(spec, stages)
        if spec.batch_size > model.examples:
            raise InputError(
                "batch_size", f"must be <= the {model.examples} examples, got {spec.batch_size}"
            )
        return model
    model = import_module(f"{__name__}.{spec.kind}").build(spec, data_file)
    _check_fits(spec, model, stages)
    return model


def sketch_objective(spec, stages: int) -> Sketch | None:
    """The objective of `spec` sketched and checked as `build_objective` checks it, or None
    where its data must be made or read to know (a layered model, a file, a spectrum)."""
    from pipebench.objectives.sketch import SKETCHES

    if spec.kind not in SKETCHES:
        return None
    sketch = SKETCHES[spec.kind](spec)
    if sketch is not None:
        _check_fits(spec, sketch, stages)
    return sketch


def _check_fits(spec, model: BlockLinear | Sketch, stages: int) -> None:
    """Refuse a block-linear objective the pipeline cannot split or its batches not fill."""
    from pipebench.objectives.sketch import SAMPLE_FULL

    if model.dim < stages:
        field = "path" if spec.variant == "csv" else "dim"
        raise InputError(
            field, f"{model.dim} parameters cannot be split over {stages} stages (one block each)"
        )
    if model.sampling != SAMPLE_FULL and spec.batch_size > model.examples:
        raise InputError(
            "batch_size", f"must be <= the {model.examples} examples, got {spec.batch_size}"
        )


__all__ = [
    "BUILTIN_CORPORA",
    "LAYERED_KINDS",
    "LOSS_LABELS",
    "OBJECTIVE_KINDS",
    "BlockLinear",
    "Layered",
    "Sketch",
    "build_objective",
    "loss_label",
    "sketch_objective",
]
