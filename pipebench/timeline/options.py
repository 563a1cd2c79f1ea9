"""Every schedule option, declared once: its kind, its check and its help.

Which schedules take an option, and its default there, is said by each
schedule's `defaults` (timeline/<schedule>.py). Everything else is derived
from `OPTIONS`: the scenario's schedule entries (`scenario.ScheduleSpec`),
the flags of `pipebench schedule`, the checks `Schedule.setup` applies and
the README's table of options (a test keeps it in step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# Where 1F1B limits the micro-batches in flight (the `inflight` option).
INFLIGHT_MODES = ("per-stage", "input")
# RPD delay modes; rpd_draws.fill_delays branches on the index in this tuple.
DELAY_MODES = ("uniform", "max", "zero", "pd")

# The kinds of value an option takes: what the scenario and the command line accept.
COUNT = "count"  # an integer >= 1
BOUND = "bound"  # an integer >= 0, or 'auto'
CHOICE = "choice"  # one of `choices()`
FLAG = "flag"  # true or false
MAPPING = "mapping"  # a mapping, checked by the option's own `check`
FRACTION = "fraction"  # a number in [0, 1)
# localsgd's outer optimizers (optim.diloco steps them).
OUTER_NAMES = ("sgd", "nesterov")


def _outer(value: object) -> str | None:
    """localsgd's DiLoCo outer optimizer: {name: sgd | nesterov, lr, momentum}."""
    if not isinstance(value, dict) or value.get("name") not in OUTER_NAMES:
        return f"a mapping with name: {' or '.join(OUTER_NAMES)} (and lr, momentum), got {value!r}"
    extra = set(value) - {"name", "lr", "momentum"}
    if extra:
        return f"a mapping of name, lr, momentum (unknown: {', '.join(sorted(extra))})"
    lr, mu = value.get("lr", 1.0), value.get("momentum", 0.0)
    for key, v in (("lr", lr), ("momentum", mu)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return f"a mapping whose {key} is a number, got {v!r}"
    if lr <= 0 or not 0 <= mu < 1:
        return f"a mapping with lr > 0 and 0 <= momentum < 1, got lr={lr}, momentum={mu}"
    return None


def _steps(value: object) -> str | None:
    return "an integer >= 0, got 'auto'" if value == "auto" else None


def _bits(value: object) -> str | None:
    return None if 2 <= value <= 16 else f"an integer in 2..16 (bits), got {value!r}"  # type: ignore[operator]


TIME = "time"  # a duration > 0, or the word of `choices()` naming its default
TEXT = "text"  # a file name


def _sampling_modes() -> tuple[str, ...]:
    from pipebench.objectives.sketch import SAMPLING_CODES

    return ("objective", *SAMPLING_CODES)


@dataclass(frozen=True)
class Option:
    """One schedule option, as the scenario, the command line and the checks know it."""

    name: str
    kind: str
    help: str  # the help of its `pipebench schedule` flag
    choices: Callable[[], tuple[str, ...]] | None = None  # the values of a CHOICE
    flag: bool = True  # a flag of `pipebench schedule` (False: it changes the replay only)
    check: Callable[[object], str | None] | None = None  # a further check (MAPPING: the only one)
    spelled: str | None = None  # the flag's name where it is not --<name>

    def problem(self, value: object) -> str | None:
        """What the option must be, when `value` is not allowed; None when it is."""
        integer = isinstance(value, int) and not isinstance(value, bool)
        if self.kind == COUNT:
            ok, allowed = integer and value >= 1, "an integer >= 1"  # type: ignore[operator]
        elif self.kind == BOUND:
            ok = value == "auto" or (integer and value >= 0)  # type: ignore[operator]
            allowed = "an integer >= 0 or 'auto'"
        elif self.kind == FLAG:
            ok, allowed = isinstance(value, bool), "true or false"
        elif self.kind == MAPPING:
            ok, allowed = True, ""
        elif self.kind == FRACTION:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            ok, allowed = number and 0 <= value < 1, "a number in [0, 1)"  # type: ignore[operator]
        elif self.kind == TIME:
            word = self.choices()[0] if self.choices else ""
            number = isinstance(value, int | float) and not isinstance(value, bool)
            ok = value == word or (number and math.isfinite(value) and value > 0)  # type: ignore[arg-type]
            allowed = f"a number > 0 or {word!r}"
        elif self.kind == TEXT:
            ok, allowed = isinstance(value, str) and value != "", "a file name"
        else:
            values = self.choices() if self.choices else ()
            ok, allowed = value in values, f"one of {', '.join(values)}"
        if not ok:
            return f"{allowed}, got {value!r}"
        return self.check(value) if self.check else None

    def parse(self, text: str) -> object:
        """The value of the flag's text (a BOUND is a number, or a word checked later)."""
        if self.kind in (BOUND, TIME):
            try:
                return int(text) if self.kind == BOUND else float(text)
            except ValueError:
                return text  # 'auto' or the default's word, or refused by the check
        return text


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("accumulate", COUNT, "Micro-batches per update (2bw, paci) or mini-batch (flush)."),
        Option("replicas", COUNT, "LocalSGD replicas (default S)."),
        Option("local_steps", COUNT, "LocalSGD local steps per round (default 1)."),
        Option("delta", BOUND, "RPD delay bound, or 'auto'."),
        Option("delays", CHOICE, "RPD delays: uniform|max|zero|pd.", lambda: DELAY_MODES),
        Option("recompute", FLAG, "PACI: recompute the forward in the backward."),
        Option(
            "inflight",
            CHOICE,
            "1F1B in-flight limit: per-stage (S - s) or input (S).",
            lambda: INFLIGHT_MODES,
        ),
        Option(
            "sampling",
            CHOICE,
            "RPD: how an iteration draws its batch.",
            _sampling_modes,
            flag=False,
        ),
        Option("outer", MAPPING, "LocalSGD: DiLoCo's outer optimizer.", flag=False, check=_outer),
        Option("fragments", COUNT, "LocalSGD: streaming DiLoCo's fragments.", flag=False),
        Option(
            "quantize", COUNT, "LocalSGD: bits of the pseudo-gradients.", flag=False, check=_bits
        ),
        Option(
            "overlap_steps",
            BOUND,
            "LocalSGD: inner steps the average overlaps (streaming DiLoCo's tau).",
            flag=False,
            check=_steps,
        ),
        Option("alpha", FRACTION, "LocalSGD: local share of the merge.", flag=False),
        Option("chunks", COUNT, "Model chunks per rank (interleaved-1f1b, default 2)."),
        Option(
            "weight_grad",
            TIME,
            "W part of a rank's backward (zb-h1, zb-h2, zbv, dualpipev, torch-csv); 'half'.",
            lambda: ("half",),
        ),
        Option(
            "overlap",
            TIME,
            "Time of a rank's F&B pairs (dualpipev, torch-csv); 'sum': forward + backward.",
            lambda: ("sum",),
        ),
        Option(
            "path",
            TEXT,
            "torch-csv: the PyTorch compute_only CSV to run.",
            spelled="torch-csv-in",
        ),
    )
}
