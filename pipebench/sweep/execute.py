"""Computing the cells of a sweep that the cache does not already hold.

The cache is read first: intact entries are kept, damaged ones removed and
computed again. The missing cells are cut into parts (schedule entry x
seed) so that one big cell still fills every worker; a cell is stored the
moment its last part arrives, so Ctrl-C (or a killed client) loses only the
cells in flight.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from pipebench import __version__, interrupts
from pipebench.errors import InputError
from pipebench.sweep.cache import CellCache
from pipebench.sweep.cell import assemble_cell, parts_of
from pipebench.sweep.executors import part_pool
from pipebench.sweep.plan import SweepPlan, values_text


@dataclass
class CellsDone:
    """Where each finished cell came from, by key: "cached" or "computed"."""

    source: dict[str, str] = field(default_factory=dict)
    damaged: int = 0  # entries found damaged and computed again (or still to be)
    interrupted: bool = False

    def count(self, source: str) -> int:
        return sum(s == source for s in self.source.values())


def run_cells(
    plan: SweepPlan,
    cache: CellCache,
    executor: str,
    workers: int,
    scheduler: str | None,
    command: list[str],
    on_start: Callable[[int, int, int], None] | None = None,
    on_done: Callable[[], None] | None = None,
) -> CellsDone:
    """Compute every cell missing from `cache`; `on_start(cells, cached, damaged)`, then
    `on_done()` per computed cell."""
    started = dt.datetime.now(dt.timezone.utc)
    done = CellsDone()
    cache.clear_partials()
    todo = []
    for cell in {c.key: c for c in plan.cells}.values():  # equal cells are computed once
        if cache.load(cell.key) is not None:
            done.source[cell.key] = "cached"
        else:
            if cache.damaged(cell.key):
                done.damaged += 1
                cache.discard(cell.key)
            todo.append(cell)
    if on_start is not None:
        on_start(len(todo) + len(done.source), len(done.source), done.damaged)
    if not todo:
        return done
    cells = {cell.index: cell for cell in todo}
    specs = {cell.index: plan.spec(cell) for cell in todo}
    # The costliest cell first and its costliest parts first, a cell's parts together:
    # long parts do not end up last, and Ctrl-C finds few cells half done.
    todo.sort(key=lambda c: -sum(c.work))
    parts = []
    for c in todo:
        mine = parts_of(specs[c.index], len(c.work), list(c.seeds))
        parts += sorted(mine, key=lambda p: -cells[p.cell.index].work[p.entry])
    waiting = {cell.index: len(cell.work) * len(cell.seeds) for cell in todo}
    runs: dict[int, list] = {cell.index: [] for cell in todo}
    try:
        with interrupts.raising(), part_pool(executor, parts, workers, scheduler) as results:
            for result in results:
                spec = specs[result.cell]
                if result.key != spec.key:
                    raise InputError(
                        "executor",
                        f"a worker computed the cell {values_text(spec.values)} as {result.key}, "
                        f"not {spec.key}: does every worker run pipebench {__version__} and see "
                        "the same data files?",
                    )
                runs[result.cell].extend(result.outcomes)
                waiting[result.cell] -= 1
                if waiting[result.cell] == 0:
                    files = assemble_cell(spec, runs.pop(result.cell), started, command)
                    cache.store(spec.key, files)
                    done.source[spec.key] = "computed"
                    if on_done is not None:
                        on_done()
    except KeyboardInterrupt:
        done.interrupted = True
    return done
