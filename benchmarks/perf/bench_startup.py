"""Start-up time of the quick commands, each in a new process (warm numba cache).

Run:  python benchmarks/perf/bench_startup.py [--repeats 7]

Times `pipebench --help`, `list`, `validate` (the quickstart scenario) and
`compare` (the quickstart's results, written once before timing: side by side
as a table and as CSV, and against themselves with `--fail-on`), and prints
the median wall and CPU (user + system) seconds of each as JSON for
benchmarks/perf/README.md; CPU time says more than wall time on a loaded
machine. Also reports which heavy modules each command's process imported.
Set PYTHONPATH to another checkout's root to measure that checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "benchmarks" / "scenarios" / "quickstart.yaml"
# numba.np.arraymath: loaded when numba's CPU target initialises (a process's first dispatch)
HEAVY = (
    "numba",
    "numba.np.arraymath",
    "scipy",
    "pandas",
    "pydantic",
    "matplotlib",
    "yaml",
    "numpy",
    "rich.markdown",
)

PROBE = """
import sys
sys.argv = ["pipebench", *{args!r}]
try:
    from pipebench.cli import main
    main()
finally:
    heavy = [m for m in {heavy!r} if m in sys.modules]
    print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one process running `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported(args: list[str]) -> list[str]:
    code = PROBE.format(args=args, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [x for x in out.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        subprocess.run(
            [sys.executable, "-m", "pipebench", "run", str(QUICKSTART), "--out", str(results),
             "--quiet", "--no-plots"],
            check=True, capture_output=True,
        )  # fmt: skip
        commands = {
            "--help": ["--help"],
            "list": ["list"],
            "validate": ["validate", str(QUICKSTART)],
            "compare": ["compare", str(results)],
            "compare --format csv": ["compare", str(results), "--format", "csv"],
            "compare BASE CANDIDATE": ["compare", str(results), str(results), "--fail-on",
                                       "final_loss:5%"],
        }  # fmt: skip
        report = {"load average at start": os.getloadavg()[0]}
        runs = {name: [sys.executable, "-m", "pipebench", *argv] for name, argv in commands.items()}
        runs["python -c pass"] = [sys.executable, "-c", "pass"]  # the interpreter alone
        for name, command in runs.items():
            timed(command)  # warm the OS file cache
            walls, cpus = zip(*(timed(command) for _ in range(args.repeats)), strict=True)
            report[name] = {
                "wall_median_s": round(statistics.median(walls), 3),
                "wall_min_s": round(min(walls), 3),
                "cpu_median_s": round(statistics.median(cpus), 3),
                "imports": imported(commands[name]) if name in commands else [],
            }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
