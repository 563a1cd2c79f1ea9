"""Cold compilation per kernel family: a new process and an empty numba cache each.

Run:  python benchmarks/perf/bench_compile.py [--families timeline block-linear layered]

- timeline: `pipebench schedule pd -S 4 -M 8 --json` (simulator and statistics kernels);
- block-linear: `pipebench run` of a tiny quadratic scenario with pd and rpd
  (timeline kernels, then the replay and rpd's plan replay);
- layered: the same with the mlp objective (the layered replay, which holds the
  mlp and charlm stage kernels);
- charlm: the same with a tiny charlm model (`--families charlm`; not in the default set).

Each command runs twice on the same fresh cache: cold (compiling) and warm (loading
the cache); the difference is what the first run after installation costs, in
wall seconds and in CPU seconds (all processes; on a loaded machine the CPU
seconds are the comparable figure, the wall seconds what a user waits).
Printed as JSON for benchmarks/perf/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = """
name: compile-{kind}
objective: {objective}
pipeline: {{stages: 2}}
budget: {{microbatches: 4}}
optimizer: {{name: sgd, lr: 0.01}}
schedules: [pd, rpd]
"""
OBJECTIVES = {
    "block-linear": "{kind: quadratic, examples: 20, dim: 8, batch_size: 2}",
    "layered": "{kind: mlp, width: 8, inputs: 4, outputs: 2, examples: 16, batch_size: 2}",
    # the layered replay again, with the charlm model's stage kernels in place of the mlp's
    "charlm": "{kind: charlm, corpus: markov, width: 8, heads: 2, context: 8, batch_size: 2}",
}


def timed(command: list[str], cache: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU counts every process it started and waited for
    (the replay kernels' compiling child, engine/precompile.py)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    env.pop("NUMBA_DISABLE_JIT", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--families", nargs="+", default=["timeline", "block-linear", "layered"])
    args = parser.parse_args()
    report = {"load average at start": os.getloadavg()[0]}
    for family in args.families:
        with tempfile.TemporaryDirectory() as tmp:
            if family == "timeline":
                command = ["schedule", "pd", "-S", "4", "-M", "8", "--json"]
            else:
                path = Path(tmp) / "s.yaml"
                path.write_text(SCENARIO.format(kind=family, objective=OBJECTIVES[family]))
                command = ["run", str(path), "--out", f"{tmp}/out", "--quiet", "--no-plots"]
            command = [sys.executable, "-m", "pipebench", *command]
            cache = f"{tmp}/numba"
            (cold, cold_cpu), (warm, warm_cpu) = timed(command, cache), timed(command, cache)
            report[family] = {
                "cold_s": round(cold, 1),
                "warm_s": round(warm, 1),
                "compile_s": round(cold - warm, 1),
                "compile_cpu_s": round(cold_cpu - warm_cpu, 1),
                "load_average": round(os.getloadavg()[0], 1),
            }
        print(json.dumps({family: report[family]}), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
