"""The files of a results folder: the tables of finished runs and what `meta.json` says.

`pipebench run` writes them for a scenario; a sweep worker computes them
for one cell and sends them back as text, so they go through one place.
"""

from __future__ import annotations

import datetime as dt
import platform
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from pipebench import __version__
from pipebench.experiment import Experiment
from pipebench.export import csv_text, meta_json
from pipebench.runner import Outcome
from pipebench.tables import curves_table, delays_table, summary_table, timeline_table


@dataclass(frozen=True)
class RunTables:
    """The tables of one run of a scenario, as written to its results folder."""

    summary: pd.DataFrame
    curves: pd.DataFrame
    delays: pd.DataFrame
    timeline: pd.DataFrame

    def files(self, meta: dict, scenario_text: str) -> dict[str, str]:
        """File name -> text of a results folder (without pictures)."""
        return {
            "summary.csv": csv_text(self.summary),
            "curves.csv": csv_text(self.curves),
            "delays.csv": csv_text(self.delays),
            "timeline.csv": csv_text(self.timeline),
            "meta.json": meta_json(meta),
            "scenario.yaml": scenario_text,
        }


def tabulate(exp: Experiment, outcomes: list[Outcome]) -> RunTables:
    """The result tables of finished runs."""
    return RunTables(
        summary_table(exp, exp.loaded.content_hash(), outcomes),
        curves_table(exp, outcomes),
        delays_table(exp, outcomes),
        timeline_table(exp, outcomes),
    )


def versions() -> dict[str, str]:
    """The versions that results depend on, for meta.json."""
    return {
        "pipebench": __version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def run_meta(
    exp: Experiment,
    workers: int,
    started: dt.datetime,
    wall_seconds: float,
    completed: int,
    interrupted: bool,
    command: list[str],
) -> dict:
    """What `meta.json` says about a run: versions, provenance, timing and the objective."""
    return {
        **versions(),
        "scenario": exp.name,
        "scenario_file": str(exp.loaded.path),
        "scenario_hash": exp.loaded.content_hash(),
        "overrides": exp.loaded.overrides,
        "seeds": exp.seeds,
        "command": command,
        "workers": workers,
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall_seconds, 3),
        "runs": {"planned": exp.runs, "completed": completed},
        "interrupted": interrupted,
        "objective": {
            "kind": exp.objective.kind,
            "description": exp.objective.description,
            "examples": exp.objective.examples,
            "dim": exp.objective.dim,
            "smoothness": exp.objective.smoothness,
            "f_star": exp.objective.f_star,
        },
    }
