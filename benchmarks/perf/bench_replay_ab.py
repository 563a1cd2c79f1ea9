"""Replay CPU seconds and a hash of the curve, for comparing two checkouts back to back.

Run:  python benchmarks/perf/bench_replay_ab.py [CASE ...]
      PYTHONPATH=<other checkout> python benchmarks/perf/bench_replay_ab.py [CASE ...]
(from a folder that does not shadow the checkout under test). CPU time
(`process_time`), best of the repeats after one warm-up run, is less
sensitive than wall time to a machine shared with other work; the hash of
the loss curve, update counts and final model must be the same on both.
Cases: pd on the random quadratic of bench_replay (S = 16 and 128), rpd on
logistic regression, pd and rpd on the residual MLP.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import pipebench
from pipebench.api import load_experiment
from pipebench.engine.replay import replay, size_replay
from pipebench.timeline.budget import timeline_for

QUADRATIC = "{kind: quadratic, examples: 600, dim: 512, batch_size: 10}"
LOGISTIC = "{kind: logistic, examples: 600, dim: 512, batch_size: 10}"
MLP = (
    "{kind: mlp, task: regression, width: 64, inputs: 16, outputs: 4, examples: 1024,"
    " batch_size: 16}"
)
# name: (schedule, objective, stages, micro-batches, repeats)
CASES = {
    "pd_quad_S16": ("pd", QUADRATIC, 16, 1600, 7),
    "pd_quad_S128": ("pd", QUADRATIC, 128, 8000, 3),
    "rpd_logistic_S32": ("rpd", LOGISTIC, 32, 4000, 3),
    "pd_mlp_S8": ("pd", MLP, 8, 400, 3),
    "rpd_mlp_S8": ("rpd", MLP, 8, 400, 3),
}
SCENARIO = """
name: bench
seeds: [0]
objective: {objective}
pipeline: {{stages: {stages}}}
budget: {{microbatches: {microbatches}}}
record: {{points: 200}}
optimizer: {{name: sgd, lr: 0.001}}
schedules: [{schedule}]
"""


def measure(name: str) -> dict:
    schedule, objective, stages, microbatches, repeats = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(
            SCENARIO.format(
                objective=objective, stages=stages, microbatches=microbatches, schedule=schedule
            )
        )
        exp = load_experiment(path)
    entry = exp.entries[0]
    hyper, objective, code = entry.hyper(0.001), exp.objective_of(entry), entry.optimizer_code
    timeline, until, iterations = timeline_for(entry.setup, exp.costs, "microbatches", microbatches)
    prepared = size_replay(timeline, until, iterations)
    replay(prepared, objective, code, hyper, 0, 200)  # compiles, or loads from the cache
    cpu, wall = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        curve = replay(prepared, objective, code, hyper, 0, 200)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    digest = hashlib.sha256(
        curve.loss.tobytes() + curve.model.tobytes() + curve.updates.tobytes()
    ).hexdigest()
    return {"best_cpu": round(min(cpu), 4), "best_wall": round(min(wall), 4), "hash": digest[:12]}


def main() -> None:
    report = {"checkout": str(Path(pipebench.__file__).parent)}
    for name in sys.argv[1:] or list(CASES):
        report[name] = measure(name)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
