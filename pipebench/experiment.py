"""A validated scenario turned into what runs: costs, objective, one entry per schedule.

Everything that can be wrong with a scenario but needs the rest of
pipebench to notice (a schedule option out of range, 2BW's group smaller
than the pipeline, a cost list of the wrong length, a CSV without the
target column) is found here, before anything runs or is written, and
reported at the line of the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from pipebench.errors import InputError, short_number
from pipebench.limits import (
    FLOAT,
    Need,
    available_memory,
    memory_problem,
    objective_needs,
    output_problem,
    replay_needs,
    row_text_bytes,
)
from pipebench.objectives import LAYERED_KINDS, build_objective, sketch_objective
from pipebench.objectives.sketch import SAMPLE_FULL
from pipebench.optim import OPTIMIZERS, hyper_array
from pipebench.optim.outer import outer_params
from pipebench.scenario import (
    LoadedScenario,
    OptimizerSpec,
    entry_label,
    lr_select,
    lr_values,
)
from pipebench.scenario.hardware import Machine, build_machine
from pipebench.timeline import CostModel, setup_schedule
from pipebench.timeline.budget import first_update_time, planned_microbatches, updates_by
from pipebench.timeline.schedule import Setup
from pipebench.timeline.trace import trace_need

if TYPE_CHECKING:  # checking a scenario loads no layered model, no memory profile, no NumPy
    import numpy as np

    from pipebench.objectives import BlockLinear, Layered
    from pipebench.timeline.memory import ChunkBytes


@dataclass(frozen=True)
class Entry:
    """One schedule of the scenario with its options and its optimizer, resolved."""

    index: int
    label: str
    setup: Setup  # the schedule with its options resolved, and its rules
    optimizer: str
    params: dict[str, float | bool]
    lrs: list[float]
    select: str

    @property
    def schedule(self) -> str:
        return self.setup.name

    @property
    def optimizer_code(self) -> int:
        return OPTIMIZERS[self.optimizer].code

    def hyper(self, lr: float) -> np.ndarray:
        return hyper_array(lr, self.params)


@dataclass(frozen=True)
class Experiment:
    loaded: LoadedScenario
    costs: CostModel
    description: str  # the objective's line, known before its data is made
    entries: list[Entry]
    seeds: list[int]
    budget_kind: str
    budget: float
    points: int
    target_loss: float | None
    machine: Machine | None = None  # the model and GPU the costs come from, if any
    made: dict[int, BlockLinear | Layered] | None = None  # `cuts`, where `resolve` made them

    @property
    def name(self) -> str:
        return self.loaded.scenario.name

    @property
    def runs(self) -> int:
        return len(self.seeds) * sum(len(e.lrs) for e in self.entries)

    @cached_property
    def cuts(self) -> dict[int, BlockLinear | Layered]:
        """By chunk count, the objective cut into one block per chunk (programs may have
        several chunks per stage); the replay of an entry trains `objective_of(entry)`.

        Made by `resolve`, or, where it was told not to (`validate`), when first asked.
        """
        if self.made is not None:
            return self.made
        return _cuts(self.loaded.scenario.objective, _counts(self.costs, self.entries),
                     self.loaded.data_file())  # fmt: skip

    @property
    def objective(self) -> BlockLinear | Layered:
        """The objective cut into one block per stage."""
        return self.cuts[self.costs.stages]

    def objective_of(self, entry: Entry) -> BlockLinear | Layered:
        """What `entry` trains: the objective cut into one block per chunk of its schedule."""
        return self.cuts[entry.setup.chunks]

    @cached_property
    def switches(self) -> np.ndarray:
        """The corrections some run uses (hyper-parameter fields not 0 in some entry):
        every run's replay kernel is compiled for these (`engine.replay.replay`), so
        that a scenario comparing corrections compiles one kernel, not one per mix."""
        import numpy as np

        return np.any([e.hyper(e.lrs[0]) != 0.0 for e in self.entries], axis=0).astype(float)


def chunk_bytes(machine: Machine, optimizer: str) -> ChunkBytes:
    """What each stage of `machine`'s model holds in bytes when `optimizer` trains it."""
    from pipebench.timeline.memory import ChunkBytes

    s = machine.sizes
    return ChunkBytes.of(
        s.params, s.act_bytes, s.w_bytes, s.send_bytes, optimizer, machine.precision
    )


def _machine(loaded: LoadedScenario) -> Machine | None:
    """The scenario's model on its GPU, when it gives one."""
    spec = loaded.scenario.pipeline
    if spec.model is None or spec.hardware is None:
        return None
    try:
        return build_machine(
            spec.model.shape(),
            spec.hardware.machine(),
            spec.stages,
            precision=spec.model.precision,
            profile=spec.profile,
            layers_per_stage=spec.layers_per_stage,
            base=loaded.path.parent,
        )
    except InputError as error:
        raise loaded.error(("pipeline", *error.field.split(".")), error.message) from None


