"""Shared helpers for the timeline tests (imported as `from conftest import ...`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import pipebench
from pipebench.engine.blas import one_blas_thread
from pipebench.timeline import SCHEDULES, CostModel
from pipebench.timeline.trace import BACKWARD, FORWARD, UPDATE

# Every schedule that produces a timeline (rpd is an iteration plan on pd's clock).
TIMELINE_SCHEDULES = tuple(name for name, s in SCHEDULES.items() if s.rules is not None)
# Schedules written as per-rank programs (pipebench/schedules); torch-csv runs a file's.
PROGRAM_SCHEDULES = tuple(
    name for name, s in SCHEDULES.items() if s.program is not None and name != "torch-csv"
)
ALL_SCHEDULES = tuple(SCHEDULES)
# Schedules given as rules, rpd included: their options are their own (programs take a
# mini-batch size each must fit).
RULE_SCHEDULES = tuple(name for name, s in SCHEDULES.items() if s.program is None)
BUILT_IN_SCHEDULES = tuple(name for name in ALL_SCHEDULES if name != "torch-csv")
# The folder holding the pipebench under test: site-packages after a plain install (as CI
# installs it), the work tree after an editable one. `python -m pipebench` started from it
# runs that same code and reads its numba cache; from the work tree's root it would import
# the sources beside the tests and compile every kernel a second time into their cache.
PACKAGE_HOME = Path(pipebench.__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread_per_worker() -> Iterator[None]:
    """Each xdist worker keeps NumPy's and scipy's OpenBLAS on one thread: the workers
    already share the cores, and OpenBLAS's idle threads spin (pipebench.engine.blas)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    with one_blas_thread(("scipy", "numpy")):
        yield


def unit(stages: int) -> CostModel:
    """The papers' unit model: forward = backward = 1, everything else free."""
    return CostModel.build(stages)


def durations(trace, kind: int) -> np.ndarray:
    """(S, M) table of the durations of every F or B operation."""
    rows = trace.op_index(kind)
    return trace.end[rows] - trace.start[rows]


def fb_tables(trace):
    """(F rows, B rows) as (S, M) tables, after checking each (s, m) occurs exactly once."""
    S, M = trace.stages, trace.microbatches
    for kind in (FORWARD, BACKWARD):
        rows = trace.rows(kind)
        counts = np.bincount(trace.stage[rows] * M + trace.mb[rows], minlength=S * M)
        assert len(counts) == S * M and np.all(counts == 1), f"kind {kind}: not one op per (s, m)"
    return trace.op_index(FORWARD), trace.op_index(BACKWARD)


def u_rows_of_stage(trace, s: int) -> np.ndarray:
    return np.flatnonzero((trace.kind == UPDATE) & (trace.stage == s))
