"""The `objective:` section: one model per objective kind, told apart by `kind`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from pipebench.objectives import BUILTIN_CORPORA
from pipebench.scenario.base import (
    NonNegFloat,
    PosFloat,
    PosInt,
    Sampling,
    Seed,
    StrictModel,
    problem,
)


class SpectrumRange(StrictModel):
    min: PosFloat
    max: PosFloat


class _ObjectiveBase(StrictModel):
    variant: str
    examples: PosInt | None = None
    dim: PosInt | None = None
    batch_size: PosInt = 10
    sampling: Sampling = "shuffle"
    l2: NonNegFloat = 0.0
    grad_noise: NonNegFloat = 0.0
    seed: Seed = 0
    path: str | None = None
    target: str | None = None
    standardize: bool = True
    intercept: bool = False

    # Fields that only some variants take; the rest are common to all.
    VARIANT_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {}

    @model_validator(mode="after")
    def _fields_match_variant(self) -> _ObjectiveBase:
        allowed = self.VARIANT_FIELDS[self.variant]
        specific = {f for fields in self.VARIANT_FIELDS.values() for f in fields}
        for name in sorted(self.model_fields_set & specific - set(allowed)):
            users = [v for v, fields in self.VARIANT_FIELDS.items() if name in fields]
            raise problem(
                f"does not apply to variant {self.variant} (only to: {', '.join(users)})", name
            )
        if self.variant == "csv":
            for name in ("path", "target"):
                if getattr(self, name) is None:
                    raise problem("variant csv needs this field", name)
        return self


_CSV_FIELDS = ("path", "target", "standardize", "intercept")


class QuadraticSpec(_ObjectiveBase):
    """Least squares f(w) = 1/(2n) |Xw - y|^2 (+ l2/2 |w|^2)."""

    kind: Literal["quadratic"]
    variant: Literal["random", "tridiagonal", "diagonal", "csv"] = "random"
    label_noise: NonNegFloat = 0.0
    mu: NonNegFloat = 0.01
    spectrum: list[PosFloat] | SpectrumRange | None = None

    VARIANT_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "random": ("examples", "dim", "label_noise", "batch_size", "sampling"),
        "tridiagonal": ("examples", "dim", "mu", "label_noise", "batch_size", "sampling"),
        "diagonal": ("dim", "spectrum"),
        "csv": (*_CSV_FIELDS, "batch_size", "sampling"),
    }


class LogisticSpec(_ObjectiveBase):
    """Logistic regression, labels in {0, 1}, with an l2 term."""

    kind: Literal["logistic"]
    variant: Literal["synthetic", "csv"] = "synthetic"
    l2: NonNegFloat = 1e-4

    VARIANT_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "synthetic": ("examples", "dim", "batch_size", "sampling"),
        "csv": (*_CSV_FIELDS, "batch_size", "sampling"),
    }


class MlpSpec(StrictModel):
    """A residual MLP, one block per stage, learning from a teacher of the same shape."""

    kind: Literal["mlp"]
    task: Literal["regression", "classification"] = "regression"
    width: PosInt = 64
    activation: Literal["relu", "tanh", "gelu"] = "gelu"
    inputs: PosInt = 16
    outputs: PosInt = 4
    classes: Annotated[int, Field(ge=2)] = 10
    examples: PosInt = 1024
    batch_size: PosInt = 16
    sampling: Sampling = "shuffle"
    label_noise: NonNegFloat = 0.0
    seed: Seed = 0

    @model_validator(mode="after")
    def _fields_match_task(self) -> MlpSpec:
        wrong = {"regression": "classes", "classification": "outputs"}[self.task]
        if wrong in self.model_fields_set:
            raise problem(f"does not apply to task {self.task}", wrong)
        if self.task == "classification" and "label_noise" in self.model_fields_set:
            raise problem("applies to task regression only", "label_noise")
        return self


class CharlmSpec(StrictModel):
    """A character-level transformer language model; see objectives/charlm_objective.py."""

    kind: Literal["charlm"]
    corpus: str = "shakespeare"  # or "markov", or a UTF-8 text file
    layers: PosInt | None = None  # default: one block per middle stage (at least 1)
    width: PosInt = 64
    heads: PosInt = 4
    context: PosInt = 32
    batch_size: PosInt = 16
    validation: Annotated[float, Field(gt=0, lt=1)] = 0.1
    eval_windows: PosInt = 64
    sampling: Sampling = "uniform"
    symbols: Annotated[int, Field(ge=2, le=62)] = 16
    length: Annotated[int, Field(ge=1000)] = 200_000
    seed: Seed = 0

    @model_validator(mode="after")
    def _markov_fields(self) -> CharlmSpec:
        for name in ("symbols", "length"):
            if name in self.model_fields_set and self.corpus != "markov":
                raise problem("applies to corpus markov only", name)
        return self

    @property
    def path(self) -> str | None:
        """The corpus file, when it is one (what the scenario hash reads)."""
        return None if self.corpus in BUILTIN_CORPORA else self.corpus


ObjectiveSpec = Annotated[
    QuadraticSpec | LogisticSpec | MlpSpec | CharlmSpec, Field(discriminator="kind")
]
