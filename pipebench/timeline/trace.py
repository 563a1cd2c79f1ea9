"""The output of a timeline simulation: flat NumPy arrays, nothing about losses.

A `Trace` is what the replay engine walks and what every timeline statistic
is computed from. Operations are stored in causal order (non-decreasing start
time; operations starting together are in stage order, and an operation that
another one waits on comes first), so walking the rows in order never reads
a weight version before the update that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

from pipebench.limits import Need

if TYPE_CHECKING:  # NumPy loads where traces are made and read: `validate` needs none
    import numpy as np

# Operation kinds, as stored in `Trace.kind` (defined with the schedules, which
# are written in them)
from pipebench.schedules.kinds import (
    AVERAGE as AVERAGE,
)
from pipebench.schedules.kinds import (
    BACKWARD as BACKWARD,
)
from pipebench.schedules.kinds import (
    FORWARD as FORWARD,
)
from pipebench.schedules.kinds import (
    INPUT_GRAD as INPUT_GRAD,
)
from pipebench.schedules.kinds import (
    KIND_NAMES as KIND_NAMES,
)
from pipebench.schedules.kinds import (
    PAIR_BACKWARD as PAIR_BACKWARD,
)
from pipebench.schedules.kinds import (
    PAIR_FORWARD as PAIR_FORWARD,
)
from pipebench.schedules.kinds import (
    UPDATE as UPDATE,
)
from pipebench.schedules.kinds import (
    WEIGHT_GRAD as WEIGHT_GRAD,
)

# Storage: stage and replica ids are int16, micro-batches int32; an operation
# row takes 33 bytes, an update row 16 more.
MAX_STAGES = 2**15 - 1
MAX_MICROBATCHES = 2**31 - 1
BYTES_PER_OP = 33
TRACE_BYTES_PER_OP = 3 * BYTES_PER_OP + 12  # F, B, one U per pair; the statistics' tables
OP_FIELDS = ("kind", "stage", "mb", "replica", "start", "end", "v_fwd", "v_bwd")
# the executors' dtypes (simulate.py, program.py): the replay kernels are compiled for them
OP_DTYPES = ("int8", "int16", "int32", "int16", "float64", "float64", "int32", "int32")
UPD_DTYPES = ("int64", "int32", "int32")  # upd_op, upd_first, upd_version


@dataclass(frozen=True, eq=False)
class Trace:
    """One simulated run of a schedule.

    Operation rows (length `n_ops`): `kind`, `stage` (-1 for AVG, which
    occupies every stage), `mb` (micro-batch; for U the last micro-batch the
    step sums; -1 for AVG), `replica` (-1 for AVG), `start`, `end`, `v_fwd`
    and `v_bwd` (the weight version of the stage's block read by the forward
    and multiplied by the backward; -1 on U and AVG rows).

    Update rows (length `n_updates`), in the global order of block updates
    (by end time, ties by stage): `upd_op` (row of the U operation),
    `upd_stage`, `upd_replica`, `upd_first` and `upd_last` (the contiguous
    micro-batches whose averaged gradient the step applies), `upd_version`
    (the stage's version after the step).
    """

    schedule: str
    stages: int
    microbatches: int
    replicas: int
    kind: np.ndarray
    stage: np.ndarray
    mb: np.ndarray
    replica: np.ndarray
    start: np.ndarray
    end: np.ndarray
    v_fwd: np.ndarray
    v_bwd: np.ndarray
    upd_op: np.ndarray
    upd_first: np.ndarray
    upd_version: np.ndarray
    recompute: bool = False  # a backward first reruns its stage's forward (paci's option)
    chunk_rank: np.ndarray | None = None

    @property
    def chunk(self) -> np.ndarray:
        """The model chunk of every row: the stage column under its program name."""
        return self.stage

    @property
    def ranks(self) -> int:
        """Devices: as many as stages unless chunks are placed on fewer ranks."""
        return self.stages if self.chunk_rank is None else int(self.chunk_rank.max()) + 1

    @cached_property
    def rank(self) -> np.ndarray:
        """The device of every row (-1 for AVG, which occupies every rank)."""
        import numpy as np

        if self.chunk_rank is None:
            return self.stage
        return np.where(self.stage >= 0, self.chunk_rank[self.stage], -1).astype(np.int16)

    # What the replay walks is a trace or rpd's plan; both answer the same few
    # questions (this class and `rpd.RpdPlan`), so that no caller asks which.
    is_timeline = True  # rpd's plan is not: it borrows pd's clock

    # The rest of an update row is its U operation's row; derived on first use
    # because a long trace holds tens of millions of updates.
    @cached_property
    def upd_stage(self) -> np.ndarray:
        return self.stage[self.upd_op]

    @cached_property
    def upd_replica(self) -> np.ndarray:
        return self.replica[self.upd_op]

    @cached_property
    def upd_last(self) -> np.ndarray:
        return self.mb[self.upd_op]

    @cached_property
    def upd_time(self) -> np.ndarray:
        """End time of each update, in update order (non-decreasing)."""
        return self.end[self.upd_op]

    @property
    def clock(self) -> Trace:
        """The operations on the clock: the trace itself."""
        return self

    @property
    def update_times(self) -> np.ndarray:
        """When each update ends, in order."""
        return self.upd_time

    def end_of(self, updates: int | None) -> tuple[float, int | None]:
        """When a run of the first `updates` updates (None: of the whole trace) stops, and
        the iterations its replay walks (None: the rows that start by then)."""
        return (self.makespan if updates is None else float(self.upd_time[updates - 1])), None

    def reseeded(self, seed: int) -> Trace:
        """The timeline a run with `seed` walks: a trace draws nothing, so itself."""
        return self

    def cut(self, until: float, iterations: int | None = None) -> Trace:
        """The operations that have ended by `until`, with their update rows.

        The micro-batch count stays that of the simulated trace: a run cut by a
        budget has no drain, so its steady state extends to the cut.
        """
        keep = self.end <= until
        return self if keep.all() else self.subset(keep)

    @property
    def n_ops(self) -> int:
        return len(self.kind)

    @property
    def n_updates(self) -> int:
        return len(self.upd_op)

    @property
    def makespan(self) -> float:
        return float(self.end.max()) if self.n_ops else 0.0

    def subset(self, keep: np.ndarray) -> Trace:
        """A new trace (copied arrays) of the operation rows where `keep` is true.

        Kept rows stay in causal order; update rows follow their U row. The
        micro-batch count is unchanged, so statistics keep their meaning.
        """
        import numpy as np

        new_row = np.cumsum(keep) - 1
        kept_updates = keep[self.upd_op]
        return replace(
            self,
            **{f: getattr(self, f)[keep] for f in OP_FIELDS},
            upd_op=new_row[self.upd_op[kept_updates]],
            upd_first=self.upd_first[kept_updates],
            upd_version=self.upd_version[kept_updates],
        )

    def rows(self, kind: int) -> np.ndarray:
        """Indices of the operation rows of one kind, in causal order."""
        import numpy as np

        return np.flatnonzero(self.kind == kind)

    def op_index(self, kind: int) -> np.ndarray:
        """(stages, microbatches) table of row indices of the F or B operations."""
        import numpy as np

        rows = self.rows(kind)
        table = np.full((self.stages, self.microbatches), -1, dtype=np.int64)
        table[self.stage[rows], self.mb[rows]] = rows
        return table


def trace_need(field: tuple | str, stages: int, microbatches: int) -> Need:
    """The memory a trace of S stages and M micro-batches takes (limits.py counts the rest)."""
    return Need(
        field,
        f"the operations of a trace of S={stages}, M={microbatches}",
        TRACE_BYTES_PER_OP * stages * microbatches,
    )
