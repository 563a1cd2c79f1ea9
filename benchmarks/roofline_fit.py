"""Fit the roofline's coefficients to the shipped H200 measurements, and print the errors.

    python benchmarks/roofline_fit.py            # the fit, to paste into H200_FIT
    python benchmarks/roofline_fit.py --check    # the errors of H200_FIT as shipped
    python benchmarks/roofline_fit.py --check --profile h100.csv --hardware h100
                                                 # against another GPU's measurements

The fit minimises the sum of the 16th powers of the relative errors of forward, full
backward and AdamW step, each over the tests' bound for its part (blocks 20%,
embedding and head 35%): close to the worst error, not the mean; over the rows with
micro_batch x seq >= 4096 tokens; smaller rows are launch-bound and noisy.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from scipy.optimize import least_squares

from pipebench.hardware.gpus import GPUS
from pipebench.hardware.model import ModelShape
from pipebench.hardware.profile import load_profile
from pipebench.hardware.roofline import H200_FIT, RooflineFit, part_times, update_time

NAMES = [f.name for f in dataclasses.fields(RooflineFit)]
MIN_TOKENS = 4096
# The tests' bounds on the error of F and B: the fit weighs each part's errors by them
TOLERANCE = {"block": 0.20, "embed": 0.35, "head": 0.35}
# Where the fit starts: round guesses (the fit scales each by a factor in 1e-3..1e3)
INITIAL = {
    "eta_max": 0.8, "half_flops": 8e10, "misaligned": 0.2, "launch_forward_s": 80e-6,
    "launch_backward_s": 200e-6, "block_forward_bytes": 3.0, "block_backward_bytes": 5.0,
    "loss_bytes": 45.0, "launch_embed_s": 80e-6, "embed_forward_bytes": 25.0,
    "embed_weight_bytes": 50.0, "position_weight_bytes": 80.0, "adamw_bytes": 50.0,
    "launch_update_s": 150e-6,
}  # fmt: skip
POWER = 8  # least squares of the 16th powers: close to minimising the worst error


def measured_rows(source: str = "h200") -> list[tuple[ModelShape, str, object]]:
    """(shape, part, row) of every row of a profile (the built-in H200 one by default)."""
    profile = load_profile(source)
    out = []
    for (part, h, heads, ffn, swiglu, vocab, seq, mb), row in profile.rows.items():
        shape = ModelShape(
            layers=1, hidden=h, heads=heads, ffn=ffn, vocab=vocab, seq=seq, micro_batch=mb,
            swiglu=bool(swiglu),
        )  # fmt: skip
        out.append((shape, part, row))
    return out


def errors(fit: RooflineFit, rows, gpu: str = "h200") -> np.ndarray:
    """Relative errors (predicted / measured - 1): forward, backward, I, W, AdamW per row."""
    out = []
    for shape, part, row in rows:
        f, i, w = part_times(shape, part, GPUS[gpu], "bf16", fit)
        u = update_time(row.params, GPUS[gpu], fit)
        out.append(
            [
                f * 1e3 / row.forward_ms - 1,
                (i + w) * 1e3 / row.backward_ms - 1,
                i * 1e3 / max(row.backward_input_ms, 1e-4) - 1,
                w * 1e3 / max(row.backward_weight_ms, 1e-4) - 1,
                u * 1e3 / row.adamw_ms - 1,
            ]
        )
    return np.array(out)


def report(fit: RooflineFit, rows, gpu: str = "h200") -> None:
    for part in ("block", "embed", "head"):
        for big in (True, False):
            sel = [r for r in rows if r[1] == part and (r[0].tokens >= MIN_TOKENS) == big]
            if not sel:
                continue
            e = np.abs(errors(fit, sel, gpu))
            text = "  ".join(
                f"{name} {np.median(e[:, k]):.1%}/{e[:, k].max():.1%}"
                for k, name in enumerate(("F", "B", "I", "W", "AdamW"))
            )
            print(f"{part:5s} {'>=' if big else '< '}{MIN_TOKENS} tokens ({len(sel):2d} rows) "
                  f"median/worst: {text}")  # fmt: skip


def fit(rows) -> RooflineFit:
    big = [r for r in rows if r[0].tokens >= MIN_TOKENS]
    x0 = np.array([INITIAL[n] for n in NAMES])

    tolerance = np.array([TOLERANCE[part] for _, part, _ in big])

    def residuals(scale: np.ndarray) -> np.ndarray:
        e = errors(RooflineFit(*(x0 * scale)), big)
        r = e[:, [0, 1, 4]] / tolerance[:, None]
        return (np.sign(r) * r**POWER).ravel()

    bounds = (np.full(len(x0), 1e-3), np.full(len(x0), 1e3))
    bounds[1][NAMES.index("eta_max")] = 1.0 / x0[NAMES.index("eta_max")]
    scale = least_squares(residuals, np.ones(len(x0)), bounds=bounds).x
    return RooflineFit(*(float(f"{v:.3g}") for v in x0 * scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="errors of H200_FIT only")
    parser.add_argument("--profile", default="h200", help="measurements to check against")
    parser.add_argument("--hardware", default="h200", choices=list(GPUS), help="their GPU")
    args = parser.parse_args()
    rows = measured_rows(args.profile)
    if args.check:
        report(H200_FIT, rows, args.hardware)
        return
    fitted = fit(rows)
    print("H200_FIT = RooflineFit(")
    for name in NAMES:
        print(f"    {name}={getattr(fitted, name)!r},")
    print(")")
    report(fitted, rows)


if __name__ == "__main__":
    main()
