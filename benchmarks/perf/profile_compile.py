"""Where a cold first run's compilation goes: CPU seconds and compilations per kernel.

Run:  python benchmarks/perf/profile_compile.py [block-linear|mlp|charlm] [--top 30]
      python benchmarks/perf/profile_compile.py --timelines [SCENARIO.yaml]
      python benchmarks/perf/profile_compile.py mlp --replay [--scenario FILE]

Runs a tiny scenario (pd and rpd, 2 stages, 4 micro-batches) of the family in
this process with an empty numba cache, listening to numba's own compile
events (`numba.core.event`, "numba:compile"): for every kernel compiled, its
CPU seconds excluding the kernels it compiled in turn (exclusive) and
including them, and how many times it was compiled (once per type
signature). numba's and NumPy's own implementations appear by module:name
(`arrayobj:impl` is the array operations the kernels use).

`--timelines` profiles what the parent process of a cold `run` compiles while a
forked child compiles the replay kernels (engine/precompile.py): loading the
scenario (which simulates each schedule's first update under a time budget) and
each entry's timeline, statistics, sizing and memory profile, with no replay. It
takes the family's tiny scenario or a scenario file (e.g. quickstart.yaml).
`--replay` profiles the other side: it compiles, in this process, exactly what
that child compiles (every replay signature of the scenario's entries, or of
`--scenario FILE`'s), and nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

OBJECTIVES = {
    "block-linear": "{kind: quadratic, examples: 20, dim: 8, batch_size: 2}",
    "mlp": "{kind: mlp, width: 8, inputs: 4, outputs: 2, examples: 16, batch_size: 2}",
    "charlm": "{kind: charlm, corpus: markov, width: 8, heads: 2, context: 8, batch_size: 2}",
}
SCENARIO = """name: profile
objective: {objective}
pipeline: {{stages: 2}}
budget: {{microbatches: 4}}
optimizer: {{name: sgd, lr: 0.01}}
schedules: [pd, rpd]
"""


def timelines_only(scenario: Path) -> int:
    """What a run's parent computes besides the replays (runner.entry_replays, every entry)."""
    from pipebench.api import load_experiment
    from pipebench.runner import entry_replays

    exp = load_experiment(scenario)
    for entry in exp.entries:
        entry_replays(exp, entry)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", nargs="?", choices=sorted(OBJECTIVES), default="block-linear")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--timelines", nargs="?", const="", metavar="SCENARIO",
        help="the parent's side of a run only: timelines, statistics, sizing (no replay)",
    )  # fmt: skip
    parser.add_argument("--replay", action="store_true", help="the compiling child's work only")
    parser.add_argument("--scenario", type=Path, help="this scenario instead of the family's")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ["NUMBA_CACHE_DIR"] = str(tmp / "numba")  # before numba loads: a cold cache
    from numba.core import event

    from pipebench.cli import main as pipebench

    exclusive, inclusive, count = Counter(), Counter(), Counter()
    stack: list[list] = []

    class Listener(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            stack.append([ev.data["dispatcher"], time.process_time(), 0.0])

        def on_end(self, ev: event.Event) -> None:
            dispatcher, started, inner = stack.pop()
            spent = time.process_time() - started
            func = dispatcher.py_func
            name = f"{func.__module__.rsplit('.', 1)[-1]}:{func.__name__}"
            exclusive[name] += spent - inner
            inclusive[name] += spent
            count[name] += 1
            if stack:
                stack[-1][2] += spent

    event.register("numba:compile", Listener())
    scenario = args.scenario or Path(args.timelines or tmp / "profile.yaml")
    if scenario == tmp / "profile.yaml":
        scenario.write_text(SCENARIO.format(objective=OBJECTIVES[args.family]))
    started, wall = time.process_time(), time.perf_counter()
    if args.replay:
        from pipebench.api import load_experiment
        from pipebench.engine.precompile import compile_replays
        from pipebench.runner import replay_runs

        compile_replays(replay_runs(load_experiment(scenario)))
        status, part = 0, " (replay kernels)"
    elif args.timelines is not None:
        status, part = timelines_only(scenario), " (timelines)"
    else:
        out = ["--out", str(tmp / "out"), "--quiet", "--no-plots"]
        status, part = pipebench(["run", str(scenario), *out]), ""
    cpu, wall = time.process_time() - started, time.perf_counter() - wall
    compiling = sum(exclusive.values())
    what = f"{args.scenario or args.timelines or args.family}{part}"
    print(
        f"{what}: exit {status}, {cpu:.1f} s CPU ({wall:.1f} s wall) for the run, "
        f"{compiling:.1f} s CPU compiling; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'kernel':44s} {'exclusive':>9s} {'inclusive':>9s} {'compiled':>8s}")
    for name, seconds in exclusive.most_common(args.top):
        print(f"{name:44s} {seconds:9.2f} {inclusive[name]:9.2f} {count[name]:8d}")
    sys.exit(status)


if __name__ == "__main__":
    main()
