"""Where a charlm micro-batch's time goes: the replay against its parts, in CPU seconds.

Run:  python benchmarks/perf/profile_charlm.py [--microbatches 240] [--repeats 2]

The model and run of bench_charlm.py (S = 8, one block per middle stage). The
whole replay is timed first; then the work of one micro-batch is re-run part
by part on buffers laid out as the replay's (one saved area per micro-batch in
flight, cycled, so that the parts meet the caches as the replay's do): every
stage's forward and backward, the optimizer's step per stage, and inside a
block each layer kernel. CPU seconds (`process_time`), so the split holds on a
loaded machine; the NumPy matmul time of bench_charlm.py is printed alongside.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before NumPy loads its BLAS

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_charlm import B, D, H, L, S, T, numpy_seconds, products

from pipebench.engine.blas import one_blas_thread
from pipebench.engine.replay import replay, size_replay
from pipebench.objectives import build_objective
from pipebench.objectives.charlm import blocks, layers
from pipebench.objectives.charlm.views import _block_saved, _block_tensors, _scratch
from pipebench.objectives.layered import stage_backward, stage_forward
from pipebench.optim import OPTIMIZERS, hyper_array
from pipebench.optim.step import apply_step, moment_buffers
from pipebench.timeline import CostModel, build_timeline


def cpu(fn, reps: int) -> float:
    """CPU seconds per call of fn(i), best of 3 rounds of `reps` calls."""
    best = np.inf
    for _ in range(3):
        started = time.process_time()
        for i in range(reps):
            fn(i)
        best = min(best, (time.process_time() - started) / reps)
    return best


def numpy_cpu_seconds(shapes: list[tuple[int, int, int, int]]) -> float:
    """NumPy's CPU time for all the products, best of 3 rounds of 20 for each shape."""
    rng = np.random.default_rng(0)
    total = 0.0
    for batch, m, k, n in shapes:
        a = rng.standard_normal((batch, m, k) if batch > 1 else (m, k))
        b = rng.standard_normal((batch, k, n) if batch > 1 else (k, n))
        total += cpu(lambda i, a=a, b=b: np.matmul(a, b), 20)
    return total


