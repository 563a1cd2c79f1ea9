"""The `optimizer:` section and learning rates: one value, a list, a grid, a selection."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pipebench.errors import shorten
from pipebench.grid import parse_values
from pipebench.optim import (
    DELAY_LR_RULES,
    HYPER_FIELDS,
    OPTIMIZERS,
    SCHEDULE_FIELDS,
    SHARED_DEFAULTS,
    SHARED_FIELDS,
)
from pipebench.scenario.base import NonNegFloat, PosFloat, StrictModel, problem, unknown

LrValue = Annotated[float, Field(gt=0, allow_inf_nan=False)]
LrList = Annotated[list[LrValue], Field(min_length=1)]


class LrGrid(StrictModel):
    grid: LrValue | LrList | str
    select: Literal["final", "best", "auc"] = "final"


LrSpec = LrValue | LrList | str | LrGrid


def lr_values(spec: LrSpec) -> list[float]:
    """The learning rates a spec stands for; ValueError says what is allowed."""
    values = spec.grid if isinstance(spec, LrGrid) else spec
    given = parse_values(values) if isinstance(values, str) else values
    try:
        out = [float(v) for v in (given if isinstance(given, list) else [given])]
    except OverflowError:
        raise ValueError(f"learning rates must be finite, got {shorten(values)}") from None
    if any(not 0 < v < math.inf for v in out):
        raise ValueError(f"learning rates must be finite and > 0, got {shorten(values)}")
    if len(set(out)) != len(out):
        raise ValueError(f"learning rates repeat in {shorten(values)}")
    return out


def check_lr(lr: LrSpec | None) -> LrSpec | None:
    if lr is not None:
        try:
            lr_values(lr)
        except ValueError as error:
            raise problem(str(error)) from None
    return lr


def lr_select(spec: LrSpec) -> str:
    return spec.select if isinstance(spec, LrGrid) else "final"


class OptimizerSpec(StrictModel):
    name: str
    lr: LrSpec | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    nesterov: bool | None = None
    beta1: Annotated[float, Field(ge=0, lt=1)] | None = None
    beta2: Annotated[float, Field(ge=0, lt=1)] | None = None
    eps: PosFloat | None = None
    weight_decay: NonNegFloat | None = None
    ns_steps: Annotated[int, Field(ge=1, le=20)] | None = None
    adam_lr: PosFloat | None = None
    lookahead: bool | None = None  # momentum: Nesterov's method for asynchronous pipelines
    # for every optimizer: lr warm-up and cosine decay over a stage's steps; delay correction
    # (their defaults: `optim.SHARED_DEFAULTS`)
    warmup: Annotated[int, Field(ge=0)] = SHARED_DEFAULTS["warmup"]
    cosine: bool = SHARED_DEFAULTS["cosine"]
    ef: bool = SHARED_DEFAULTS["ef"]
    # weight prediction by each micro-batch's staleness (SpecTrain)
    predict: bool = SHARED_DEFAULTS["predict"]
    delay_compensation: NonNegFloat = SHARED_DEFAULTS["delay_compensation"]  # DC-ASGD's lambda
    # DC-ASGD-a: lambda over the gradient's RMS
    delay_compensation_adaptive: bool = SHARED_DEFAULTS["delay_compensation_adaptive"]
    # each stage's lr scaled down by its delay
    delay_lr: Literal["pipemare"] | None = SHARED_DEFAULTS["delay_lr"]
    # steps until the full lr (PipeMare's K)
    delay_lr_warmup: Annotated[int, Field(ge=1)] = SHARED_DEFAULTS["delay_lr_warmup"]

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in OPTIMIZERS:
            raise unknown("optimizer", name, list(OPTIMIZERS))
        return name

    @field_validator("lr")
    @classmethod
    def _parsable(cls, lr: LrSpec | None) -> LrSpec | None:
        return check_lr(lr)

    @model_validator(mode="after")
    def _params_apply(self) -> OptimizerSpec:
        takes = OPTIMIZERS[self.name].defaults
        for key in HYPER_FIELDS[1:]:  # all but lr
            if key in SHARED_FIELDS or key in SCHEDULE_FIELDS:
                continue
            if getattr(self, key) is not None and key not in takes:
                users = [n for n, o in OPTIMIZERS.items() if key in o.defaults]
                raise problem(f"does not apply to {self.name} (only to: {', '.join(users)})", key)
        if self.delay_compensation_adaptive and self.delay_compensation == 0.0:
            raise problem(
                "scales delay_compensation: give it λ0 > 0", "delay_compensation_adaptive"
            )
        if self.lookahead and self.nesterov:
            raise problem("is Nesterov's step already: leave nesterov out", "lookahead")
        return self

    def params(self) -> dict[str, float | bool]:
        """The optimizer's hyper-parameters besides lr, defaults filled in."""
        defaults = OPTIMIZERS[self.name].defaults
        own = {k: v if getattr(self, k) is None else getattr(self, k) for k, v in defaults.items()}
        shared = {k: getattr(self, k) for k in SHARED_FIELDS}
        rule = shared["delay_lr"]
        return own | shared | {"delay_lr": 0 if rule is None else DELAY_LR_RULES.index(rule) + 1}
