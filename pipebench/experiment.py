"""A validated scenario turned into what runs: costs, objective, one entry per schedule.

Everything that can be wrong with a scenario but needs the rest of
pipebench to notice (a schedule option out of range, 2BW's group smaller
than the pipeline, a cost list of the wrong length, a CSV without the
target column) is found here, before anything runs or is written, and
reported at the line of the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipebench.engine.budget import planned_microbatches
from pipebench.errors import InputError
from pipebench.objectives import BlockLinear, Layered, build_objective
from pipebench.objectives.blocklinear import SAMPLE_FULL
from pipebench.optim import OPTIMIZERS, hyper_array
from pipebench.scenario import (
    LoadedScenario,
    OptimizerSpec,
    entry_label,
    lr_select,
    lr_values,
)
from pipebench.timeline import CostModel, get_schedule
from pipebench.timeline.registry import check_memory


@dataclass(frozen=True)
class Entry:
    """One schedule of the scenario with its options and its optimizer, resolved."""

    index: int
    label: str
    schedule: str
    options: dict[str, object]  # as given (defaults are the schedule's own)
    optimizer: str
    params: dict[str, float | bool]
    lrs: list[float]
    select: str

    @property
    def optimizer_code(self) -> int:
        return OPTIMIZERS[self.optimizer].code

    def hyper(self, lr: float) -> np.ndarray:
        return hyper_array(lr, self.params)


@dataclass(frozen=True)
class Experiment:
    loaded: LoadedScenario
    costs: CostModel
    objective: BlockLinear | Layered
    entries: list[Entry]
    seeds: list[int]
    budget_kind: str
    budget: float
    points: int
    target_loss: float | None

    @property
    def name(self) -> str:
        return self.loaded.scenario.name

    @property
    def runs(self) -> int:
        return len(self.seeds) * sum(len(e.lrs) for e in self.entries)


def _costs(loaded: LoadedScenario) -> CostModel:
    spec = loaded.scenario.pipeline
    c = spec.costs
    try:
        return CostModel.build(
            spec.stages,
            forward=c.forward,
            backward=c.backward,
            comm=c.comm,
            update=c.update,
            allreduce=c.allreduce,
            jitter=c.jitter,
            seed=c.seed,
            straggler=None if c.straggler is None else (c.straggler.stage, c.straggler.factor),
        )
    except InputError as error:
        path = ("pipeline", "stages") if error.field == "stages" else ("pipeline", "costs")
        if error.field != "stages":
            path = (*path, error.field)
        raise loaded.error(path, error.message) from None


def _entry(loaded: LoadedScenario, index: int, stages: int) -> Entry:
    scenario = loaded.scenario
    spec = scenario.schedules[index]
    where = ("schedules", index)
    schedule = get_schedule(spec.name)
    try:
        resolved = schedule.options(stages, spec.options())
        if schedule.rules is not None:
            schedule.rules(stages, resolved)
    except InputError as error:
        raise loaded.error((*where, error.field), error.message) from None
    optimizer: OptimizerSpec = spec.optimizer or scenario.optimizer
    lr = spec.lr or optimizer.lr or scenario.optimizer.lr
    return Entry(
        index=index,
        label=entry_label(spec, scenario.schedules),
        schedule=spec.name,
        options=spec.options(),
        optimizer=optimizer.name,
        params=optimizer.params(),
        lrs=lr_values(lr),
        select=lr_select(lr),
    )


def resolve(loaded: LoadedScenario, seeds: int | None = None) -> Experiment:
    """Check a loaded scenario against pipebench and build its objective.

    `seeds`, when given (`--seeds N`), replaces the scenario's seeds by 0 .. N-1.
    """
    scenario = loaded.scenario
    costs = _costs(loaded)
    entries = [_entry(loaded, i, costs.stages) for i in range(len(scenario.schedules))]
    try:
        objective = build_objective(scenario.objective, costs.stages, loaded.data_file())
    except InputError as error:
        raise loaded.error(("objective", error.field), error.message) from None
    for entry in entries:
        if entry.options.get("sampling", "objective") != "objective" and (
            objective.sampling == SAMPLE_FULL
        ):
            raise loaded.error(
                ("schedules", entry.index, "sampling"),
                "the diagonal quadratic has exact gradients: there are no batches to draw",
            )
        if entry.optimizer == "muon" and not isinstance(objective, Layered):
            own = scenario.schedules[entry.index].optimizer is not None
            where = ("schedules", entry.index) if own else ()
            where = (*where, "optimizer", "name")
            raise loaded.error(
                where, "muon orthogonalises weight matrices: use it with objective mlp or charlm"
            )
    budget = scenario.budget
    amount = float(getattr(budget, budget.kind))
    for entry in entries:
        m = planned_microbatches(entry.schedule, entry.options, costs, budget.kind, amount)
        try:
            check_memory(costs.stages, m)
        except InputError as error:
            raise loaded.error(("budget", budget.kind), error.message) from None
    return Experiment(
        loaded=loaded,
        costs=costs,
        objective=objective,
        entries=entries,
        seeds=list(range(seeds)) if seeds is not None else scenario.seed_list,
        budget_kind=budget.kind,
        budget=amount,
        points=scenario.record.points,
        target_loss=scenario.target_loss,
    )
