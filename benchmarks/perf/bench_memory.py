"""Memory in bytes against the rest of `pipebench schedule`: p = 64, 100,000 micro-batches.

Run:  python benchmarks/perf/bench_memory.py [--stages 64] [--microbatches 100000]

For each schedule, in one warmed-up process and back to back (best of
--repeats, CPU time of the process, so that other work on a loaded machine
counts less): what `pipebench schedule` does without sizes (simulate, then
the statistics) and what bytes add (`timeline.memory.memory_profile` of
GPT-2 medium's sizes on the chunks). The target (issue 15): under 10% added.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pipebench.hardware.model import model_preset
from pipebench.hardware.sizes import chunk_sizes
from pipebench.timeline import CostModel, build_timeline, stats_of
from pipebench.timeline.memory import ChunkBytes, memory_profile


def sizes_for(stages: int) -> ChunkBytes:
    """GPT-2 medium's chunk sizes, its layers spread over `stages` (round-robin remainder)."""
    model = model_preset("gpt2-medium", layers=max(24, stages))
    split = np.full(stages, model.layers // stages)
    split[: model.layers % stages] += 1
    s = chunk_sizes(model, split, "bf16")
    return ChunkBytes.of(s.params, s.act_bytes, s.w_bytes, s.send_bytes, "adamw", "bf16")


def measure(name: str, stages: int, microbatches: int, repeats: int) -> dict:
    costs = CostModel.build(stages)
    chunks = sizes_for(stages)
    warm = build_timeline(name, costs, 4 * stages)  # compile or load everything
    stats_of(warm)
    memory_profile(warm, chunks)
    base, added = [], []
    for _ in range(repeats):
        t0 = time.process_time()
        trace = build_timeline(name, costs, microbatches)
        stats_of(trace)
        t1 = time.process_time()
        peak = memory_profile(trace, chunks).peak
        t2 = time.process_time()
        base.append(t1 - t0)
        added.append(t2 - t1)
        rows = trace.n_ops
        del trace
    return {
        "schedule": name,
        "rows": rows,
        "schedule_cpu_s": round(min(base), 3),
        "memory_cpu_s": round(min(added), 3),
        "added": round(min(added) / min(base), 4),
        "peak_gb_rank0": round(float(peak[0]) / 1e9, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=64)
    parser.add_argument("--microbatches", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--schedules", default="1f1b-flush,pd")
    args = parser.parse_args()
    for name in args.schedules.split(","):
        print(json.dumps(measure(name, args.stages, args.microbatches, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
