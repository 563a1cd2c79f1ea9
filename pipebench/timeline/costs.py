"""Cost model: how long each operation takes on the simulated clock.

Durations are in abstract time units. The unit model (forward = backward = 1,
everything else 0) is the model of the reference papers. Jitter is drawn from
a counter-based hash of (seed, kind, stage, micro-batch), so an operation gets
the same factor whatever schedule runs it and in whatever order the simulator
visits it: schedules compared under one seed see the same noise.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipebench.errors import InputError
from pipebench.timeline.trace import MAX_STAGES


def _per_stage(name: str, value: float | Sequence[float], stages: int) -> np.ndarray:
    """Broadcast a number, or check a per-stage list, into an array of positive durations."""
    values = [value] * stages if isinstance(value, numbers.Real) else list(value)
    if len(values) != stages:
        raise InputError(
            name, f"a list of {len(values)} costs for {stages} stages; give one number or {stages}"
        )
    out = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        shown = f"{value:g}" if isinstance(value, numbers.Real) else _fmt(values)
        raise InputError(name, f"costs must be finite and > 0, got {shown}")
    return out


def _nonnegative(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise InputError(name, f"must be a finite number >= 0, got {value}")
    return float(value)


def _fmt(values: list) -> str:
    return ",".join(f"{v:g}" for v in values)


@dataclass(frozen=True)
class CostModel:
    """Per-stage forward/backward durations and the fixed costs of links, steps and averaging.

    `forward` and `backward` already include the straggler's slowdown; jitter
    is applied per operation by the simulator.
    """

    forward: np.ndarray
    backward: np.ndarray
    comm: float = 0.0
    update: float = 0.0
    allreduce: float = 0.0
    jitter: float = 0.0
    seed: int = 0

    @property
    def stages(self) -> int:
        return len(self.forward)

    @classmethod
    def build(
        cls,
        stages: int,
        forward: float | Sequence[float] = 1.0,
        backward: float | Sequence[float] = 1.0,
        comm: float = 0.0,
        update: float = 0.0,
        allreduce: float = 0.0,
        jitter: float = 0.0,
        seed: int = 0,
        straggler: tuple[int, float] | None = None,
    ) -> CostModel:
        """Validate user-facing cost settings; raises `InputError` naming the bad field."""
        if not 1 <= stages <= MAX_STAGES:
            raise InputError("stages", f"must be in 1..{MAX_STAGES}, got {stages}")
        stages = int(stages)
        fwd = _per_stage("forward", forward, stages)
        bwd = _per_stage("backward", backward, stages)
        if not math.isfinite(jitter) or not 0.0 <= jitter < 1.0:
            raise InputError("jitter", f"must be in [0, 1), got {jitter}")
        if straggler is not None:
            stage, factor = straggler
            if not 0 <= stage < stages:
                raise InputError("straggler", f"stage must be in 0..{stages - 1}, got {stage}")
            if not math.isfinite(factor) or factor < 1.0:
                raise InputError("straggler", f"slow-down factor must be >= 1, got {factor}")
            fwd[stage] *= factor
            bwd[stage] *= factor
        return cls(
            forward=fwd,
            backward=bwd,
            comm=_nonnegative("comm", comm),
            update=_nonnegative("update", update),
            allreduce=_nonnegative("allreduce", allreduce),
            jitter=float(jitter),
            seed=int(seed),
        )
