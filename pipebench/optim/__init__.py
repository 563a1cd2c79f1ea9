"""Optimizers: per-stage state, stepped only when the schedule says so.

Each optimizer is a numba kernel in its own module; `step.apply_step`
dispatches on a small integer code so the replay loop stays one function.
Hyper-parameters travel as one float array laid out as `HYPER_FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Layout of the hyper-parameter array every kernel receives (optim.step reads the positions).
HYPER_FIELDS = ("lr", "momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay",
                "ns_steps", "adam_lr", "warmup", "cosine", "ef", "predict",
                "delay_compensation", "outer_lr", "outer_momentum", "outer_nesterov",
                "fragments", "delay_lr", "delay_lr_warmup", "quantize", "lookahead",
                "overlap_steps", "alpha", "delay_compensation_adaptive")  # fmt: skip
# Fields every optimizer takes: the lr schedule and the delay corrections.
SHARED_FIELDS = ("warmup", "cosine", "ef", "predict", "delay_compensation",
                 "delay_compensation_adaptive", "delay_lr", "delay_lr_warmup")  # fmt: skip
# `delay_lr` values, coded in the hyper-parameter array by their position from 1.
DELAY_LR_RULES = ("pipemare",)
# Fields a schedule's options fill in: localsgd's outer optimizer (optim.diloco).
SCHEDULE_FIELDS = ("outer_lr", "outer_momentum", "outer_nesterov", "fragments", "quantize",
                   "overlap_steps", "alpha")  # fmt: skip


@dataclass(frozen=True)
class OptimizerInfo:
    code: int  # what optim.step.apply_step dispatches on
    summary: str
    defaults: dict[str, float | bool]  # the hyper-parameters it takes, besides lr


OPTIMIZERS: dict[str, OptimizerInfo] = {
    "sgd": OptimizerInfo(0, "plain SGD: w -= lr g", {}),
    "momentum": OptimizerInfo(
        1,
        "heavy-ball momentum (v = mu v + g; w -= lr v), or Nesterov (w -= lr (g + mu v)), or "
        "the look-ahead of asynchronous pipelines (lookahead: Ajanthan et al. 2025)",
        {"momentum": 0.9, "nesterov": False, "lookahead": False},
    ),
    "adamw": OptimizerInfo(
        2,
        "Adam with bias correction and decoupled weight decay",
        {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
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
    ),
}


def hyper_array(lr: float, params: dict[str, float | bool]) -> np.ndarray:
    """The float array the kernels read: lr, then every field (0 where it does not apply)."""
    values = {"lr": lr, **params}
    return np.array([float(values.get(name, 0.0)) for name in HYPER_FIELDS])
