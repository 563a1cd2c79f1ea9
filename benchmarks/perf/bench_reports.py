"""Report performance: what `run` adds after training, and the exports of `schedule`.

Run:  python benchmarks/perf/bench_reports.py [--repeats 3]

- quickstart: `pipebench run benchmarks/scenarios/quickstart.yaml` in a new
  process, warm cache, with and without pictures (`--no-plots`);
- plot: `pipebench.api.plot_results` on those results (13 PNGs), in process;
- compare: `pipebench compare` of those results with themselves, side by side
  and baseline vs candidate, each in a new process;
- exports: Chrome trace JSON and the PyTorch CSV of a pd trace with
  150,000 operations (F, B and U rows of S = 8, 6,250 micro-batches), warm;
- statistics: the cost of the delay histogram in `timeline_stats` for pd
  S = 128, 100,000 micro-batches (the stats before and after `np.bincount`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "benchmarks" / "scenarios" / "quickstart.yaml"


def wall(args: list[str]) -> float:
    """Seconds for `pipebench ARGS` in a new process (exit status must be 0)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipebench", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def best(repeats: int, fn) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        runs.append(round(time.perf_counter() - started, 3))
    return min(runs), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats

    from pipebench import api
    from pipebench.report.chrome_trace import chrome_trace_json
    from pipebench.report.torch_schedule import torch_csv_text
    from pipebench.timeline import CostModel, build_timeline
    from pipebench.timeline.stats import update_delays

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "q"
        args = ["run", str(QUICKSTART), "--out", str(results), "--quiet"]
        wall(args)  # fill the numba cache
        out["quickstart_with_plots_s"] = [round(wall(args), 3) for _ in range(repeats)]
        out["quickstart_no_plots_s"] = [
            round(wall([*args, "--no-plots"]), 3) for _ in range(repeats)
        ]
        api.plot_results(results)  # import matplotlib once
        out["plot_in_process_s"] = best(repeats, lambda: api.plot_results(results))[1]
        out["compare_side_by_side_s"] = [round(wall(["compare", str(results)]), 3)]
        out["compare_base_candidate_s"] = [
            round(wall(["compare", str(results), str(results), "--fail-on", "final_loss:1%"]), 3)
        ]

    trace = build_timeline("pd", CostModel.build(8), 6250)
    chrome_trace_json(build_timeline("pd", CostModel.build(8), 10))
    out["export_ops"] = trace.n_ops
    out["chrome_trace_json_s"] = best(repeats, lambda: chrome_trace_json(trace))[1]
    out["chrome_trace_mb"] = round(len(chrome_trace_json(trace)) / 1e6, 1)
    out["torch_csv_s"] = best(repeats, lambda: torch_csv_text(trace))[1]

    big = build_timeline("pd", CostModel.build(128), 100_000)
    delays = update_delays(big)
    out["delay_histogram_bincount_s"] = best(repeats, lambda: np.bincount(delays))[1]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
