"""Tiny timelines interpreted: the kernels' Python gives the compiled kernels' numbers bit for bit.

A time budget's first-update check (`budget.first_update_time`) runs the
timeline kernels' Python on its tiny runs, so that `pipebench validate` does
not pay numba's first dispatch; a tiny run's statistics and rpd's draws go the
same way, so that its first run compiles none of them.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from conftest import PROGRAM_SCHEDULES, TIMELINE_SCHEDULES

from pipebench.timeline import CostModel, setup_schedule
from pipebench.timeline import simulate as simulate_module
from pipebench.timeline import stats as stats_module
from pipebench.timeline.budget import stats_until
from pipebench.timeline.interpret import INTERPRET_UP_TO, interpreted, kernel_for
from pipebench.timeline.program import execute
from pipebench.timeline.registry import timeline_of
from pipebench.timeline.rpd_draws import draw_blocks
from pipebench.timeline.simulate import simulate

COSTS = {
    "unit": dict(),
    "uneven, jitter, links": dict(
        forward=[1.0, 0.7, 1.3, 0.9, 1.1],
        backward=[2.1, 1.5, 2.6, 1.7, 2.0],
        comm=0.13,
        update=0.05,
        allreduce=0.4,
        jitter=0.3,
        seed=11,
        straggler=(2, 1.7),
    ),
    "split backward": dict(
        forward=0.9, backward=[2.0, 2.2, 1.8, 2.4, 2.0], weight_grad=[0.9, 1.2, 0.3, 1.0, 0.0]
    ),
}


@pytest.fixture(scope="module", autouse=True)
def compiled():
    """Call each timeline kernel once on a run too large to interpret: `kernel_for` then
    hands out the compiled kernels, which the interpreted Python is compared with."""
    costs = CostModel.build(4)
    for name in ("pd", "zb-h1", "rpd"):
        timeline_of(setup_schedule(name, 4, {}), costs, 4 * INTERPRET_UP_TO)


def _same(a, b) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), field.name
        else:
            assert x == y, field.name


@pytest.mark.parametrize("costs", COSTS, ids=str)
@pytest.mark.parametrize("name", TIMELINE_SCHEDULES)
def test_interpreted_simulator_gives_the_compiled_trace(name, costs):
    model = CostModel.build(5, **COSTS[costs])
    setup = setup_schedule(name, 5, {})
    for m in (1, 7, 2 * setup.unit + 6):
        args = (name, setup.form, model, m)
        _same(interpreted(simulate)(*args), simulate(*args))


@pytest.mark.parametrize("costs", COSTS, ids=str)
@pytest.mark.parametrize("name", PROGRAM_SCHEDULES)
def test_interpreted_program_executor_gives_the_compiled_trace(name, costs):
    model = CostModel.build(5, **COSTS[costs])
    setup = setup_schedule(name, 5, {})
    m = 2 * setup.unit
    for wg, overlap in (("half", "sum"), ("half", "max")):
        args = (name, setup.form, model, m, wg, overlap)
        _same(interpreted(execute)(*args), execute(*args))


def test_interpreted_rpd_draws_are_the_compiled_ones():
    for seed, stages, n in ((0, 1, 5), (3, 5, 400), (2**40 + 7, 128, 3000)):
        got, want = interpreted(draw_blocks)(seed, stages, n), draw_blocks(seed, stages, n)
        assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("costs", COSTS, ids=str)
@pytest.mark.parametrize("name", (*TIMELINE_SCHEDULES, *PROGRAM_SCHEDULES, "rpd"))
def test_interpreted_statistics_are_the_compiled_ones(name, costs, monkeypatch):
    model = CostModel.build(5, **COSTS[costs])
    setup = setup_schedule(name, 5, {})
    timeline = timeline_of(setup, model, 4 * setup.unit)
    until = 0.6 * timeline.clock.makespan  # a cut: operations still running count in part
    got = {}
    for how, kernel_for_run in (
        ("compiled", lambda k, n: k),
        ("python", lambda k, n: interpreted(k)),
    ):
        # the statistics modules look `kernel_for` up at call time
        monkeypatch.setattr(stats_module, "kernel_for", kernel_for_run)
        monkeypatch.setattr("pipebench.timeline.interpret.kernel_for", kernel_for_run)
        got[how] = stats_until(timeline, until, None)
    _same(got["python"], got["compiled"])


def test_a_loaded_kernel_or_a_large_run_is_run_compiled():
    # Looked up when the kernels are made (pipebench/jit.py); with NUMBA_DISABLE_JIT=1 the
    # plain function, whose Python is itself.
    compiled = simulate_module._simulate
    assert kernel_for(compiled, 10) is compiled  # loaded by the fixture
    assert kernel_for(draw_blocks, INTERPRET_UP_TO + 1) is draw_blocks


FIRSTS = """
import sys
from pipebench.timeline import CostModel, SCHEDULES, setup_schedule
from pipebench.timeline.budget import first_update_time

costs = CostModel.build(6, forward=1.3, backward=2.9, comm=0.2, jitter=0.25, seed=5)
for name in sorted(set(SCHEDULES) - {"torch-csv"}):
    print(name, repr(first_update_time(setup_schedule(name, 6, {}), costs)))
print("target initialised:", "numba.np.arraymath" in sys.modules)  # by a first dispatch
"""


def test_first_update_times_are_interpreted_in_a_new_process_and_are_the_compiled_runs():
    out = subprocess.run(
        [sys.executable, "-c", FIRSTS], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-1] == "target initialised: False"
    costs = CostModel.build(6, forward=1.3, backward=2.9, comm=0.2, jitter=0.25, seed=5)
    for line in out[:-1]:
        name, first = line.split()
        setup = setup_schedule(name, 6, {})
        whole = timeline_of(setup, costs, 12 * setup.unit)  # compiled: the fixture loaded them
        assert float(first) == float(whole.update_times[0]), name
