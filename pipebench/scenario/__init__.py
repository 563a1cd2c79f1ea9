"""The YAML scenario: pydantic models, loading, `--set` overrides, file:line errors.

A scenario is read in three steps, each able to fail with one precise line:
YAML parsing (with the line of the syntax error), the pydantic models (types,
ranges, unknown keys with a did-you-mean), and the cross-field checks that
need the rest of pipebench (schedule options, costs, objective sizes). Every
error names the file, the line where the field is written, and the field's
dotted path (`schedules.2.accumulate`).

The modules: `base` (strict models, our error messages), `objectives`,
`optimizer` (and learning rates), `model` (pipeline, budget, schedules, the
whole scenario), `overrides` (`--set`), `located` (file:line of a field) and
`loading` (reading a file; the loaded scenario and its hash).
"""

from pipebench.objectives import OBJECTIVE_KINDS
from pipebench.scenario.loading import LoadedScenario, load_scenario
from pipebench.scenario.located import Located
from pipebench.scenario.model import Scenario, ScheduleSpec, entry_label
from pipebench.scenario.objectives import CharlmSpec, MlpSpec, ObjectiveSpec
from pipebench.scenario.optimizer import (
    LrGrid,
    LrSpec,
    OptimizerSpec,
    lr_select,
    lr_values,
)
from pipebench.scenario.overrides import parse_override

__all__ = [
    "OBJECTIVE_KINDS",
    "CharlmSpec",
    "LoadedScenario",
    "Located",
    "LrGrid",
    "LrSpec",
    "MlpSpec",
    "ObjectiveSpec",
    "OptimizerSpec",
    "Scenario",
    "ScheduleSpec",
    "entry_label",
    "load_scenario",
    "lr_select",
    "lr_values",
    "parse_override",
]
