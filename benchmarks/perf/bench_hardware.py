"""What building a model's costs adds to `pipebench schedule`: p = 64, 100,000 micro-batches.

Run:  python benchmarks/perf/bench_hardware.py [--stages 64] [--microbatches 100000]

Times, in one warmed-up process and back to back (best of --repeats, CPU time
of the process), what `pipebench schedule NAME` computes: the costs, the
timeline and its statistics. Once from typed unit costs (`CostModel.build`),
once from a model on a GPU (GPT-2 XL's layer shape with 2 layers per stage on
an H200: the roofline, and the measured H200 profile); zb-h1 in mini-batches
of 200. The target (issue 15):
the model's costs add less than 10%.
"""

from __future__ import annotations

import argparse
import json
import time

from pipebench.hardware.gpus import GPUS
from pipebench.hardware.model import model_preset
from pipebench.scenario.hardware import build_machine
from pipebench.timeline import CostModel, build_timeline, stats_of


def schedule_seconds(name: str, make_costs, microbatches: int, repeats: int, **options) -> dict:
    """Best CPU seconds of costs + timeline + statistics, and of the costs alone."""
    build_timeline(name, make_costs(), 4 * options.get("accumulate", 64), **options)  # compile
    total, costs_only = [], []
    for _ in range(repeats):
        t0 = time.process_time()
        costs = make_costs()
        t1 = time.process_time()
        stats_of(build_timeline(name, costs, microbatches, **options))
        t2 = time.process_time()
        total.append(t2 - t0)
        costs_only.append(t1 - t0)
    return {"seconds": round(min(total), 3), "costs_seconds": round(min(costs_only), 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stages", type=int, default=64)
    parser.add_argument("--microbatches", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    S = args.stages
    model = model_preset("gpt2-xl", layers=2 * S, seq=1024, micro_batch=8)

    def unit() -> CostModel:
        return CostModel.build(S)

    def roofline() -> CostModel:
        return build_machine(model, GPUS["h200"], S).cost_model()

    def profiled() -> CostModel:
        return build_machine(model, GPUS["h200"], S, profile="h200").cost_model()

    out = {}
    for name, options in (("1f1b-flush", {}), ("zb-h1", {"accumulate": 200})):
        base = schedule_seconds(name, unit, args.microbatches, args.repeats, **options)
        row = {"unit costs": base}
        for label, make in (("roofline", roofline), ("h200 profile", profiled)):
            got = schedule_seconds(name, make, args.microbatches, args.repeats, **options)
            got["added"] = f"{got['seconds'] / base['seconds'] - 1:+.1%}"
            row[label] = got
        out[name] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
