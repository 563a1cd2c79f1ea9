"""The scenario: pipeline, budget, schedules, and the whole it makes.

A schedule entry's options are not written here: `ScheduleSpec` takes one
field per option of `timeline.options.OPTIONS`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, create_model, field_validator, model_validator

from pipebench.grid import Axis, check_sweepable, sweep_values
from pipebench.objectives import OBJECTIVE_KINDS
from pipebench.scenario.base import (
    NonNegFloat,
    PosFloat,
    PosInt,
    Seed,
    StrictModel,
    problem,
    unknown,
)
from pipebench.scenario.hardware import MODEL_COSTS, MachineSpec
from pipebench.scenario.objectives import ObjectiveSpec
from pipebench.scenario.optimizer import LrSpec, OptimizerSpec, check_lr
from pipebench.timeline.options import (
    BOUND,
    CHOICE,
    COUNT,
    FLAG,
    FRACTION,
    MAPPING,
    OPTIONS,
    TEXT,
    TIME,
)


class Straggler(StrictModel):
    stage: Annotated[int, Field(ge=0)]
    factor: Annotated[float, Field(ge=1, allow_inf_nan=False)]


class CostsSpec(StrictModel):
    forward: PosFloat | list[PosFloat] = 1.0
    backward: PosFloat | list[PosFloat] = 1.0
    comm: NonNegFloat = 0.0
    update: NonNegFloat = 0.0
    allreduce: NonNegFloat = 0.0
    jitter: Annotated[float, Field(ge=0, lt=1)] = 0.0
    seed: Seed = 0
    straggler: Straggler | None = None


class PipelineSpec(MachineSpec):
    stages: PosInt
    costs: CostsSpec = CostsSpec()

    @model_validator(mode="after")
    def _costs_or_model(self) -> PipelineSpec:
        typed = sorted(self.costs.model_fields_set & set(MODEL_COSTS))
        if self.model is not None and typed:
            raise problem("comes from pipeline.model and hardware; give one or the other",
                          f"costs.{typed[0]}")  # fmt: skip
        return self


class BudgetSpec(StrictModel):
    """Exactly one of: simulated time, micro-batches, or block updates."""

    time: PosFloat | None = None
    microbatches: PosInt | None = None
    updates: PosInt | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BudgetSpec:
        given = [k for k in ("time", "microbatches", "updates") if getattr(self, k) is not None]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise problem(f"give exactly one of time, microbatches, updates (got {got})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("time", "microbatches", "updates") if getattr(self, k) is not None)


class RecordSpec(StrictModel):
    points: Annotated[int, Field(ge=1, le=1_000_000)] = 100


# The type a scenario gives each kind of option; `Schedule.setup` checks the rest.
_OPTION_TYPES: dict[str, Any] = {
    COUNT: PosInt,
    BOUND: Annotated[int, Field(ge=0)] | Literal["auto"],
    CHOICE: str,
    FLAG: bool,
    MAPPING: dict[str, Any],
    FRACTION: float | int,
    TIME: float | str,
    TEXT: str,
}


class _ScheduleEntry(StrictModel):
    """A schedule entry's own fields; `ScheduleSpec` adds one per schedule option."""

    name: str
    label: str | None = None
    optimizer: OptimizerSpec | None = None
    lr: LrSpec | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from pipebench.timeline import SCHEDULES

        if name not in SCHEDULES:
            raise unknown("schedule", name, list(SCHEDULES))
        return name

    @field_validator("lr")
    @classmethod
    def _parsable(cls, lr: LrSpec | None) -> LrSpec | None:
        return check_lr(lr)

    def given_options(self) -> dict[str, object]:
        """The schedule options given in the entry (those of `pipebench schedule`)."""
        given = {name: getattr(self, name) for name in OPTIONS}
        return {name: value for name, value in given.items() if value is not None}


ScheduleSpec = create_model(
    "ScheduleSpec",
    __base__=_ScheduleEntry,
    __module__=__name__,
    **{name: (_OPTION_TYPES[o.kind] | None, None) for name, o in OPTIONS.items()},
)


class Scenario(StrictModel):
    name: Annotated[str, Field(min_length=1)]
    seeds: Annotated[list[Seed], Field(min_length=1)] | None = None
    seed: Seed | None = None
    objective: ObjectiveSpec
    pipeline: PipelineSpec
    budget: BudgetSpec
    record: RecordSpec = RecordSpec()
    optimizer: OptimizerSpec
    target_loss: Annotated[float, Field(allow_inf_nan=False)] | None = None
    schedules: Annotated[list[ScheduleSpec], Field(min_length=1)]
    # what `pipebench sweep` varies: key path -> values (a list or a range string)
    sweep: dict[str, list[Any] | str | int | float | bool] | None = None

    @field_validator("schedules", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("objective", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> Any:
        if isinstance(value, dict):
            kind = value.get("kind")
            if kind is None:
                raise problem(f"missing; one of {', '.join(OBJECTIVE_KINDS)}", "kind")
            if kind not in OBJECTIVE_KINDS:
                raise unknown("objective kind", kind, list(OBJECTIVE_KINDS), sub="kind")
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise problem(f"seeds repeat: {seeds}")
        return seeds

    @field_validator("sweep")
    @classmethod
    def _sweepable(cls, sweep: dict | None) -> dict | None:
        for key, values in (sweep or {}).items():
            try:
                check_sweepable(key)
                sweep_values(values)
            except ValueError as error:
                raise problem(str(error), key) from None
        return sweep

    @model_validator(mode="after")
    def _whole(self) -> Scenario:
        if self.seeds is not None and self.seed is not None:
            raise problem("give seeds or seed, not both", "seed")
        if self.optimizer.lr is None:
            raise problem("missing; give a learning rate or a grid", "optimizer.lr")
        labels = [entry_label(e, self.schedules) for e in self.schedules]
        for i, label in enumerate(labels):
            if labels.index(label) != i:
                raise problem(
                    f"label {label!r} is used twice; give each entry its own label",
                    f"schedules.{i}.label",
                )
        return self

    @property
    def seed_list(self) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        return [0 if self.seed is None else self.seed]

    @property
    def sweep_axes(self) -> list[Axis]:
        """The `sweep:` section as axes, in the order written."""
        return [Axis(key, tuple(sweep_values(v))) for key, v in (self.sweep or {}).items()]


def entry_label(entry: ScheduleSpec, entries: list[ScheduleSpec]) -> str:
    """The label of a schedule entry: given, else its name, else name plus its options."""
    if entry.label is not None:
        return entry.label
    if sum(e.name == entry.name for e in entries) == 1:
        return entry.name
    return " ".join([entry.name, *(f"{k}={v}" for k, v in entry.given_options().items())])
