"""pd against the reference simulator of the Randomized PipeDream paper, side by side.

Run:  python benchmarks/perf/bench_reference.py [--reference URL-or-git-dir] [--repeats 3]

The reference (github.com/vectozavr/randomized-pipedream, `src/methods/pipedream.py`)
is copied into a scratch folder at run time (`git clone`, or `git archive` of a
local clone) and imported from there; it needs only NumPy and matplotlib, which
this project's environment has, so nothing is installed. The same run on both:
pd (1F1B with weight stashing), the random quadratic with d = 512, 600 examples,
batch 10, S = 16, 1,600 micro-batches, SGD. The reference evaluates the full
objective and gradient norm as it goes (its `log_full_objective=False` is its
cheapest setting and is what is timed); pipebench samples the loss 200 times.
The reference is also timed with those per-update full gradients replaced by
zeros: the cost of its stepping alone, a bound in its favour.

Also printed: the arithmetic and bytes one operation needs (the floor any
replay of this run has), computed from the shapes.
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

sys.path.insert(0, str(Path(__file__).parent))

REFERENCE = "https://github.com/vectozavr/randomized-pipedream"
S, M, D, N, B = 16, 1600, 512, 600, 10

REFERENCE_RUN = """
import json, sys, time
sys.path.insert(0, {root!r})
from src.methods.pipedream import PipeDreamMethod
from src.objectives.quadratic import QuadraticObjective
from src.schedulers.pipedream_1f1b import simulate_pipedream_1f1b

objective = QuadraticObjective.synthetic(
    num_examples={N}, num_parameters={D}, num_stages={S}, batch_size={B}, seed=0
)
batches = len(objective.get_batches())
t0 = time.perf_counter()
timeline = simulate_pipedream_1f1b({S}, {M})
t1 = time.perf_counter()


def timed_runs():
    runs = []
    for _ in range({repeats}):
        method = PipeDreamMethod(
            timeline=timeline, learning_rate=1e-3,
            training_batch_indices=[m % batches for m in range({M})], log_full_objective=False,
        )
        start = time.perf_counter()
        trace = method.run(objective)
        runs.append(time.perf_counter() - start)
    return runs, len(trace.block_update_objective)


runs, updates = timed_runs()
# Its stepping alone: the full gradient it evaluates after every update, for its
# gradient-norm diagnostics, replaced by zeros.
objective.full_gradient = lambda weights: [w * 0.0 for w in weights]
stepping, _ = timed_runs()
print(json.dumps({{"timeline_seconds": t1 - t0, "run_seconds": runs, "updates": updates,
                  "run_seconds_without_gradient_norms": stepping}}))
"""


def copy_reference(source: str, into: Path) -> Path:
    """The reference's source tree in `into` (from a URL or a local git directory)."""
    root = into / "reference"
    if Path(source).exists():
        root.mkdir()
        archive = subprocess.run(
            ["git", "--git-dir", source, "archive", "HEAD", "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    else:
        subprocess.run(["git", "clone", "--depth", "1", source, str(root)], check=True)
    return root


def floor() -> dict:
    """What one operation of this run must do: multiply-adds and bytes read or written."""
    width = D // S
    fwd = {"flops": 2 * B * width, "bytes": 8 * (B * width + width + B)}  # X rows, w, z
    bwd = {"flops": 2 * B * width + 2 * width, "bytes": 8 * (B * width + 3 * width + B)}
    upd = {"flops": 2 * width, "bytes": 8 * 3 * width}  # read w and g, write w'
    ops = 3 * S * M  # F, B and U per stage and micro-batch
    flops = S * M * (fwd["flops"] + bwd["flops"] + upd["flops"])
    return {
        "forward": fwd,
        "backward": bwd,
        "update": upd,
        "operations": ops,
        "total_mflop": round(flops / 1e6, 1),
        "mean_flops_per_operation": round(flops / ops),
        "total_mb_touched": round(S * M * (fwd["bytes"] + bwd["bytes"] + upd["bytes"]) / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", default=REFERENCE, help="git URL or local git directory")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from bench_replay import one_replay

    report: dict = {"load average at start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_reference(args.reference, Path(tmp))
        code = REFERENCE_RUN.format(root=str(root), S=S, M=M, D=D, N=N, B=B, repeats=args.repeats)
        ours = one_replay(S, M, 2 * args.repeats + 1)  # warm (its first call compiles if needed)
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp
        )
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
        again = one_replay(S, M, 2 * args.repeats + 1)  # after, to bracket the load
    ours_best = min(ours["replay_seconds_best"], again["replay_seconds_best"])
    theirs_best = min(theirs["run_seconds"])
    report.update(
        {
            "pipebench": {
                "replay_seconds_all": ours["replay_seconds_all"] + again["replay_seconds_all"],
                "timeline_seconds": ours["timeline_seconds"],
            },
            "reference": theirs,
            "ratio_best_run": round(theirs_best / ours_best, 1),
            "ratio_best_run_without_its_gradient_norms": round(
                min(theirs["run_seconds_without_gradient_norms"]) / ours_best, 1
            ),
            "ratio_with_timelines": round(
                (theirs_best + theirs["timeline_seconds"]) / (ours_best + ours["timeline_seconds"]),
                1,
            ),
            "floor": floor(),
        }
    )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"# {time.perf_counter() - started:.0f} s", file=sys.stderr)
