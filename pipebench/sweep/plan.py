"""A sweep planned: its axes, and every cell checked and keyed before anything runs.

Each cell is loaded and resolved here, in the client, so a value that makes
any cell invalid (2bw's group smaller than a swept stage count, a key that
does not exist) is one error line naming the cell, before a worker starts
or a file is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipebench.errors import InputError, ScenarioError
from pipebench.experiment import Experiment, resolve
from pipebench.grid import Axis, grid_cells, merge_axes, parse_grid
from pipebench.limits import MAX_OUTPUT_BYTES, output_bytes, row_text_bytes, size_text
from pipebench.scenario import LoadedScenario, load_scenario
from pipebench.sweep.cell import CellSpec, key_of
from pipebench.timeline.budget import planned_microbatches

Values = tuple[tuple[str, object], ...]


def values_text(values: Values) -> str:
    return ", ".join(f"{key}={value}" for key, value in values)


@dataclass(frozen=True)
class Cell:
    index: int
    values: Values
    key: str  # the cache key: hash of the resolved scenario, data file and version
    runs: int
    seeds: tuple[int, ...]
    # per schedule entry, a rough cost of one seed's runs (to start the longest parts first)
    work: tuple[int, ...]


@dataclass(frozen=True)
class SweepPlan:
    base: LoadedScenario
    axes: list[Axis]
    cells: list[Cell]
    overrides: tuple[str, ...]
    seeds: int | None

    @property
    def name(self) -> str:
        return self.base.scenario.name

    @property
    def keys(self) -> list[str]:
        """The swept keys: one column each in the combined tables."""
        return [axis.key for axis in self.axes]

    def spec(self, cell: Cell) -> CellSpec:
        return CellSpec(
            index=cell.index,
            key=cell.key,
            values=cell.values,
            scenario_path=str(self.base.path),
            scenario_text=self.base.text,
            overrides=self.overrides,
            seeds=self.seeds,
        )


def _work(exp: Experiment) -> tuple[int, ...]:
    """Per entry, the block updates of one seed's runs, about (rpd's grow costlier with S too)."""
    return tuple(
        exp.costs.stages * len(e.lrs)
        * planned_microbatches(e.schedule, e.options, exp.costs, exp.budget_kind, exp.budget)
        for e in exp.entries
    )  # fmt: skip


def plan_sweep(
    path: str | Path,
    grid: list[str] | tuple = (),
    overrides: list[str] | tuple = (),
    seeds: int | None = None,
) -> SweepPlan:
    """The sweep of a scenario: its `sweep:` section with `grid` (`--grid`) merged in."""
    base = load_scenario(path, overrides)
    given = []
    for text in grid:
        try:
            given.append(parse_grid(text))
        except ValueError as error:
            raise InputError("grid", str(error)) from None
    axes = merge_axes(base.scenario.sweep_axes, given)
    if not axes:
        raise InputError(
            "grid", "nothing to sweep: give --grid key.path=values or a sweep: section"
        )
    try:
        grid_values = grid_cells(axes)
    except ValueError as error:
        if given:
            raise InputError("grid", str(error)) from None
        raise base.error(("sweep",), str(error)) from None
    cells = []
    written = 0
    for index, values in enumerate(grid_values):
        try:
            loaded = load_scenario(path, overrides, values, text=base.text)
            exp = resolve(loaded, seeds)
        except ScenarioError as error:
            raise ScenarioError(
                error.where, error.field, f"{error.message} (in the cell {values_text(values)})"
            ) from None
        except InputError as error:  # a key path that runs into a value or a short list
            raise InputError("grid", error.message) from None
        key = key_of(loaded, exp.seeds)
        cells.append(Cell(index, values, key, exp.runs, tuple(exp.seeds), _work(exp)))
        text = row_text_bytes(exp.name, [e.label for e in exp.entries])
        written += output_bytes(exp.runs, exp.points, text)
    if written > MAX_OUTPUT_BYTES:
        message = (
            f"its {len(cells)} cells would write about {size_text(written)} of tables; "
            f"at most {size_text(MAX_OUTPUT_BYTES)}: sweep fewer values, points or seeds"
        )
        raise InputError("grid", message) if given else base.error(("sweep",), message)
    return SweepPlan(base, axes, cells, tuple(overrides), seeds)
