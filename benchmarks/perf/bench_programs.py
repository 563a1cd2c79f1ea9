"""Programs against the greedy schedules: simulation (zbv vs pd) and replay (vs gpipe).

Run:  python benchmarks/perf/bench_programs.py [--stages 64] [--microbatches 100000]
      python benchmarks/perf/bench_programs.py --replay [--repeats 3]

Simulation: both timelines back to back in one warmed-up process (best of
--repeats); prints operations per second of each (trace rows: F, B, I, W,
F&B halves and steps) and their ratio. The target (issue 14): the program
executor at no less than half the greedy simulator's rate. zbv's mini-batch
is --accumulate micro-batches (it must divide --microbatches).

Replay (--replay): the replay of synchronous programs against gpipe's, same
objective cut the same way, same mini-batch and micro-batches, back to back
in one warmed-up process; CPU time (the machine may be shared) per trace row
walked, best of --repeats. The target: a program's replay costs no more per
operation than gpipe's.
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

from pipebench.timeline import CostModel, build_timeline

# The replay's objectives: block-linear (random quadratic) and layered (the MLP).
QUADRATIC = {"kind": "quadratic", "variant": "random", "examples": 600, "dim": 512,
             "batch_size": 10, "sampling": "shuffle", "l2": 0.0, "grad_noise": 0.0, "seed": 0,
             "label_noise": 0.0, "mu": 0.01, "spectrum": None}  # fmt: skip
MLP = {"kind": "mlp", "task": "regression", "width": 32, "activation": "gelu", "inputs": 16,
       "outputs": 4, "classes": 3, "examples": 512, "batch_size": 8, "sampling": "shuffle",
       "label_noise": 0.0, "seed": 0}  # fmt: skip
# (program, gpipe's stage count): zb-h1 and interleaved-1f1b at one chunk per stage as
# gpipe has; zbv's 2p chunks against gpipe on 2p stages (the same cut of the model)
REPLAYED = (("zb-h1", {}, 1), ("interleaved-1f1b", {"chunks": 1}, 1), ("zbv", {}, 2))


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


def _replayer(name: str, objective, ranks: int, microbatches: int, **options):
    """(one replay of `name` as a function, trace rows it walks), compiled and warmed."""
    from pipebench.engine.replay import replay, size_replay
    from pipebench.optim import OPTIMIZERS, hyper_array
    from pipebench.timeline import setup_schedule
    from pipebench.timeline.budget import timeline_for

    setup = setup_schedule(name, ranks, options)
    timeline, until, _ = timeline_for(setup, CostModel.build(ranks), "microbatches", microbatches)
    sized = size_replay(timeline, until)
    sgd = OPTIMIZERS["sgd"]
    hyper = hyper_array(1e-3, sgd.defaults)

    def once() -> None:
        replay(sized, objective, sgd.code, hyper, 0, 100)

    once()  # compile
    return once, sized.length


def _cpu(work) -> float:
    t0 = time.process_time()
    work()
    return time.process_time() - t0


def replays(ranks: int, accumulate: int, microbatches: int, repeats: int) -> dict:
    """Each synchronous program's replay against gpipe's on the same cut, both objectives:
    the two alternate, best CPU time of `repeats` each."""
    from pipebench.objectives import build_objective

    out = {}
    for label, spec in (("quadratic", QUADRATIC), ("mlp", MLP)):
        for name, options, per_rank in REPLAYED:
            chunks = per_rank * ranks
            objective = build_objective(SimpleNamespace(**spec), chunks, None)
            runs = {
                "gpipe": _replayer("gpipe", objective, chunks, microbatches, accumulate=accumulate),
                name: _replayer(
                    name, objective, ranks, microbatches, accumulate=accumulate, **options
                ),
            }
            best = dict.fromkeys(runs, float("inf"))
            for _ in range(repeats):
                for which, (once, _) in runs.items():
                    best[which] = min(best[which], _cpu(once))
            row = {
                which: {"rows": rows, "cpu_s": round(best[which], 4),
                        "us_per_row": round(1e6 * best[which] / rows, 3),
                        "us_per_microbatch": round(1e6 * best[which] / microbatches, 2)}
                for which, (_, rows) in runs.items()
            }  # fmt: skip
            row["per row, program/gpipe"] = round(
                row[name]["us_per_row"] / row["gpipe"]["us_per_row"], 3
            )
            out[f"{label} {name}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replay", action="store_true", help="the replay benchmark instead")
    parser.add_argument("--stages", type=int, help="ranks (default 64; replay: 4)")
    parser.add_argument("--microbatches", type=int, help="default 100,000 (replay: 4,000)")
    parser.add_argument("--accumulate", type=int, help="mini-batch (default 200; replay: 8)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.replay:
        sizes = (args.stages or 4, args.accumulate or 8, args.microbatches or 4_000)
        print(json.dumps(replays(*sizes, args.repeats)))
        return
    args.stages = args.stages or 64
    args.microbatches = args.microbatches or 100_000
    args.accumulate = args.accumulate or 200
    costs = CostModel.build(args.stages)
    greedy = best_rate("pd", costs, args.microbatches, args.repeats)
    program = best_rate("zbv", costs, args.microbatches, args.repeats, accumulate=args.accumulate)
    ratio = program["ops_per_s"] / greedy["ops_per_s"]
    print(json.dumps({"pd": greedy, "zbv": program, "zbv/pd ops per second": round(ratio, 3)}))


if __name__ == "__main__":
    main()
