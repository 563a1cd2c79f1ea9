"""charlm speed: micro-batches per second through the replay, against NumPy's matmul.

Run:  python benchmarks/perf/bench_charlm.py [--microbatches 240] [--repeats 3]

The model of issue 5: S = 8 stages, 6 blocks of width 64, 4 heads, context 32,
batch 16, on Tiny Shakespeare (65 symbols), trained by pd with AdamW. One
replay of M micro-batches is timed warm (loss sampled twice on 16 validation
windows, 1% of the work). The matrix products of one micro-batch's forward
and backward (every linear layer's three products, the attention's six per
head, batched as NumPy batches them) are then timed with NumPy on the same
shapes; the ratio of the two times is the fraction of NumPy's matmul rate
the whole replay achieves, bookkeeping, softmax, LayerNorm and GELU included.
Both run on one BLAS thread (the runner pins scipy's OpenBLAS to one; NumPy's
is pinned here by OPENBLAS_NUM_THREADS before it loads).
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before NumPy loads its BLAS

import argparse
import json
import time
from types import SimpleNamespace

import numpy as np

from pipebench.engine.blas import one_blas_thread
from pipebench.engine.replay import replay, size_replay
from pipebench.objectives import build_objective
from pipebench.optim import OPTIMIZERS, hyper_array
from pipebench.timeline import CostModel, build_timeline

S, L, D, H, T, B = 8, 6, 64, 4, 32, 16


def products(vocab: int) -> list[tuple[int, int, int, int]]:
    """(batch, m, k, n) of every matrix product of one micro-batch, forward and backward."""
    N, hd = B * T, D // H
    linears = [(N, D, 3 * D), (N, D, D), (N, D, 4 * D), (N, 4 * D, D)] * L + [(N, D, vocab)]
    out = []
    for m, k, n in linears:  # y = x W; dx = dy W^T; dW = x^T dy
        out += [(1, m, k, n), (1, m, n, k), (1, k, m, n)]
    heads = B * H
    attention = [(heads, T, hd, T), (heads, T, T, hd)]  # scores = q k^T; y = att v
    attention += [(heads, T, hd, T), (heads, T, T, hd), (heads, T, T, hd), (heads, T, T, hd)]
    return out + attention * L  # backward: d_att, d_v, d_q, d_k


def numpy_seconds(shapes: list[tuple[int, int, int, int]], repeats: int) -> float:
    """NumPy's time for all the products, best of `repeats` for each shape."""
    rng = np.random.default_rng(0)
    total = 0.0
    for batch, m, k, n in shapes:
        a = rng.standard_normal((batch, m, k)) if batch > 1 else rng.standard_normal((m, k))
        b = rng.standard_normal((batch, k, n)) if batch > 1 else rng.standard_normal((k, n))
        best = np.inf
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(20):
                np.matmul(a, b)
            best = min(best, (time.perf_counter() - started) / 20)
        total += best
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--microbatches", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = SimpleNamespace(kind="charlm", corpus="shakespeare", layers=L, width=D, heads=H,
                           context=T, batch_size=B, validation=0.1, eval_windows=16,
                           sampling="uniform", symbols=16, length=200_000, seed=0)  # fmt: skip
    obj = build_objective(spec, S, None)
    trace = build_timeline("pd", CostModel.build(S), args.microbatches)
    prepared = size_replay(trace, trace.makespan)
    adamw = OPTIMIZERS["adamw"]
    hyper = hyper_array(1e-3, adamw.defaults)
    runs = []
    with one_blas_thread():
        started = time.perf_counter()
        replay(prepared, obj, adamw.code, hyper, 0, 1)  # compile or load from the cache
        first = time.perf_counter() - started
        for _ in range(args.repeats):
            started = time.perf_counter()
            replay(prepared, obj, adamw.code, hyper, 0, 1)
            runs.append(time.perf_counter() - started)
    per_mb = min(runs) / args.microbatches
    shapes = products(int(obj.spec[0]))
    flops = sum(2 * batch * m * k * n for batch, m, k, n in shapes)
    reference = numpy_seconds(shapes, args.repeats)
    print(json.dumps({
        "model": f"S={S}, {L} blocks, width {D}, heads {H}, context {T}, batch {B}",
        "microbatches": args.microbatches,
        "first_replay_seconds": round(first, 3),
        "replay_seconds": [round(r, 3) for r in runs],
        "microbatches_per_second": round(1 / per_mb, 1),
        "matmul_flops_per_microbatch": flops,
        "achieved_gflops": round(flops / per_mb / 1e9, 2),
        "numpy_seconds_same_products": round(reference, 5),
        "numpy_gflops_same_products": round(flops / reference / 1e9, 2),
        "fraction_of_numpy": round(reference / per_mb, 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