def gelu_forward(h: np.ndarray, t: np.ndarray, a: np.ndarray) -> None:
    """The block forward's GELU (before this round: two kernels, tanh then the output)."""
    if hasattr(layers, "gelu_forward"):
        layers.gelu_forward(h, t, a)
    else:
        layers.gelu_tanh(h, t)
        layers.gelu_apply(h, t, a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--microbatches", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--slots", type=int, default=8, help="micro-batches in flight")
    args = parser.parse_args()
    spec = SimpleNamespace(
        kind="charlm",
        corpus="shakespeare",
        layers=L,
        width=D,
        heads=H,
        context=T,
        batch_size=B,
        validation=0.1,
        eval_windows=16,
        sampling="uniform",
        symbols=16,
        length=200_000,
        seed=0,
    )
    obj = build_objective(spec, S, None)
    trace = build_timeline("pd", CostModel.build(S), args.microbatches)
    prepared = size_replay(trace, trace.makespan)
    adamw = OPTIMIZERS["adamw"]
    hyper = hyper_array(1e-3, adamw.defaults)
    out: dict[str, object] = {"slots_in_replay": prepared.slots, "depth": prepared.depth}
    with one_blas_thread():
        replay(prepared, obj, adamw.code, hyper, 0, 1)
        runs = []
        for _ in range(args.repeats):
            started = time.process_time()
            curve = replay(prepared, obj, adamw.code, hyper, 0, 1)
            runs.append(time.process_time() - started)
        per_mb = min(runs) / args.microbatches
        out["replay_cpu_ms_per_microbatch"] = round(1e3 * per_mb, 2)
        out["final_loss"] = float(curve.loss[-1])

        P = args.slots
        arch = ((), (obj.spec,))
        off, so = obj.off, np.concatenate([[0], np.cumsum(obj.saved_size)])
        saved = np.zeros((P, so[-1]))
        x = np.zeros((P, S + 1, obj.act_size))
        gl = np.random.default_rng(1).standard_normal((P, S + 1, obj.act_size)) * 1e-3
        w = obj.init.copy()
        acc = np.zeros_like(w)
        rows = np.random.default_rng(2).integers(0, obj.examples, (P, B))
        e = np.zeros((0, 0))

        def fwd(s):
            return lambda i: stage_forward(
                *arch,
                s,
                w[off[s] : off[s + 1]],
                e,
                e,
                obj.data_i,
                rows[i % P],
                x[i % P, s],
                saved[i % P, so[s] : so[s + 1]],
                x[i % P, s + 1],
            )

        def bwd(s):
            return lambda i: stage_backward(
                *arch,
                s,
                w[off[s] : off[s + 1]],
                e,
                e,
                obj.data_i,
                rows[i % P],
                saved[i % P, so[s] : so[s + 1]],
                gl[i % P, s + 1],
                gl[i % P, s],
                acc[off[s] : off[s + 1]],
            )

        for s in range(S):  # fill every slot's saved activations
            for i in range(P):
                fwd(s)(i)
        reps = 2 * P
        stage = {}
        for s in range(S):
            stage[f"F{s}"] = cpu(fwd(s), reps)
            stage[f"B{s}"] = cpu(bwd(s), reps)
        moments, last = moment_buffers(adamw.code, 1, len(w)), np.zeros((1, len(w)))
        w2 = w.copy()
        for s in range(S):
            lo, hi = off[s], off[s + 1]
            stage[f"U{s}"] = cpu(
                lambda i, lo=lo, hi=hi: apply_step(
                    hyper, 10, 1000, w, acc, 1.0, moments, last, 0, (), lo, hi, w2
                ),
                reps,
            )
        out["stage_ms"] = {k: round(1e3 * v, 3) for k, v in stage.items()}
        for part in "FBU":
            out[f"{part}_ms_sum"] = round(1e3 * sum(v for k, v in stage.items() if k[0] == part), 2)
        out["parts_ms_sum"] = round(1e3 * sum(stage.values()), 2)

        # inside block 0 (stage 1): each layer kernel on slot-cycled buffers
        s = 1
        p = w[off[s] : off[s + 1]]
        g_p = acc[off[s] : off[s + 1]]
        lm = obj.spec
        bs = int(obj.saved_size[s])
        work = np.empty(int(lm[7]))
        workb = np.empty(int(lm[8]))
        N = B * T
        sv = [saved[i, so[s] : so[s] + bs] for i in range(P)]
        g1, b1, wqkv, bqkv, wo, bo, g2, _, wfc, bfc, wproj, bproj = _block_tensors(lm, p)
        dparts = _block_tensors(lm, g_p)
        sav = [_block_saved(lm, sv[i], B) for i in range(P)]
        gin = [gl[i, s + 1, : N * D].reshape(N, D) for i in range(P)]
        dx = np.zeros((N, D))
        qkv = _scratch(work, 0, N, 3 * D)
        a = _scratch(workb, 0, N, 4 * D)
        da = _scratch(workb, 4 * N * D, N, 4 * D)
        tmp = np.empty(4 * D * D)
        dqkv = np.zeros((N, 3 * D))
        dy = np.zeros((N, D))
        dln = np.zeros((N, D))
        ms = {
            "ln_fwd": lambda i: layers.layernorm_forward(
                sav[i % P][0], g1, b1, sav[i % P][1], sav[i % P][2], sav[i % P][3]
            ),
            "lin_qkv_fwd": lambda i: layers.linear_forward(sav[i % P][3], wqkv, bqkv, qkv),
            "attn_fwd": lambda i: layers.attention_forward(qkv, *sav[i % P][4:9]),
            "lin_o_fwd": lambda i: layers.linear_forward(sav[i % P][8], wo, bo, dx),
            "lin_fc_fwd": lambda i: layers.linear_forward(sav[i % P][11], wfc, bfc, sav[i % P][12]),
            "gelu_fwd": lambda i: gelu_forward(sav[i % P][12], sav[i % P][13], a),
            "gelu_apply": lambda i: layers.gelu_apply(sav[i % P][12], sav[i % P][13], a),
            "lin_proj_fwd": lambda i: layers.linear_forward(a, wproj, bproj, dx),
            "lin_proj_bwd": lambda i: layers.linear_backward(
                gin[i % P], a, wproj, da, dparts[10], dparts[11], tmp[: 4 * D * D].reshape(D, 4 * D)
            ),
            "gelu_bwd": lambda i: layers.gelu_backward(da, sav[i % P][12], sav[i % P][13], da),
            "lin_fc_bwd": lambda i: layers.linear_backward(
                da, sav[i % P][11], wfc, dln, dparts[8], dparts[9], tmp.reshape(4 * D, D)
            ),
            "ln_bwd": lambda i: layers.layernorm_backward(
                dln, sav[i % P][9], sav[i % P][10], g2, dx, dparts[6], dparts[7]
            ),
            "lin_o_bwd": lambda i: layers.linear_backward(
                gin[i % P], sav[i % P][8], wo, dy, dparts[4], dparts[5], tmp[: D * D].reshape(D, D)
            ),
            "attn_bwd": lambda i: layers.attention_backward(dy, *sav[i % P][4:8], dqkv),
            "lin_qkv_bwd": lambda i: layers.linear_backward(
                dqkv,
                sav[i % P][3],
                wqkv,
                dln,
                dparts[2],
                dparts[3],
                tmp[: 3 * D * D].reshape(3 * D, D),
            ),
            "block_fwd": lambda i: blocks._block_forward(lm, p, sv[i % P], dx, B, work),
            "block_bwd": lambda i: blocks._block_backward(
                lm, p, sv[i % P], gin[i % P], dx, g_p, B, workb[2 * N * D :]
            ),
        }
        for fn in ms.values():
            fn(0)
        out["block_kernels_ms"] = {k: round(1e3 * cpu(fn, reps), 3) for k, fn in ms.items()}
    shapes = products(int(obj.spec[0]))
    flops = sum(2 * b * m * k * n for b, m, k, n in shapes)
    reference = numpy_cpu_seconds(shapes)
    out["numpy_wall_ms_same_products"] = round(1e3 * numpy_seconds(shapes, 3), 2)
    out["numpy_ms_same_products"] = round(1e3 * reference, 2)
    out["fraction_of_numpy_cpu"] = round(reference / per_mb, 3)
    out["matmul_gflop_per_microbatch"] = flops / 1e9
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
