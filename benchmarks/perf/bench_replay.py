"""Replay performance: the figures issue 3 asks for, printed as JSON for the README.

Run:  python benchmarks/perf/bench_replay.py [--skip-large] [--repeats 5]

- small: pd on the random quadratic (d = 512, 600 examples, batch 10), S = 16,
  1,600 micro-batches, 200 loss samples; one replay, warm (goal < 0.1 s);
- large: the same objective, S = 128, 100,000 micro-batches (goal < 10 s);
- grid: 10 learning rates x 5 seeds of `small` through the runner, on 1 and on
  2 threads, as a ratio to one single replay;
- cold / cache: a fresh process with an empty numba cache (compilation
  included) and one whose cache is filled, each running `small` once;
- quickstart: `pipebench run benchmarks/scenarios/quickstart.yaml`, end to
  end in a new process, warm cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
name: bench
seeds: {seeds}
objective: {{kind: quadratic, examples: 600, dim: 512, batch_size: 10}}
pipeline: {{stages: {stages}}}
budget: {{microbatches: {microbatches}}}
record: {{points: 200}}
optimizer: {{name: sgd, lr: {lr}}}
schedules: [pd]
"""


def experiment(stages: int, microbatches: int, seeds: list[int], lr: str):
    from pipebench.api import load_experiment

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(
            SCENARIO.format(stages=stages, microbatches=microbatches, seeds=seeds, lr=lr)
        )
        return load_experiment(path)


def one_replay(stages: int, microbatches: int, repeats: int) -> dict:
    """Timeline build, then the best of `repeats` replays of one run."""
    from pipebench.engine.replay import prepare, replay
    from pipebench.timeline.budget import timeline_for

    exp = experiment(stages, microbatches, [0], "0.001")
    entry = exp.entries[0]
    t0 = time.perf_counter()
    timeline, until, iterations = timeline_for("pd", {}, exp.costs, "microbatches", microbatches)
    prepared = prepare(timeline, until, iterations)
    t1 = time.perf_counter()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        curve = replay(prepared, exp.objective, 0, entry.hyper(0.001), 0, 200)
        times.append(time.perf_counter() - start)
    return {
        "stages": stages,
        "microbatches": microbatches,
        "operations": int(timeline.n_ops),
        "timeline_seconds": round(t1 - t0, 3),
        "replay_seconds_best": round(min(times), 4),
        "replay_seconds_all": [round(t, 4) for t in times],
        "final_loss": float(curve.loss[-1]),
    }


def grid(workers: int) -> float:
    """Wall time of 10 learning rates x 5 seeds of the small case (timeline built once)."""
    from pipebench.runner import run_experiment

    exp = experiment(16, 1600, [0, 1, 2, 3, 4], "'2^-14..2^-5'")
    start = time.perf_counter()
    outcomes, _ = run_experiment(exp, workers)
    assert len(outcomes) == 50
    return time.perf_counter() - start


CHILD = """
import json, time
t0 = time.perf_counter()
import sys; sys.argv = ["x"]
sys.path.insert(0, {here!r})
from bench_replay import one_replay
out = one_replay(16, 1600, 1)
out["process_seconds"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def fresh_process(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    code = CHILD.format(here=str(Path(__file__).parent))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def quickstart() -> float:
    scenario = ROOT / "benchmarks" / "scenarios" / "quickstart.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pipebench", "run", str(scenario), "--out", tmp, "--quiet"],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    report: dict = {}
    with tempfile.TemporaryDirectory() as cache:
        report["cold_process"] = fresh_process(cache)
        report["cache_loaded_process"] = fresh_process(cache)
    report["small"] = one_replay(16, 1600, args.repeats)
    single = report["small"]["replay_seconds_best"]
    for workers in (1, 2):
        seconds = grid(workers)
        report[f"grid_10x5_workers_{workers}"] = {
            "seconds": round(seconds, 3),
            "ratio_to_one_replay": round(seconds / single, 1),
        }
    if not args.skip_large:
        report["large"] = one_replay(128, 100_000, 2)
    report["quickstart_end_to_end_seconds"] = round(quickstart(), 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
