"""Sweep performance: the fixed-time scaling study of issue 6, end to end.

Run:  python benchmarks/perf/bench_sweep.py [--executor local|dask] [--workers N]

- sweep: `pipebench sweep pipebench/reproductions/scaling_vs_stages.yaml` in a
  new process with an empty cache (7 cells), pictures included;
- again: the same command once more, every cell from the cache;
- per cell: its own wall time (from each cell's meta.json) and the runs'
  time per schedule (the summary's `wall_seconds`), to show where it goes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "pipebench" / "reproductions" / "scaling_vs_stages.yaml"


def sweep(out: Path, extra: list[str]) -> float:
    """Seconds for the sweep in a new process (exit status must be 0)."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pipebench", "sweep", str(SCENARIO), "--out", str(out)]
    subprocess.run([*command, "--quiet", *extra], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", default="local")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    extra = ["--executor", args.executor]
    if args.workers is not None:
        extra += ["--workers", str(args.workers)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        first = sweep(out, extra)
        again = sweep(out, extra)
        meta = json.loads((out / "meta.json").read_text())
        summary = pd.read_csv(out / "summary.csv")
        print(f"sweep, empty cache: {first:.1f} s; again, all cached: {again:.1f} s")
        print(f"cells: {meta['cells']}")
        runs = summary[summary["seed"].notna()]
        per = runs.pivot_table("wall_seconds", index="stages", columns="label", aggfunc="sum")
        for cell in meta["cell_list"]:
            cell_meta = json.loads((out / "cells" / cell["key"] / "meta.json").read_text())
            stages = cell["values"]["pipeline.stages"]
            parts = ", ".join(f"{k} {v:.1f}" for k, v in per.loc[stages].items())
            print(f"  S={stages:>3}: cell {cell_meta['wall_seconds']:6.1f} s (runs: {parts})")


if __name__ == "__main__":
    main()
