"""Program executor against the greedy simulator: zbv vs pd, same ranks, same micro-batches.

Run:  python benchmarks/perf/bench_programs.py [--stages 64] [--microbatches 100000]

Both simulations run back to back in one warmed-up process (best of
--repeats); prints operations per second of each (trace rows: F, B, I, W,
F&B halves and steps) and their ratio. The target (issue 14): the program
executor at no less than half the greedy simulator's rate. zbv's mini-batch
is 2p micro-batches by default; --accumulate sets it (it must divide
--microbatches).
"""

from __future__ import annotations

import argparse
import json
import time

from pipebench.timeline import CostModel, build_timeline


def best_rate(name: str, costs: CostModel, microbatches: int, repeats: int, **options) -> dict:
    """Best-of-`repeats` build time of one trace, and its rows per second."""
    build_timeline(name, costs, 4 * options.get("accumulate", costs.stages), **options)  # compile
    times, rows = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        trace = build_timeline(name, costs, microbatches, **options)
        times.append(time.perf_counter() - t0)
        rows = trace.n_ops
        del trace
    best = min(times)
    return {"schedule": name, "ops": rows, "seconds": round(best, 3), "ops_per_s": rows / best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stages", type=int, default=64)
    parser.add_argument("--microbatches", type=int, default=100_000)
    parser.add_argument("--accumulate", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    costs = CostModel.build(args.stages)
    greedy = best_rate("pd", costs, args.microbatches, args.repeats)
    program = best_rate("zbv", costs, args.microbatches, args.repeats, accumulate=args.accumulate)
    ratio = program["ops_per_s"] / greedy["ops_per_s"]
    print(json.dumps({"pd": greedy, "zbv": program, "zbv/pd ops per second": round(ratio, 3)}))


if __name__ == "__main__":
    main()
