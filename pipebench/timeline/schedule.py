"""What a schedule is to the simulator: a handful of rules, plus its options.

Every greedy schedule of docs/schedules.md reduces to the same few knobs (how
many micro-batches a stage may hold, how many backwards an update sums,
whether mini-batches are separated by a flush or an averaging round, which
weight version a pass reads). A schedule file fills them in; the simulator
in `simulate.py` is shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipebench.schedules.base import Form

# How mini-batches (groups of micro-batches) are separated.
BARRIER_NONE = 0  # micro-batches stream through
BARRIER_FLUSH = 1  # the next group enters only after every stage stepped
BARRIER_AVERAGE = 2  # after every stage stepped, AVG averages the replicas

# Which version of the stage's block a pass reads.
VERSIONS_STASH = 0  # F reads the current version; B reuses the forward's (stashed) copy
VERSIONS_CURRENT = 1  # F and B each read the version current when they run
VERSIONS_TWO_BW = 2  # micro-batch k reads max(k // accumulate - 1, 0) in both passes


@dataclass(frozen=True, eq=False)
class Rules:
    """The simulator's view of a schedule."""

    cap: tuple[int, ...]  # per stage: most micro-batches forwarded there but not yet backwarded
    accumulate: int = 1  # backwards (of one replica) summed by each optimizer step
    group: int = 0  # micro-batches per mini-batch or LocalSGD round; 0 = no groups
    barrier: int = BARRIER_NONE
    forwards_first: bool = False  # GPipe: all forwards of a group before any backward
    replicas: int = 1  # micro-batch m belongs to replica m % replicas
    chain_replicas: bool = False  # F(s, m) waits for B(s, m - replicas): no staleness
    versions: int = VERSIONS_STASH
    recompute: bool = False  # the backward first reruns the stage's forward
    avg_share: float = 1.0  # the share of the model one AVG sends (its all-reduce cost)
    avg_overlap: int = 0  # inner steps an AVG overlaps (streaming DiLoCo's τ; 0: it blocks)
    avg_fragments: int = 1  # AVG round k syncs the stages s with s mod F = k mod F

    @property
    def chunks(self) -> int:
        """Model chunks: one per stage."""
        return len(self.cap)

    @property
    def unit(self) -> int:
        """Micro-batches per mini-batch, update group or round."""
        return max(self.group, self.accumulate, 1)

    def replay_shape(self, microbatches: int) -> tuple[int, int, int]:
        """(replicas, weight versions, micro-batches in flight) a replay holds, at most."""
        inflight = min(max(self.cap), microbatches)
        # a stage reads versions at most `inflight` steps old; 2BW reads one of two, and
        # without staleness (flushes, chained replicas) only the current one is read
        if self.versions == VERSIONS_TWO_BW:
            versions = 3
        elif self.barrier != BARRIER_NONE or self.chain_replicas:
            versions = 2
        else:
            versions = inflight + 2
        return self.replicas, versions, inflight


def one_f_one_b_caps(stages: int, inflight: object = "per-stage") -> tuple[int, ...]:
    """The 1F1B in-flight limit: stage s holds at most S - s micro-batches.

    With `inflight: input` only stage 0 holds at most S (PipeDream's NOAM
    limit, as in the Randomized PipeDream simulator). A later stage then
    needs no cap of its own: it can only hold micro-batches that stage 0
    forwarded and has not yet backwarded, so a cap of S there never binds.
    """
    if inflight == "input":
        return (stages,) * stages
    return tuple(range(stages, 0, -1))


@dataclass(frozen=True, eq=False)
class Setup:
    """A schedule resolved once for a pipeline (`registry.setup_schedule`): what every
    later step reads, whatever form the schedule has."""

    name: str
    stages: int
    given: dict[str, object]  # the options as given (the rest are the schedule's defaults)
    options: dict[str, object]  # every option it takes, defaults filled in
    # how it is timed: rules (the greedy simulator) or a program (the program executor);
    # None for rpd, which is not a timeline
    form: Form | None

    @property
    def unit(self) -> int:
        """Micro-batches per mini-batch, update group or round: the unit a run is rounded to."""
        return 1 if self.form is None else self.form.unit

    @property
    def chunks(self) -> int:
        """Blocks the objective is cut into: one per stage, or a program's chunks."""
        return self.stages if self.form is None else self.form.chunks

    @property
    def recompute(self) -> bool:
        """Whether a backward first reruns its stage's forward (paci's option)."""
        return self.form is not None and self.form.recompute

    def replay_shape(self, microbatches: int) -> tuple[int, int, int]:
        """(replicas, weight versions, micro-batches in flight) a replay holds, at most."""
        if self.form is None:  # rpd: one model, its iterates back to the delay bound
            delta = self.options["delta"]
            bound = auto_delta(self.stages) if delta == "auto" else int(delta)
            return 1, min(bound, self.stages * microbatches) + 1, 1
        return self.form.replay_shape(microbatches)


def auto_delta(stages: int) -> int:
    """The steady-state PipeDream delay floor(S^2 - S/2), RPD's default bound."""
    return math.floor(stages * stages - stages / 2)
