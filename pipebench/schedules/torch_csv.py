"""Any schedule PyTorch can write: a compute_only CSV read back as a program.

`torch.distributed.pipelining` dumps a schedule as one CSV row per rank of
actions `<stage><F|B|I|W><micro-batch>` and F&B pairs `(0F7;7B3)OVERLAP_F_B`
(`pipebench schedule --torch-csv FILE` writes the same). Read back, the rows
are a program for one mini-batch: stages are chunks, each placed on the rank
whose row runs it, micro-batches 0..m-1; it runs with a flush between
mini-batches, as PyTorch's `step()` does.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from pipebench.errors import InputError
from pipebench.schedules.base import (
    PAIR,
    Program,
    Schedule,
    deadlock_problem,
    program_problem,
)
from pipebench.schedules.kinds import BACKWARD, FORWARD, INPUT_GRAD, WEIGHT_GRAD

# PyTorch's action pattern narrowed to the computations pipebench has: `F`,
# full backward `B`, input gradient `I`, weight gradient `W`, with a micro-batch
# index, and an F&B pair as PyTorch writes it, `(0F7;7B3)OVERLAP_F_B`. ASCII
# digits only, where PyTorch's `\d` would also take other scripts' digits.
_ACTION = re.compile(r"([0-9]+)(F|B|I|W)([0-9]+)")
_PAIR = re.compile(r"\(([0-9]+)F([0-9]+);([0-9]+)B([0-9]+)\)OVERLAP_F_B")

_KINDS = {"F": FORWARD, "B": BACKWARD, "I": INPUT_GRAD, "W": WEIGHT_GRAD, "F&B": PAIR}


def parse_torch_csv(text: str) -> list[list[tuple]]:
    """Per row (rank), its actions as (stage, "F", "B", "I" or "W", micro-batch), and
    F&B pairs as (stage, "F&B", micro-batch, backward's stage, backward's micro-batch).

    Reads what `torch_csv_text` writes and PyTorch's own compute-only dumps:
    surrounding spaces are stripped and empty cells (PyTorch's idle slots)
    skipped, as `_Action.from_str` does. Any other cell, including PyTorch
    actions pipebench has no equivalent for (UNSHARD, SEND_F, ...), is an
    `InputError` naming its row and cell (both counted from 1).
    """
    ranks: list[list[tuple]] = []
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise InputError("torch-csv", f"line {reader.line_num}: not CSV ({exc})") from None
    for row_no, row in enumerate(rows, start=1):
        actions = []
        for cell_no, cell in enumerate(row, start=1):
            action = cell.strip()
            if not action:
                continue
            match = _ACTION.fullmatch(action)
            pair = _PAIR.fullmatch(action)
            if match is None and pair is None:
                raise InputError(
                    "torch-csv",
                    f"row {row_no}, cell {cell_no}: {cell!r} is not an action "
                    "<stage><F, B, I or W><micro-batch> (e.g. 0F3) or an F&B pair "
                    "(0F7;7B3)OVERLAP_F_B",
                )
            if pair is not None:
                fs, fm, bs, bm = (int(x) for x in pair.groups())
                actions.append((fs, "F&B", fm, bs, bm))
                continue
            stage, kind, mb = match.groups()
            actions.append((int(stage), kind, int(mb)))
        ranks.append(actions)
    return ranks


def program_from_rows(rows: list[list[tuple]]) -> Program:
    """The program of `parse_torch_csv`'s rows; an `InputError` says what is wrong."""
    import numpy as np

    placed: dict[int, int] = {}
    flat = []
    offsets = [0]
    for r, actions in enumerate(rows):
        for action in actions:
            stages = (action[0], action[3]) if action[1] == "F&B" else (action[0],)
            for stage in stages:
                if placed.setdefault(stage, r) != r:
                    raise InputError(
                        "torch-csv", f"stage {stage} runs on rows {placed[stage] + 1} and {r + 1}"
                    )
            fs, kind, fm, *pair = action
            bs, bm = pair if pair else (-1, -1)
            flat.append((_KINDS[kind], fs, fm, bs, bm))
        offsets.append(len(flat))
    if not flat:
        raise InputError("torch-csv", "the file holds no actions")
    chunks = max(placed) + 1
    missing = sorted(set(range(chunks)) - set(placed))
    if missing:
        raise InputError(
            "torch-csv", f"stages 0..{chunks - 1} expected; stage {missing[0]} has no action"
        )
    table = np.array(flat, dtype=np.int64)
    program = Program(
        chunk_rank=np.array([placed[c] for c in range(chunks)], dtype=np.int64),
        microbatches=int(max(table[:, 2].max(), table[:, 4].max())) + 1,
        kind=table[:, 0].astype(np.int8),
        chunk=table[:, 1],
        mb=table[:, 2],
        pair_chunk=table[:, 3],
        pair_mb=table[:, 4],
        offsets=np.array(offsets, dtype=np.int64),
    )
    problem = program_problem(program) or deadlock_problem(program)
    if problem is not None:
        raise InputError("torch-csv", problem)
    return program


def build(ranks: int, options: dict[str, object]) -> Program:
    path = Path(str(options["path"]))
    if not options["path"]:
        raise InputError("path", "torch-csv reads a file: give --torch-csv-in FILE (path: FILE)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("path", f"cannot read {str(path)!r}: {exc}") from None
    program = program_from_rows(parse_torch_csv(text))
    if program.ranks != ranks:
        raise InputError("stages", f"{str(path)!r} has {program.ranks} ranks (rows), not {ranks}")
    return program


SCHEDULE = Schedule(
    name="torch-csv",
    summary="a PyTorch compute_only CSV (one row per rank) run as a program; flush",
    synchronous=True,
    defaults=lambda stages: {"path": "", "weight_grad": "half", "overlap": "sum"},
    program=build,
)
