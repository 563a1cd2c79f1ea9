"""Optimizers: per-stage state, stepped only when the schedule says so.

Each optimizer is a numba kernel in its own module; `step.apply_step` is the
replay's one entry point, compiled for the run's optimizer only (by its state).
Hyper-parameters travel as one float array laid out as `HYPER_FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Layout of the hyper-parameter array every kernel receives (optim.step reads the positions).
HYPER_FIELDS = ("lr", "momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay",
                "ns_steps", "adam_lr", "warmup", "cosine", "ef", "predict",
                "delay_compensation", "outer_lr", "outer_momentum", "outer_nesterov",
                "fragments", "delay_lr", "delay_lr_warmup", "quantize", "lookahead",
                "overlap_steps", "alpha", "delay_compensation_adaptive")  # fmt: skip
# Fields every optimizer takes, with their defaults: the lr schedule and the delay
# corrections (`scenario.OptimizerSpec` declares them with these defaults).
SHARED_DEFAULTS: dict[str, int | float | bool | str | None] = {
    "warmup": 0,
    "cosine": False,
    "ef": False,
    "predict": False,
    "delay_compensation": 0.0,
    "delay_compensation_adaptive": False,
    "delay_lr": None,
    "delay_lr_warmup": 100,
}
SHARED_FIELDS = tuple(SHARED_DEFAULTS)
# `delay_lr` values, coded in the hyper-parameter array by their position from 1.
DELAY_LR_RULES = ("pipemare",)
# Fields a schedule's options fill in: localsgd's outer optimizer (optim.diloco).
SCHEDULE_FIELDS = ("outer_lr", "outer_momentum", "outer_nesterov", "fragments", "quantize",
                   "overlap_steps", "alpha")  # fmt: skip


@dataclass(frozen=True)
class OptimizerInfo:
    code: int  # the number optim.step reads (MOMENTS) and the replay passes Muon its matrices by
    summary: str
    defaults: dict[str, float | bool]  # the hyper-parameters it takes, besides lr
    state: int = 0  # fp32 values it keeps per parameter (moments), for memory in bytes


OPTIMIZERS: dict[str, OptimizerInfo] = {
    "sgd": OptimizerInfo(0, "plain SGD: w -= lr g", {}),
    "momentum": OptimizerInfo(
        1,
        "heavy-ball momentum (v = mu v + g; w -= lr v), or Nesterov (w -= lr (g + mu v)), or "
        "the look-ahead of asynchronous pipelines (lookahead: Ajanthan et al. 2025)",
        {"momentum": 0.9, "nesterov": False, "lookahead": False},
        state=1,
    ),
    "adamw": OptimizerInfo(
        2,
        "Adam with bias correction and decoupled weight decay",
        {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
        state=2,
    ),
    "muon": OptimizerInfo(
        3,
        "Muon: Nesterov momentum orthogonalised by Newton-Schulz per weight matrix; "
        "AdamW (adam_lr) for embeddings, gains, biases and the head",
        {
            "momentum": 0.95,
            "nesterov": True,
            "ns_steps": 5,
            "adam_lr": 3e-3,
            "beta1": 0.9,
            "beta2": 0.95,
            "eps": 1e-8,
            "weight_decay": 0.0,
        },
        state=1,  # the momentum (counted for every parameter, AdamW's part included)
    ),
}


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of a training precision: the weights a pass reads (one copy per
    weight version kept), the gradients, and the fp32 master copy the optimizer steps."""

    weights: int
    grads: int
    master: int


# Mixed precision as Megatron-LM counts it without a distributed optimizer: bf16
# weights, fp32 gradients and fp32 master weights, so AdamW takes 2 + 4 + 4 + 8 = 18
# bytes per parameter.
PRECISIONS: dict[str, Precision] = {
    "fp32": Precision(weights=4, grads=4, master=0),
    "bf16": Precision(weights=2, grads=4, master=4),
}
FP32_BYTES = 4  # an optimizer's state is fp32


def static_bytes_per_param(optimizer: str, precision: str) -> int:
    """What a parameter costs besides its weight versions: gradient, master copy, state."""
    kept = PRECISIONS[precision]
    return kept.grads + kept.master + FP32_BYTES * OPTIMIZERS[optimizer].state


def hyper_array(lr: float, params: dict[str, float | bool]) -> np.ndarray:
    """The float array the kernels read: lr, then every field (0 where it does not apply)."""
    import numpy as np  # here: `pipebench list` reads this module's tables without NumPy

    values = {"lr": lr, **params}
    return np.array([float(values.get(name, 0.0)) for name in HYPER_FIELDS])
