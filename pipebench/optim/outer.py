"""localsgd's DiLoCo options as hyper-parameter fields (the kernels are in diloco.py).

Apart from the kernels so that resolving a scenario (`validate`) loads no NumPy.
"""

from __future__ import annotations

# DiLoCo's published outer optimizer; plain SGD defaults to the plain average.
OUTER_DEFAULTS = {"sgd": {"lr": 1.0, "momentum": 0.0}, "nesterov": {"lr": 0.7, "momentum": 0.9}}


def outer_params(options: dict[str, object]) -> dict[str, float]:
    """The hyper-parameter fields (optim.HYPER_FIELDS) of localsgd's DiLoCo options, or {}."""
    outer = options.get("outer")
    fragments = options.get("fragments")
    quantize = options.get("quantize")
    overlap, alpha = options.get("overlap_steps") or 0, options.get("alpha") or 0.0
    if outer is None and fragments in (None, 1) and quantize is None and not overlap and not alpha:
        return {}  # plain averaging
    outer = dict(outer or {"name": "sgd"})
    values = OUTER_DEFAULTS[str(outer["name"])] | {k: v for k, v in outer.items() if k != "name"}
    return {
        "outer_lr": float(values["lr"]),
        "outer_momentum": float(values["momentum"]),
        "outer_nesterov": float(outer["name"] == "nesterov"),
        "fragments": float(fragments or 1),
        "quantize": float(quantize or 0),
        "overlap_steps": float(overlap),
        "alpha": float(alpha),
    }
