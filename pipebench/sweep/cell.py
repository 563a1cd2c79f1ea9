"""One cell of a sweep: an ordinary run of the scenario with the cell's values set.

A cell is computed in parts, one per schedule entry and seed (all its
learning rates), so that a sweep of few, uneven cells still fills every
worker: in a stage-count sweep, the S = 128 cell is most of the work.
A worker (a local process or a Dask worker, possibly on another machine)
gets a `CellPart` holding the scenario's text rather than its path, and
sends back its runs. The client assembles a cell's results folder once all
its parts are in, and alone writes the cache, so workers need no shared
disk (only a data file the objective reads must be at the same path on
every machine).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import yaml

from pipebench import __version__
from pipebench.engine.blas import one_blas_thread
from pipebench.experiment import Experiment, resolve
from pipebench.results import run_meta, tabulate
from pipebench.runner import EntryReplays, Outcome, entry_replays, run_one
from pipebench.scenario import LoadedScenario, load_scenario
from pipebench.sweep.cache import cell_key


@dataclass(frozen=True)
class CellSpec:
    """Everything needed to run one cell; small, hashable and picklable."""

    index: int
    key: str
    values: tuple[tuple[str, object], ...]
    scenario_path: str
    scenario_text: str
    overrides: tuple[str, ...]
    seeds: int | None

    def load(self) -> LoadedScenario:
        return load_scenario(
            self.scenario_path, self.overrides, self.values, text=self.scenario_text
        )


@dataclass(frozen=True)
class CellPart:
    """The runs of one schedule entry and seed of a cell (every learning rate)."""

    cell: CellSpec
    entry: int
    seed: int


@dataclass(frozen=True)
class PartResult:
    cell: int  # the cell's index
    key: str  # the cache key as the worker computed it (a check of versions and data)
    outcomes: list[Outcome]


def key_of(loaded: LoadedScenario, seeds: list[int]) -> str:
    """The cache key of a loaded cell (see `cell_key`)."""
    return cell_key(loaded.resolved(seeds), loaded.data_digest(), __version__)


@lru_cache(maxsize=2)
def _experiment(spec: CellSpec) -> tuple[Experiment, str]:
    loaded = spec.load()
    exp = resolve(loaded, spec.seeds)
    return exp, key_of(loaded, exp.seeds)


@lru_cache(maxsize=4)
def _replays(spec: CellSpec, entry: int) -> EntryReplays:
    """A worker builds each timeline once for all the parts of an entry it gets."""
    exp, _ = _experiment(spec)
    return entry_replays(exp, exp.entries[entry])


def compute_part(part: CellPart) -> PartResult:
    """Run one part (in a worker)."""
    exp, key = _experiment(part.cell)
    replays = _replays(part.cell, part.entry)
    stop = np.zeros(1, dtype=np.int64)  # a worker is stopped by its executor, not a flag
    with one_blas_thread():
        lrs = exp.entries[part.entry].lrs
        outcomes = [run_one(exp, replays, part.seed, lr, stop) for lr in lrs]
    return PartResult(part.cell.index, key, outcomes)


def parts_of(spec: CellSpec, entries: int, seeds: list[int]) -> list[CellPart]:
    return [CellPart(spec, entry, seed) for entry in range(entries) for seed in seeds]


def cell_yaml(loaded: LoadedScenario, seeds: list[int], values: dict) -> str:
    """The cell as a scenario file of its own (`pipebench run` takes it)."""
    swept = ", ".join(f"{k}={v}" for k, v in values.items())
    header = f"# one cell of a sweep of {loaded.path.name}: {swept}\n"
    return header + yaml.safe_dump(loaded.resolved(seeds, defaults=False), sort_keys=False)


def assemble_cell(
    spec: CellSpec, outcomes: list[Outcome], started: dt.datetime, command: list[str]
) -> dict[str, str]:
    """The files of a cell's results folder from the runs of all its parts (in the client)."""
    exp, _ = _experiment(spec)
    seed_at = {seed: i for i, seed in enumerate(exp.seeds)}
    ordered = sorted(
        outcomes,
        key=lambda o: (o.entry.index, seed_at[o.seed], exp.entries[o.entry.index].lrs.index(o.lr)),
    )
    compute = sum(o.wall_seconds for o in ordered)
    meta = run_meta(exp, 1, started, compute, len(ordered), False, command)
    meta["sweep_cell"] = {"key": spec.key, "values": dict(spec.values)}
    scenario = cell_yaml(exp.loaded, exp.seeds, dict(spec.values))
    return tabulate(exp, ordered).files(meta, scenario)
