"""A schedule as a program: for each rank, the ordered actions of one mini-batch.

This is the form torch.distributed.pipelining and the zero-bubble and DualPipe
projects write their schedules in: rank r runs `2F0, 2I0, 2W0, ...` (chunk,
kind, micro-batch) in exactly that order, each action as soon as its inputs
have arrived. A schedule file only computes these lists (`ProgramBuilder`
keeps the per-chunk micro-batch counters); `timeline/program.py` times any of
them under a cost model, mini-batch after mini-batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pipebench.errors import InputError
from pipebench.schedules.kinds import (
    BACKWARD,
    FORWARD,
    INPUT_GRAD,
    KIND_NAMES,
    PAIR_FORWARD,
    WEIGHT_GRAD,
)

if TYPE_CHECKING:  # NumPy loads where programs are built: `pipebench list` needs none
    import numpy as np


class Form(Protocol):
    """What a schedule is once resolved for a pipeline, whatever its form (greedy rules,
    `timeline.schedule.Rules`, or a `Program`): what the budget, the memory checks
    and the replay read of it."""

    @property
    def unit(self) -> int: ...  # micro-batches per mini-batch, group or round

    @property
    def chunks(self) -> int: ...  # blocks the objective is cut into

    @property
    def recompute(self) -> bool: ...  # a backward first reruns its stage's forward

    def replay_shape(self, microbatches: int) -> tuple[int, int, int]: ...


@dataclass(frozen=True)
class Schedule:
    """A named schedule: its description, its options with defaults, and how to build it.

    The greedy schedules (pipebench/timeline) give `rules`, the programs (this
    package) a `program`, rpd neither (it is not a timeline).
    """

    name: str
    summary: str
    synchronous: bool
    # Options and their defaults as plain expressions of S (called with the
    # symbol "S" too, to spell defaults out in `pipebench list`).
    defaults: Callable[[int | str], dict[str, object]] = field(default=lambda stages: {})
    rules: Callable[[int, dict[str, object]], Form] | None = None
    program: Callable[[int, dict[str, object]], Program] | None = None

    def form(self, stages: int, options: dict[str, object]) -> Form | None:
        """What the schedule is on `stages` ranks with `options`: rules for the greedy
        simulator, a program for the program executor, None for rpd's iteration plan."""
        build = self.rules or self.program
        return None if build is None else build(stages, options)


# Program actions: F, B (full backward), I, W, and an F&B pair, stored under
# PAIR_FORWARD with the backward's chunk and micro-batch beside the forward's.
PAIR = PAIR_FORWARD
ACTION_NAMES = {FORWARD: "F", BACKWARD: "B", INPUT_GRAD: "I", WEIGHT_GRAD: "W", PAIR: "F&B"}


@dataclass(frozen=True, eq=False)
class Program:
    """Per-rank action lists of one mini-batch of `microbatches` micro-batches.

    Rank r's actions are rows `offsets[r]:offsets[r+1]` of `kind`, `chunk`,
    `mb` (micro-batch within the mini-batch); for an F&B pair `chunk`/`mb` are
    the forward's and `pair_chunk`/`pair_mb` the full backward's (-1 otherwise).
    `flush`: the next mini-batch starts only after every rank stepped; without
    it a rank starts the next mini-batch right after its own step.
    """

    chunk_rank: np.ndarray
    microbatches: int
    kind: np.ndarray
    chunk: np.ndarray
    mb: np.ndarray
    pair_chunk: np.ndarray
    pair_mb: np.ndarray
    offsets: np.ndarray
    flush: bool = True

    @property
    def ranks(self) -> int:
        return len(self.offsets) - 1

    @property
    def chunks(self) -> int:
        return len(self.chunk_rank)

    @property
    def unit(self) -> int:
        """A run is a whole number of mini-batches."""
        return self.microbatches

    recompute = False  # no pass reruns a forward

    def replay_shape(self, microbatches: int) -> tuple[int, int, int]:
        """(replicas, weight versions, micro-batches in flight) a replay holds, at most.

        Every pass reads its chunk's current version (two while a step runs); a
        mini-batch is in flight, two when ranks do not wait for each other (zb-h2).
        """
        per_batch = 1 if self.flush else 2
        return 1, 2, min(per_batch * self.microbatches, microbatches)

    def rank_actions(self, rank: int) -> list[str]:
        """Rank `rank`'s actions as text, PyTorch's way (`2F0`, `1I3`; F&B as `(0F4;3B1)`)."""
        out = []
        for a in range(self.offsets[rank], self.offsets[rank + 1]):
            k, c, m = int(self.kind[a]), int(self.chunk[a]), int(self.mb[a])
            if k == PAIR:
                out.append(f"({c}F{m};{int(self.pair_chunk[a])}B{int(self.pair_mb[a])})")
            else:
                out.append(f"{c}{KIND_NAMES[k]}{m}")
        return out


