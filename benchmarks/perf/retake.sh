#!/usr/bin/env bash
# Re-measure every target of issue 16 on this checkout, for benchmarks/perf/README.md.
# Meant for a quiet machine: about 6-8 minutes on 2 idle cores. From the repository root:
#
#   benchmarks/perf/retake.sh            # PYTHON=... to use another interpreter
#
# Prints each benchmark's JSON (or lines) under a heading naming its target. rpd is also
# run on the code from before issue 16 (commit 48598c4, `git archive` into a scratch
# folder; its first run there compiles), in the setting that code can run.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=$(realpath -s "${PYTHON:-.venv/bin/python}")  # -s: a venv's python is a link
reference=${REFERENCE:-/work/.mirror/vectozavr+randomized-pipedream/repo}
before_commit=48598c4  # the last commit before issue 16's rpd and start-up changes
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"

echo "== 1. start-up, warm: --help, list, validate, compare (target < 0.3 s each)"
"$py" benchmarks/perf/bench_startup.py --repeats 5

echo "== 2. first-run compilation, cold cache (targets: block-linear < 10 s, layered < 45 s)"
"$py" benchmarks/perf/bench_compile.py --families block-linear layered

echo "== 3. rpd at S = 128 per run (target: 5x less than before issue 16; same hash)"
git archive "$before_commit" pipebench | tar -x -C "$scratch"
(cd "$scratch" && PYTHONPATH="$scratch" "$py" "$OLDPWD/benchmarks/perf/bench_rpd.py" \
    --setting former --repeats 2)
"$py" benchmarks/perf/bench_rpd.py --setting former --repeats 2
"$py" benchmarks/perf/bench_rpd.py --setting sweep --repeats 2

echo "== 4. the shipped scaling_vs_stages sweep, end to end (target < 60 s)"
"$py" benchmarks/perf/bench_sweep.py

echo "== 5. pd against the reference simulator, side by side (target >= 300x)"
"$py" benchmarks/perf/bench_reference.py --repeats 1 --reference "$reference"

echo "== 6. charlm against NumPy's matmul on the same products (target >= 0.6)"
"$py" benchmarks/perf/bench_charlm.py --repeats 2
