"""pipebench against the Randomized PipeDream simulator, step by step.

Run:  python benchmarks/reproductions/exactness.py --paper PATH

PATH is a clone of https://github.com/vectozavr/randomized-pipedream (a
work tree, or a bare git directory: its HEAD is exported). Its code is
copied into a temporary folder and run there, in a subprocess, with this
interpreter: it needs numpy, matplotlib and scipy, which pipebench already
depends on, so nothing is installed, and nothing of it enters pipebench.

For each case the simulator runs PD (`PipeDream1F1BScheduler`, NOAM = S)
or LocalSGD (`IndependentLocalSGDScheduler`) with batches visited in order
and records the full objective after every unit time step; pipebench runs
the same schedule with `inflight: input` and `sampling: sequential`, loss
sampled at every integer time. The random quadratic at seed 0 is the same
data in both (numpy's generator, same draws); the logistic regression and
the tridiagonal quadratic are the simulator's data written to a CSV that
pipebench reads (17 significant digits, so the floats are exact).
Printed: the largest relative difference over all steps, per case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import yaml

from pipebench import api

TOLERANCE = 1e-9

# name: (objective, S, micro-batches, lr, schedule, local steps)
CASES = {
    "pd, random quadratic (2000 x 512, batch 100), S=8": ("random", 8, 160, 0.05, "pd", 0),
    "localsgd H=5, random quadratic, S=8": ("random", 8, 160, 0.1, "localsgd", 5),
    "pd, tridiagonal quadratic (600 x 512, batch 5), S=16": ("tridiagonal", 16, 160, 4e-3, "pd", 0),
    "localsgd H=5, tridiagonal quadratic, S=16": ("tridiagonal", 16, 160, 0.03, "localsgd", 5),
    "pd, logistic (600 x 512, batch 5, l2 1e-4), S=16": ("logistic", 16, 160, 0.125, "pd", 0),
    "localsgd H=5, logistic, S=16": ("logistic", 16, 160, 0.5, "localsgd", 5),
}
DATA = {  # objective: (examples, batch)
    "random": (2000, 100),
    "tridiagonal": (600, 5),
    "logistic": (600, 5),
}

# Runs inside the copy of the simulator: the objective trace of one case, and its data.
PAPER_SIDE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from src.objectives.quadratic import QuadraticObjective
    from src.objectives.logistic import LogisticRegressionObjective
    from src.schedulers.pipedream_1f1b import PipeDream1F1BScheduler
    from src.schedulers.independent_local_sgd_pipeline import IndependentLocalSGDScheduler
    from src.methods.pipedream import PipeDreamMethod
    from src.methods.localSGD import LocalMinibatchSGD1F1BMethod
    from src.utils.batching import build_training_batch_schedule

    kind, S, M, lr, schedule, H, n, b, out = json.loads(sys.argv[1])
    if kind == "logistic":
        obj = LogisticRegressionObjective.synthetic(
            num_examples=n, num_parameters=512, num_stages=S, batch_size=b, seed=0, l2_reg=1e-4)
    else:
        obj = QuadraticObjective.synthetic(
            num_examples=n, num_parameters=512, num_stages=S, batch_size=b, seed=0, kind=kind)
    order = build_training_batch_schedule(len(obj.get_batches()), M, shuffle_each_epoch=False)
    if schedule == "pd":
        timeline = PipeDream1F1BScheduler(noam=S).generate(S, M)
        method = PipeDreamMethod(timeline=timeline, learning_rate=lr, training_batch_indices=order)
    else:
        timeline = IndependentLocalSGDScheduler(num_runs=S, local_steps=H).generate(S, M)
        method = LocalMinibatchSGD1F1BMethod(
            timeline=timeline, learning_rate=lr, training_batch_indices=order,
            num_runs=S, local_steps=H)
    trace = method.run(obj)
    np.savez(out, loss=trace.objective_trace, X=obj.X, y=obj.y)
    """
)


def export(paper: Path, into: Path) -> Path:
    """The simulator's code, copied into `into` (a git directory's HEAD, or a work tree)."""
    git_dir = paper / ".git" if (paper / ".git").exists() else paper
    archive = subprocess.run(
        ["git", "--git-dir", str(git_dir), "archive", "HEAD", "src"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "paper_side.py").write_text(PAPER_SIDE)
    return into


def paper_run(code: Path, case: tuple, out: Path) -> dict:
    kind, S, M, lr, schedule, H = case
    n, b = DATA[kind]
    args = json.dumps([kind, S, M, lr, schedule, H, n, b, str(out)])
    subprocess.run([sys.executable, "paper_side.py", args], cwd=code, check=True)
    return dict(np.load(out))


def pipebench_run(case: tuple, data: dict, tmp: Path) -> np.ndarray:
    kind, S, M, lr, schedule, H = case
    n, b = DATA[kind]
    if kind == "random":  # pipebench's own generator draws the same numbers
        objective = {"kind": "quadratic", "variant": "random", "examples": n, "dim": 512}
    else:
        csv = tmp / f"{kind}.csv"
        columns = [f"x{j}" for j in range(data["X"].shape[1])]
        table = np.column_stack([data["X"], data["y"]])
        np.savetxt(csv, table, fmt="%.17g", delimiter=",", header=",".join([*columns, "y"]),
                   comments="")  # fmt: skip
        objective = {
            "kind": "quadratic" if kind == "tridiagonal" else "logistic",
            "variant": "csv",
            "path": str(csv),
            "target": "y",
            "standardize": False,
        }
        if kind == "logistic":
            objective["l2"] = 1.0e-4
    entry = {"name": schedule, "inflight": "input"}
    if schedule == "localsgd":
        entry |= {"replicas": S, "local_steps": H}
    makespan = len(data["loss"]) - 1
    scenario = {
        "name": "exactness",
        "objective": {**objective, "batch_size": b, "sampling": "sequential"},
        "pipeline": {"stages": S, "costs": {"forward": 1, "backward": 1}},
        "budget": {"microbatches": M},
        "record": {"points": makespan},
        "optimizer": {"name": "sgd", "lr": lr},
        "schedules": [entry],
    }
    path = tmp / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    report = api.run_scenario(api.load_experiment(path), tmp / "out", 1, plots=False)
    curves = report.curves
    assert np.array_equal(curves["sim_time"].to_numpy(), np.arange(makespan + 1)), "clock"
    return curves["loss"].to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", type=Path, required=True, help="clone of the simulator")
    args = parser.parse_args()
    worst_all = 0.0
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        code = export(args.paper, tmp)
        print(f"{'case':<56} {'steps':>6} {'max rel. diff':>14}", flush=True)
        for name, case in CASES.items():
            data = paper_run(code, case, tmp / "paper.npz")
            ours = pipebench_run(case, data, tmp)
            theirs = data["loss"]
            if len(ours) != len(theirs):
                print(f"{name:<56} lengths differ: {len(ours)} against {len(theirs)}")
                worst_all = np.inf
                continue
            worst = float(np.max(np.abs(ours - theirs) / np.abs(theirs)))
            worst_all = max(worst_all, worst)
            print(f"{name:<56} {len(theirs) - 1:>6} {worst:>14.2e}", flush=True)
    verdict = "equal" if worst_all <= TOLERANCE else "NOT equal"
    print(f"largest relative difference {worst_all:.2e}: {verdict} to {TOLERANCE:g}")
    sys.exit(0 if worst_all <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