def looped_placement(ranks: int, per_rank: int) -> np.ndarray:
    """Chunk c on rank c mod p (Megatron's interleaving)."""
    import numpy as np

    return np.arange(ranks * per_rank, dtype=np.int64) % ranks


def v_placement(ranks: int) -> np.ndarray:
    """Two chunks per rank in a V: rank r holds chunks r and 2p - 1 - r."""
    import numpy as np

    down = np.arange(ranks, dtype=np.int64)
    return np.concatenate([down, down[::-1]])


class ProgramBuilder:
    """Per-rank action lists, numbering each chunk's micro-batches as they are added.

    As in PyTorch's schedule builders, F, I and W of a chunk each count their
    own micro-batches; a full backward B (or an F&B pair's backward) counts as
    both I and W. `queue_w` and `pop_w` keep the I's whose W is deferred.
    """

    def __init__(self, chunk_rank: np.ndarray, microbatches: int) -> None:
        self.chunk_rank = chunk_rank
        self.microbatches = microbatches
        self.ranks: list[list[tuple[int, int, int, int, int]]] = [
            [] for _ in range(int(chunk_rank.max()) + 1)
        ]
        self._next: defaultdict[tuple[str, int], int] = defaultdict(int)
        self._deferred: list[list[tuple[int, int]]] = [[] for _ in self.ranks]

    def _take(self, counter: str, chunk: int) -> int:
        mb = self._next[counter, chunk]
        self._next[counter, chunk] = mb + 1
        return mb

    def _add(self, kind: int, chunk: int, mb: int, pair: tuple[int, int] = (-1, -1)) -> None:
        self.ranks[int(self.chunk_rank[chunk])].append((kind, chunk, mb, *pair))

    def f(self, chunk: int) -> None:
        self._add(FORWARD, chunk, self._take("F", chunk))

    def b(self, chunk: int) -> None:
        self._take("W", chunk)
        self._add(BACKWARD, chunk, self._take("I", chunk))

    def i(self, chunk: int, defer_w: bool = False) -> None:
        mb = self._take("I", chunk)
        self._add(INPUT_GRAD, chunk, mb)
        if defer_w:
            self._deferred[int(self.chunk_rank[chunk])].append((chunk, mb))

    def w(self, chunk: int) -> None:
        self._add(WEIGHT_GRAD, chunk, self._take("W", chunk))

    def forwards(self, chunk: int) -> int:
        """Forwards of `chunk` in the program so far."""
        return self._next["F", chunk]

    def pending_w(self, chunk: int) -> int:
        """I's of `chunk` so far whose W is not yet in the program."""
        return self._next["I", chunk] - self._next["W", chunk]

    def pop_w(self, rank: int) -> None:
        """The W of the oldest I on `rank` whose W was deferred, if any."""
        if self._deferred[rank]:
            chunk, mb = self._deferred[rank].pop(0)
            self._take("W", chunk)
            self._add(WEIGHT_GRAD, chunk, mb)

    def pair(self, forward_chunk: int, backward_chunk: int) -> None:
        """An F&B: a forward of one chunk overlapped with a full backward of another."""
        fmb = self._take("F", forward_chunk)
        self._take("W", backward_chunk)
        bmb = self._take("I", backward_chunk)
        self._add(PAIR, forward_chunk, fmb, (backward_chunk, bmb))

    def done(self, flush: bool = True) -> Program:
        """The program, keeping only actions on micro-batches of this mini-batch."""
        import numpy as np

        m = self.microbatches
        rows = [[a for a in actions if a[2] < m] for actions in self.ranks]
        flat = np.array([a for actions in rows for a in actions], dtype=np.int64).reshape(-1, 5)
        offsets = np.concatenate([[0], np.cumsum([len(actions) for actions in rows])])
        return Program(
            chunk_rank=self.chunk_rank,
            microbatches=m,
            kind=flat[:, 0].astype(np.int8),
            chunk=flat[:, 1],
            mb=flat[:, 2],
            pair_chunk=flat[:, 3],
            pair_mb=flat[:, 4],
            offsets=offsets.astype(np.int64),
            flush=flush,
        )


