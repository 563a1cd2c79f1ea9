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

from pipebench.errors import InputError
from pipebench.numsum import numpy_sum
from pipebench.timeline.trace import MAX_STAGES


def _per_stage(name: str, value: float | Sequence[float], stages: int) -> list[float]:
    """Broadcast a number, or check a per-stage list, into a list of positive durations."""
    values = [value] * stages if isinstance(value, numbers.Real) else list(value)
    if len(values) != stages:
        raise InputError(
            name, f"a list of {len(values)} costs for {stages} stages; give one number or {stages}"
        )
    out = [float(v) for v in values]
    if not all(math.isfinite(v) and v > 0 for v in out):
        shown = f"{value:g}" if isinstance(value, numbers.Real) else _fmt(values)
        raise InputError(name, f"costs must be finite and > 0, got {shown}")
    return out


def _nonnegative(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise InputError(name, f"must be a finite number >= 0, got {value}")
    return float(value)


def _fmt(values: list) -> str:
    return ",".join(f"{v:g}" for v in values)


CLOCK_DIGITS = 2.0**52  # a float64 clock resolves durations down to its value / 2^52


def _total(parts: dict[str, float]) -> float:
    """The sum of a run's `CostModel.run_parts`, inf where one overflowed."""
    values = parts.values()
    return math.fsum(values) if all(map(math.isfinite, values)) else math.inf


def _clock_problem(longest: float, shortest: float) -> str | None:
    """Why a clock reaching `longest` cannot time operations as short as `shortest`."""
    if not math.isfinite(longest) or longest > 1e300:
        return (
            f"the simulated clock would overflow (the run lasts up to {longest:.3g} time "
            "units); give smaller costs or a smaller budget"
        )
    if longest > shortest * CLOCK_DIGITS:
        return (
            f"the run lasts up to {longest:.3g} time units, too long to time operations of "
            f"{shortest:.3g} on a float64 clock; keep costs within 2^52 of the run's length"
        )
    return None


@dataclass(frozen=True)
class CostModel:
    """Per-stage forward/backward durations and the fixed costs of links, steps and averaging.

    `forward` and `backward` already include the straggler's slowdown; jitter
    is applied per operation by the simulator. `weight_grad`, when known (a
    model's costs), is the W part of each rank's backward that split-backward
    schedules run apart; otherwise they take half. Per-stage values are tuples
    of floats, checked without NumPy (`validate`); the executors make arrays of
    them where they feed their kernels (simulate.py, program.py).
    """

    forward: tuple[float, ...]
    backward: tuple[float, ...]
    comm: float = 0.0
    update: float = 0.0
    allreduce: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    straggler: tuple[int, float] | None = None  # (stage, factor) applied to forward, backward
    weight_grad: tuple[float, ...] | None = None

    @property
    def stages(self) -> int:
        return len(self.forward)

    @property
    def slowdown(self) -> tuple[float, ...]:
        """Per stage, the factor its forward and backward were slowed down by (the straggler's)."""
        out = [1.0] * self.stages
        if self.straggler is not None:
            out[self.straggler[0]] = self.straggler[1]
        return tuple(out)

    def run_parts(self, microbatches: int, recompute: bool = False) -> dict[str, float]:
        """Per cost field, what a run of `microbatches` spends on it, every operation at
        its longest: at most S * M forwards and backwards (a recomputing backward reruns
        the forward) with a `comm` wait each, S * M steps, M AVGs (an AVG sends at most
        the whole model: `Rules.avg_share` <= 1)."""
        S, M, j = self.stages, microbatches, self.jitter
        return {  # a sum that overflows is inf, as NumPy's was (its warning was silenced)
            "forward": M * numpy_sum(self.forward) * (1 + j) * (2 if recompute else 1),
            "backward": M * numpy_sum(self.backward) * (1 + j),
            "comm": 2 * S * M * self.comm,
            "update": S * M * self.update,
            "allreduce": M * self.allreduce,
        }

    def longest_run(self, microbatches: int, recompute: bool = False) -> float:
        """A run of `microbatches` lasts no longer than its operations one after another.

        For a simulation of rules (`simulate._simulate`) it is a bound: every
        operation starts at 0 or at the end of an earlier one (its stage's
        last, a neighbour's F or B plus `comm`, a group's last, an AVG), so
        following from any operation the one it waited for back to time 0
        passes through distinct operations, each at most its `run_parts` share.
        """
        return _total(self.run_parts(microbatches, recompute))

    def clock_check(self, microbatches: int, recompute: bool = False) -> tuple[str, str] | None:
        """(cost field to blame, why) when a run of `microbatches` cannot be timed in float64.

        The run cannot last longer than its operations one after another; the
        clock must hold that length and still tell the shortest operation apart.
        """
        parts = self.run_parts(microbatches, recompute)
        longest = _total(parts)
        shortest = min(*self.forward, *self.backward) * (1 - self.jitter)
        problem = _clock_problem(longest, shortest)
        if problem is None:
            return None
        return max(parts, key=lambda k: parts[k]), problem

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
        weight_grad: Sequence[float] | None = None,
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
        wg = None
        if weight_grad is not None:  # W may take no time; I = backward - W must
            wg = _weight_grad(weight_grad, bwd, straggler)
        return cls(
            forward=tuple(fwd),
            backward=tuple(bwd),
            comm=_nonnegative("comm", comm),
            update=_nonnegative("update", update),
            allreduce=_nonnegative("allreduce", allreduce),
            jitter=float(jitter),
            seed=int(seed),
            straggler=None if straggler is None else (int(straggler[0]), float(straggler[1])),
            weight_grad=wg,
        )


def _weight_grad(
    weight_grad: Sequence[float], backward: list[float], straggler: tuple[int, float] | None
) -> tuple[float, ...]:
    """A model's W times per stage (slowed down as the straggler's backward), checked."""
    import numpy as np  # here: only a model's costs give W (hardware/costs.py computes with it)

    wg = np.asarray(weight_grad, dtype=np.float64)
    if straggler is not None:
        wg[straggler[0]] *= straggler[1]
    bad = ~(np.isfinite(wg) & (wg >= 0) & (wg < np.asarray(backward)))
    stages = len(backward)
    if wg.shape != (stages,) or bad.any():
        r = int(np.argmax(bad)) if wg.shape == (stages,) else 0
        raise InputError("weight_grad", f"one time per stage in [0, backward), got "
                         f"{_fmt(list(wg.ravel()))} (stage {r})")  # fmt: skip
    return tuple(float(v) for v in wg)
