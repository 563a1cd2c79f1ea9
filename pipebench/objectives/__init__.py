"""Objectives: what the pipeline trains, each knowing its smoothness L and optimum f*."""

from __future__ import annotations

from pathlib import Path

from pipebench.errors import InputError
from pipebench.objectives import logistic, quadratic
from pipebench.objectives.blocklinear import SAMPLE_FULL, BlockLinear
from pipebench.objectives.language import build_charlm
from pipebench.objectives.layered import Layered
from pipebench.objectives.teacher import build_mlp

BUILDERS = {"quadratic": quadratic.build, "logistic": logistic.build}


def build_objective(spec, stages: int, data_file: Path | None) -> BlockLinear | Layered:
    """Build the objective of a scenario and check it fits the pipeline.

    Raises `InputError` naming the objective field at fault.
    """
    if spec.kind == "charlm":
        return build_charlm(spec, stages, data_file)
    if spec.kind == "mlp":
        model = build_mlp(spec, stages)
        if spec.batch_size > model.examples:
            raise InputError(
                "batch_size", f"must be <= the {model.examples} examples, got {spec.batch_size}"
            )
        return model
    model = BUILDERS[spec.kind](spec, data_file)
    if model.dim < stages:
        field = "path" if spec.variant == "csv" else "dim"
        raise InputError(
            field, f"{model.dim} parameters cannot be split over {stages} stages (one block each)"
        )
    if model.sampling != SAMPLE_FULL and spec.batch_size > model.examples:
        raise InputError(
            "batch_size", f"must be <= the {model.examples} examples, got {spec.batch_size}"
        )
    return model


__all__ = ["BUILDERS", "BlockLinear", "Layered", "build_objective"]
