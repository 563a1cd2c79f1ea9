"""rpd at S = 128: CPU seconds per run and a hash of the curve, for checkouts back to back.

Run:  python benchmarks/perf/bench_rpd.py [--setting sweep|former] [--repeats 3]
      PYTHONPATH=<other checkout> python benchmarks/perf/bench_rpd.py ...
(from a folder that does not shadow the checkout under test).

- sweep: the shipped scaling_vs_stages reproduction's rpd at S = 128 (logistic,
  50 examples, batch 1, sequential rows, rpd's `sampling: batch`; 191,296
  iterations, delta = 16,320);
- former: the same study as it was when issue 16 was filed (600 examples,
  batch 10, uniform sampling), which the code before issue 16 can also run.

One run (lr 2^-6, seed 0) after a warm-up run; CPU time (`process_time`),
best of the repeats; the hash of the loss curve, update counts and final
model must match between checkouts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import pipebench
from pipebench.api import load_experiment
from pipebench.runner import run_one

try:
    from pipebench.runner import entry_replays as prepared_entry
except ImportError:  # the code before issue 16
    from pipebench.runner import prepare_entry as prepared_entry

OBJECTIVES = {
    "sweep": "{kind: logistic, examples: 50, dim: 512, batch_size: 1, l2: 1.0e-4,"
    " grad_noise: 0.5, sampling: sequential}",
    "former": "{kind: logistic, examples: 600, dim: 512, batch_size: 10, l2: 1.0e-4,"
    " grad_noise: 0.5}",
}
RPD = {"sweep": "{name: rpd, delta: auto, sampling: batch}", "former": "{name: rpd, delta: auto}"}
SCENARIO = """
name: rpd128
seeds: [0]
objective: {objective}
pipeline: {{stages: 128, costs: {{forward: 1, backward: 1}}}}
budget: {{time: 3180}}
record: {{points: 100}}
optimizer: {{name: sgd, lr: 0.015625}}
schedules: [{rpd}]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(OBJECTIVES), default="sweep")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rpd128.yaml"
        text = SCENARIO.format(objective=OBJECTIVES[args.setting], rpd=RPD[args.setting])
        path.write_text(text)
        exp = load_experiment(path)
    entry = exp.entries[0]
    started = time.process_time()
    prepared = prepared_entry(exp, entry)
    prepare_cpu = time.process_time() - started
    stop = np.zeros(1, dtype=np.int64)
    run_one(exp, prepared, 0, 0.015625, stop)  # compiles, or loads from the cache
    cpu = []
    for _ in range(args.repeats):
        started = time.process_time()
        outcome = run_one(exp, prepared, 0, 0.015625, stop)
        cpu.append(time.process_time() - started)
    curve = outcome.curve
    digest = hashlib.sha256(curve.loss.tobytes() + curve.model.tobytes() + curve.updates.tobytes())
    report = {
        "checkout": str(Path(pipebench.__file__).parent),
        "setting": args.setting,
        "prepare_cpu_s": round(prepare_cpu, 3),
        "run_cpu_s": [round(c, 3) for c in cpu],
        "best_run_cpu_s": round(min(cpu), 3),
        "hash": digest.hexdigest()[:12],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