def _costs(loaded: LoadedScenario, machine: Machine | None) -> CostModel:
    spec = loaded.scenario.pipeline
    c = spec.costs
    straggler = None if c.straggler is None else (c.straggler.stage, c.straggler.factor)
    try:
        if machine is not None:
            return machine.cost_model(jitter=c.jitter, seed=c.seed, straggler=straggler)
        return CostModel.build(
            spec.stages,
            forward=c.forward,
            backward=c.backward,
            comm=c.comm,
            update=c.update,
            allreduce=c.allreduce,
            jitter=c.jitter,
            seed=c.seed,
            straggler=straggler,
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
    try:
        setup = setup_schedule(spec.name, stages, spec.given_options())
    except InputError as error:
        raise loaded.error((*where, error.field), error.message) from None
    optimizer: OptimizerSpec = spec.optimizer or scenario.optimizer
    if optimizer.delay_lr is not None and setup.form is None:
        at = (*where, "optimizer") if spec.optimizer is not None else ("optimizer",)
        raise loaded.error((*at, "delay_lr"), f"does not apply to {spec.name}, whose delays "
                           "are drawn per iteration (only to timeline schedules)")  # fmt: skip
    lr = spec.lr or optimizer.lr or scenario.optimizer.lr
    return Entry(
        index=index,
        label=entry_label(spec, scenario.schedules),
        setup=setup,
        optimizer=optimizer.name,
        params=optimizer.params() | outer_params(setup.options),
        lrs=lr_values(lr),
        select=lr_select(lr),
    )


def resolve(loaded: LoadedScenario, seeds: int | None = None, make: bool = True) -> Experiment:
    """Check a loaded scenario against pipebench and build its objective.

    `seeds`, when given (`--seeds N`), replaces the scenario's seeds by 0 .. N-1.
    What the run will need (memory, output, the clock's range) is checked
    before the objective is built, and the budget against the first update.
    `make=False` (`validate`): an objective whose spec says all the checks read
    (`objectives.sketch_objective`) is made when first read, not here.
    """
    scenario = loaded.scenario
    machine = _machine(loaded)
    costs = _costs(loaded, machine)
    entries = [_entry(loaded, i, costs.stages) for i in range(len(scenario.schedules))]
    budget = scenario.budget
    amount = float(getattr(budget, budget.kind))
    _check_needs(loaded, costs, entries, seeds)
    counts = _counts(costs, entries)
    try:
        sketch = None if make else sketch_objective(scenario.objective, max(counts))
        cuts = None if sketch is not None else _made(scenario.objective, counts, loaded, make)
    except InputError as error:
        raise loaded.error(_objective_path(error.field), error.message) from None
    objective = sketch if sketch is not None else cuts[costs.stages]
    for entry in entries:
        if entry.setup.options.get("sampling", "objective") != "objective" and (
            objective.sampling == SAMPLE_FULL
        ):
            raise loaded.error(
                ("schedules", entry.index, "sampling"),
                "the diagonal quadratic has exact gradients: there are no batches to draw",
            )
        if entry.optimizer == "muon" and scenario.objective.kind not in LAYERED_KINDS:
            own = scenario.schedules[entry.index].optimizer is not None
            where = ("schedules", entry.index) if own else ()
            where = (*where, "optimizer", "name")
            raise loaded.error(
                where, "muon orthogonalises weight matrices: use it with objective mlp or charlm"
            )
    if budget.kind == "time":  # every schedule must make an update: the latest first one
        late = [e for e in entries if not updates_by(e.setup, costs, amount)]
        firsts = {e.label: first_update_time(e.setup, costs) for e in late}
        label = max(firsts, key=firsts.__getitem__, default=None)
        if label is not None and amount < firsts[label]:
            first = short_number(firsts[label])
            raise loaded.error(
                ("budget", "time"),
                f"{short_number(amount)} ends before {label} makes its first update (at "
                f"{first} with these costs); give a time of at least {first}",
            )
    return Experiment(
        loaded=loaded,
        costs=costs,
        description=objective.description,
        entries=entries,
        seeds=list(range(seeds)) if seeds is not None else scenario.seed_list,
        budget_kind=budget.kind,
        budget=amount,
        points=scenario.record.points,
        target_loss=scenario.target_loss,
        machine=machine,
        made=cuts,
    )


def _counts(costs: CostModel, entries: list[Entry]) -> list[int]:
    """The block counts the objective is cut into: the stages, each schedule's chunks."""
    return [costs.stages, *(e.setup.chunks for e in entries)]


def _made(
    spec, counts: list[int], loaded: LoadedScenario, make: bool
) -> dict[int, BlockLinear | Layered]:
    """`_cuts`; an objective built only to be checked (`validate`) is built on one BLAS
    thread (NumPy's two made the SVD of its set-up take seconds on a loaded machine);
    loading the BLAS libraries to pin them starts their threads, so a sketch pins none."""
    if make:
        return _cuts(spec, counts, loaded.data_file())
    from pipebench.engine.blas import one_blas_thread

    with one_blas_thread(("scipy", "numpy")):
        return _cuts(spec, counts, loaded.data_file())


def _cuts(spec, counts: list[int], data_file) -> dict[int, BlockLinear | Layered]:
    """The objective cut into each block count in `counts`.

    A layered model is built per count (its layout follows its blocks); a
    block-linear one is one vector that the replay cuts, built once, checked
    against the largest count.
    """
    counts = sorted(set(counts))
    if spec.kind in LAYERED_KINDS:
        return {c: build_objective(spec, c, data_file) for c in counts}
    return dict.fromkeys(counts, build_objective(spec, counts[-1], data_file))


def _objective_path(field: str) -> tuple:
    """The scenario path of a field an objective's builder names ('width', 'objective.corpus')."""
    parts = tuple(field.split("."))
    return parts if parts[0] in ("objective", "pipeline") else ("objective", *parts)


def _check_needs(
    loaded: LoadedScenario, costs: CostModel, entries: list[Entry], seeds: int | None
) -> None:
    """Refuse what cannot fit: memory, output size, the simulated clock (see limits.py)."""
    scenario = loaded.scenario
    S = costs.stages
    budget = scenario.budget
    amount = float(getattr(budget, budget.kind))
    spec = scenario.objective
    needs, params, rows = objective_needs(spec, S, loaded.data_file())
    size_field = needs[0].field  # what the parameter count grows with
    replays = []
    for entry in entries:
        where: tuple = ("schedules", entry.index)
        setup = entry.setup
        m = planned_microbatches(setup, costs, budget.kind, amount)
        grouped = [o for o in ("accumulate", "local_steps", "replicas") if o in setup.given]
        by_group = budget.kind != "microbatches" and setup.unit * 2 > m and grouped
        trace_field = (*where, grouped[0]) if by_group else ("budget", budget.kind)
        needs.append(trace_need(trace_field, setup.chunks, m))
        clock = costs.clock_check(m, setup.recompute)
        if clock is not None:
            raise loaded.error(("pipeline", "costs", clock[0]), clock[1])
        shape = setup.replay_shape(m)
        # the options are to blame for a large shape when they make it larger than the defaults
        held = [o for o in ("replicas", "accumulate", "delta") if o in setup.given]
        default = setup_schedule(setup.name, S, {}).replay_shape(m) if held else shape
        larger = any(a > b for a, b in zip(shape, default, strict=True))
        field = (*where, held[0]) if held and larger else size_field
        C = setup.chunks  # the objective is cut into a block per chunk
        sized = (params, rows) if C == S else objective_needs(spec, C, loaded.data_file())[1:]
        replays.append(replay_needs(entry.label, spec, C, *sized, shape, field))
    # every trace is held until the end; replays run one at a time (per worker)
    needs += max(replays, key=lambda pair: sum(need.bytes for need in pair))
    n_seeds = seeds if seeds is not None else len(scenario.seed_list)
    runs = n_seeds * sum(len(e.lrs) for e in entries)
    points = scenario.record.points
    runs_field = _runs_field(scenario, entries, seeds, n_seeds, points)
    # each run's curve and final weights are held until the tables are written
    results = FLOAT * runs * (3 * (points + 1) + params)
    needs.append(Need(runs_field, f"the results of {runs} runs", results))
    problem = memory_problem(needs, available_memory())
    if problem is None:
        text = row_text_bytes(scenario.name, [e.label for e in entries])
        message = output_problem(runs, points, text)
        if message is None:
            return
        problem = (Need(runs_field, "", 0), message)
    field, message = problem[0].field, problem[1]
    if isinstance(field, str):
        raise InputError(field, message)
    raise loaded.error(field, message)


def _runs_field(scenario, entries: list[Entry], seeds: int | None, n_seeds: int, points: int):
    """What to blame for too many runs x points: the largest factor."""
    lrs = max(entries, key=lambda e: len(e.lrs))
    if points + 1 >= max(n_seeds, len(lrs.lrs)):
        return ("record", "points")
    if n_seeds >= len(lrs.lrs):
        return "seeds" if seeds is not None else ("seeds",)
    own = scenario.schedules[lrs.index].lr is not None
    return ("schedules", lrs.index, "lr") if own else ("optimizer", "lr")
