"""Schedule options are declared once (timeline/options.py): the rest must follow it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipebench.errors import InputError
from pipebench.scenario import ScheduleSpec
from pipebench.schedules.base import Program
from pipebench.timeline import SCHEDULES, get_schedule, setup_schedule
from pipebench.timeline.options import OPTIONS
from pipebench.timeline.schedule import Rules

README = Path(__file__).resolve().parents[1] / "README.md"


# a value other than the default, for every option (5 >= S holds 2bw's pipeline; 12, a
# multiple of S = 4 and > 2S, is a mini-batch every program takes; 0.5 a fraction, 1 the
# overlap that localsgd's default local_steps allows)
OTHER_VALUES = (5, "max", "input", "batch", True, 3, {"name": "nesterov"}, 12, 0.5, 1)


def _fits(name: str, option: str, value: object) -> bool:
    """Whether the schedule's rules take `value` with 4 stages (localsgd: fragments <= S)."""
    try:
        setup_schedule(name, 4, {option: value})
    except InputError:
        return False
    return True


def takers(option: str) -> set[str]:
    return {name for name, s in SCHEDULES.items() if option in s.defaults(2)}


def readme_option_rows() -> dict[str, set[str]]:
    """`--flag` -> the schedules column of the README's table of schedule options."""
    text = README.read_text(encoding="utf-8")
    table = text.split("Schedule options, refused where they do not apply:", 1)[1]
    rows = {}
    for line in table.strip().splitlines()[2:]:
        if not line.startswith("|"):
            break
        flags, schedules = line.split("|")[1:3]
        for flag in re.findall(r"`(--[a-z-]+)`", flags):
            rows[flag] = {s.strip() for s in schedules.split(",")}
    return rows


def test_the_readme_table_lists_every_flag_with_the_schedules_that_take_it():
    want = {
        f"--{o.spelled or o.name.replace('_', '-')}": takers(o.name)
        for o in OPTIONS.values()
        if o.flag
    }
    assert readme_option_rows() == want


def test_every_option_is_taken_by_some_schedule_and_is_a_scenario_field():
    for name in OPTIONS:
        assert takers(name), name
    assert list(ScheduleSpec.model_fields) == ["name", "label", "optimizer", "lr", *OPTIONS]


# torch-csv's program is its file's (without one it is refused: test_programs.py)
@pytest.mark.parametrize("name", [name for name in SCHEDULES if name != "torch-csv"])
def test_setup_fills_in_the_defaults_and_keeps_what_was_given(name):
    schedule = get_schedule(name)
    setup = setup_schedule(name, 4, {})
    assert setup.options == schedule.defaults(4) and setup.given == {}
    assert isinstance(setup.form, Rules) == (schedule.rules is not None)
    assert isinstance(setup.form, Program) == (schedule.program is not None)
    for option in schedule.defaults(4):
        allowed = [v for v in OTHER_VALUES if OPTIONS[option].problem(v) is None]
        other = next(v for v in allowed if v != setup.options[option] and _fits(name, option, v))
        changed = setup_schedule(name, 4, {option: other})
        assert changed.options == {**setup.options, option: other}
        assert changed.given == {option: other}


def test_an_option_out_of_range_is_refused_with_what_is_allowed():
    with pytest.raises(InputError, match=r"must be an integer >= 1, got 0"):
        setup_schedule("gpipe", 4, {"accumulate": 0})
    with pytest.raises(InputError, match=r"does not apply to pd \(it applies to: rpd\)"):
        setup_schedule("pd", 4, {"delta": 3})