def program_problem(program: Program) -> str | None:
    """Why `program` is not a valid mini-batch, or None.

    Every (chunk, micro-batch) gets one forward and either one full backward
    or one I and one W, all on the rank holding the chunk, in the order
    F, then I or B, then W.
    """
    import numpy as np

    C, m = program.chunks, program.microbatches
    seen = np.full((3, C, m), -1, dtype=np.int64)  # position of F, of I/B, of W
    for r in range(program.ranks):
        for pos, a in enumerate(range(program.offsets[r], program.offsets[r + 1])):
            k = int(program.kind[a])
            parts = [(0, program.chunk[a], program.mb[a])]
            if k == PAIR:
                parts.append((3, program.pair_chunk[a], program.pair_mb[a]))
            elif k != FORWARD:
                slot = {BACKWARD: 3, INPUT_GRAD: 1, WEIGHT_GRAD: 2}[k]
                parts = [(slot, program.chunk[a], program.mb[a])]
            for slot, c, mb in parts:
                if not (0 <= c < C and 0 <= mb < m):
                    return f"rank {r}: action {pos} names chunk {c}, micro-batch {mb}"
                if program.chunk_rank[c] != r:
                    return f"rank {r}: chunk {c} runs on rank {program.chunk_rank[c]}"
                for s in (1, 2) if slot == 3 else (slot,):
                    if seen[s, c, mb] >= 0:
                        return f"chunk {c}, micro-batch {mb}: a second {'FIW'[s]}"
                    seen[s, c, mb] = pos
    if np.any(seen < 0):
        s, c, mb = (int(x[0]) for x in np.nonzero(seen < 0))
        return f"chunk {c}, micro-batch {mb}: no {'FIW'[s]}"
    if np.any(seen[1] < seen[0]) or np.any(seen[2] < seen[1]):
        return "a backward runs before its forward, or a W before its I"
    return None


def deadlock_problem(program: Program) -> str | None:
    """Where `program` waits forever, or None: each rank runs its actions in order once
    their inputs exist (F(c-1, m) before F(c, m); the gradient of c+1 before I or B of c)."""
    C = program.chunks
    done_f: set[tuple[int, int]] = set()
    done_b: set[tuple[int, int]] = set()
    at = list(program.offsets[:-1])
    end = program.offsets[1:]
    progress = True
    while progress:
        progress = False
        for r in range(program.ranks):
            while at[r] < end[r]:
                a = at[r]
                k, c, m = int(program.kind[a]), int(program.chunk[a]), int(program.mb[a])
                if k in (FORWARD, PAIR) and c > 0 and (c - 1, m) not in done_f:
                    break
                bc, bm = (
                    (int(program.pair_chunk[a]), int(program.pair_mb[a])) if k == PAIR else (c, m)
                )
                if k in (BACKWARD, INPUT_GRAD, PAIR) and bc < C - 1 and (bc + 1, bm) not in done_b:
                    break
                if k in (FORWARD, PAIR):
                    done_f.add((c, m))
                if k in (BACKWARD, INPUT_GRAD, PAIR):
                    done_b.add((bc, bm))
                at[r] += 1
                progress = True
    stuck = [r for r in range(program.ranks) if at[r] < end[r]]
    if not stuck:
        return None
    waits = ", ".join(
        f"rank {r} at {program.rank_actions(r)[at[r] - program.offsets[r]]}" for r in stuck
    )
    return f"the order deadlocks: {waits} wait for inputs that never come"


# Programs are built in Python, one mini-batch at a time: ranks x micro-batches per
# mini-batch at most this (a few seconds to build; runs repeat the mini-batch).
MAX_PROGRAM = 2_000_000


def check_accumulate(
    name: str, ranks: int, options: dict[str, object], least: int, multiple: int = 1
) -> int:
    """The mini-batch size, refused with the schedule's own limit."""
    m = int(options["accumulate"])
    if m < least or m % multiple:
        need = f">= {least}" + (f" and a multiple of {multiple}" if multiple > 1 else "")
        raise InputError("accumulate", f"{name} needs a mini-batch {need}, got {m}")
    if ranks * m > MAX_PROGRAM:
        raise InputError(
            "accumulate",
            f"{name}: a program of {ranks} ranks x {m} micro-batches is too large to build "
            f"(at most {MAX_PROGRAM:,} rank micro-batches per mini-batch)",
        )
    return m


def times_ranks(factor: int, stages: int | str) -> int | str:
    """`factor` times the rank count, or its spelling (`2S`) when defaults are listed."""
    return factor * stages if isinstance(stages, int) else f"{factor}{stages}"


def program_schedule(
    name: str,
    summary: str,
    defaults: Callable[[int | str], dict[str, object]],
    build: Callable[[int, dict[str, object]], Program],
) -> Schedule:
    """A synchronous schedule given as a program (mini-batch SGD over `accumulate`)."""
    return Schedule(name=name, summary=summary, synchronous=True, defaults=defaults, program=build)
