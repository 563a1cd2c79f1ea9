"""Schedules written as per-rank programs, one file each (see base.py for the form).

The greedy schedules (gpipe, 1f1b-flush, pd, ...) are rules read by the
event simulator in pipebench/timeline; these are the orders practitioners
run today, as PyTorch, Megatron-LM and the zero-bubble and DualPipe projects
write them. Adding one: a file with a `build(ranks, options) -> Program` and
its `SCHEDULE`, listed here.
"""

from pipebench.schedules import dualpipev, interleaved, torch_csv, zb_h1, zb_h2, zbv

PROGRAM_SCHEDULES = (
    zb_h1.SCHEDULE,
    zb_h2.SCHEDULE,
    interleaved.SCHEDULE,
    zbv.SCHEDULE,
    dualpipev.SCHEDULE,
    torch_csv.SCHEDULE,
)
PROGRAM_NAMES = tuple(schedule.name for schedule in PROGRAM_SCHEDULES)
