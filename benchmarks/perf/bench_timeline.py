"""Timeline performance: simulate pd with S = 128 and 100,000 micro-batches.

Run:  python benchmarks/perf/bench_timeline.py [--stages 128] [--microbatches 100000]

Prints, for the record in benchmarks/perf/README.md:
- cold: a fresh process with an empty numba cache (compilation included),
- cache load: a fresh process whose numba cache is already filled,
- warm: the same simulation again in a process that has run it once,
- operations per second (warm), and the time of the statistics pass.
Memory first touched by a run counts: the trace is ~33 bytes per operation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from pipebench.timeline import CostModel, build_timeline, stats_of
t1 = time.perf_counter()
trace = build_timeline("pd", CostModel.build({stages}), {microbatches})
t2 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first_simulation": t2 - t1, "ops": trace.n_ops}}))
"""


def fresh_process(stages: int, microbatches: int, cache_dir: str) -> dict:
    """Time import and first simulation in a new interpreter using `cache_dir`."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    code = CHILD.format(stages=stages, microbatches=microbatches)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def warm(stages: int, microbatches: int, repeats: int) -> dict:
    """Best-of-`repeats` simulation and statistics time in this (warmed-up) process."""
    from pipebench.timeline import CostModel, build_timeline, stats_of

    costs = CostModel.build(stages)
    stats_of(build_timeline("pd", costs, 4 * stages))  # compile or load everything
    sim, stat = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trace = build_timeline("pd", costs, microbatches)
        t1 = time.perf_counter()
        result = stats_of(trace)
        t2 = time.perf_counter()
        sim.append(t1 - t0)
        stat.append(t2 - t1)
        del trace
    return {
        "ops": 3 * stages * microbatches,
        "simulate_best": min(sim),
        "simulate_all": sim,
        "stats_best": min(stat),
        "steady_max_delay": result.steady_max_delay,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=128)
    parser.add_argument("--microbatches", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cold = fresh_process(args.stages, args.microbatches, cache)
        cached = fresh_process(args.stages, args.microbatches, cache)
    hot = warm(args.stages, args.microbatches, args.repeats)
    report = {
        "stages": args.stages,
        "microbatches": args.microbatches,
        "operations": hot["ops"],
        "cold_first_simulation_s": round(cold["first_simulation"], 2),
        "cached_first_simulation_s": round(cached["first_simulation"], 2),
        "import_s": round(cached["import"], 2),
        "warm_simulation_s": round(hot["simulate_best"], 2),
        "warm_simulation_runs_s": [round(t, 2) for t in hot["simulate_all"]],
        "warm_ops_per_s": round(hot["ops"] / hot["simulate_best"]),
        "warm_stats_s": round(hot["stats_best"], 2),
        "steady_max_delay": hot["steady_max_delay"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
