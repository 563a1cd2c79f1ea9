"""What each model chunk holds in parameters and bytes, from the shape or from a profile.

Chunk c holds `layer_split[c]` blocks; chunk 0 also holds the embedding and
the last chunk the head (norm, vocabulary projection and loss).

Bytes follow the layout of the shipped measurements ("bf16": fp32 parameters
under bf16 autocast, as people train; "fp32": no autocast). Fitted to
`data/h200_layer_costs.csv` (all 144 rows within 4% at micro-batch x seq >=
4096 tokens), one micro-batch's forward keeps per token

- a block: its two LayerNorm inputs in fp32 (2h values of 4 bytes) and 8h + 2ffn
  values in the compute precision (8h + 4ffn with SwiGLU): the norms' outputs,
  Q, K, V, attention output, MLP input and activations; under autocast also a
  bf16 copy of its weights (2 bytes per parameter);
- the embedding: its fp32 output (h values);
- the head: the norm's fp32 input and fp32 logits for the loss (V + h values of
  4 bytes), the norm's output in the compute precision, and a bf16 copy of
  the projection under autocast.

A split backward (I now, W later) keeps for W the inputs and the output
gradients of every matrix product (GELU block 8h + 2ffn values, SwiGLU 8h + 3ffn;
the head h + V) and the embedding's fp32 output gradient. The activation a
chunk sends on is the fp32 residual stream (T x h x 4 bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipebench.errors import InputError
from pipebench.hardware.model import ModelShape

if TYPE_CHECKING:  # NumPy loads where sizes are computed: the scenario's models need none
    import numpy as np

    from pipebench.hardware.profile import Profile

PRECISIONS = {"bf16": 2, "fp32": 4}  # bytes of a value in the compute precision
WIDE = 4  # norms' inputs, the loss's logits, the residual stream: fp32 in both layouts


@dataclass(frozen=True)
class ChunkSizes:
    """What each model chunk holds, in parameters and bytes (arrays of length C)."""

    params: np.ndarray  # int64: parameters of the chunk
    act_bytes: np.ndarray  # float64: bytes one micro-batch's forward keeps for its backward
    w_bytes: np.ndarray  # float64: bytes kept from I until W (split backward) per micro-batch
    send_bytes: np.ndarray  # float64: activation bytes the chunk sends to the next one


def compute_bytes(precision: str) -> int:
    """Bytes of one value in `precision`; `InputError` for an unknown one."""
    if precision not in PRECISIONS:
        raise InputError(
            "model.precision", f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}"
        )
    return PRECISIONS[precision]


def part_act_bytes(model: ModelShape, part: str, precision: str) -> float:
    """Bytes one micro-batch's forward through `part` keeps for its backward."""
    nb = compute_bytes(precision)
    h, f, T = model.hidden, model.ffn, model.tokens
    if part == "embed":
        return float(T * h * WIDE)
    # a bf16 copy of the weights autocast made (the block's norms and biases too)
    cast_copy = 2.0 * model.part_params(part) if precision == "bf16" else 0.0
    if part == "head":
        return T * ((model.vocab + h) * WIDE + h * nb) + cast_copy
    narrow = 8 * h + (4 if model.swiglu else 2) * f
    return T * (2 * h * WIDE + narrow * nb) + cast_copy


def part_w_bytes(model: ModelShape, part: str, precision: str) -> float:
    """Bytes `part` keeps from its input-gradient pass (I) until its weight-gradient pass (W)."""
    nb = compute_bytes(precision)
    h, f, T = model.hidden, model.ffn, model.tokens
    if part == "embed":
        return float(T * h * WIDE)
    if part == "head":
        return float(T * (h + model.vocab) * nb)
    return float(T * (8 * h + (3 if model.swiglu else 2) * f) * nb)


def check_split(model: ModelShape, layer_split: Sequence[int]) -> np.ndarray:
    """`layer_split` as an int64 array, or an `InputError`: one count >= 0 per chunk, summing
    to the model's layers."""
    import numpy as np

    split = np.asarray(list(layer_split), dtype=np.int64)
    if split.ndim != 1 or len(split) == 0 or np.any(split < 0):
        raise InputError(
            "layers_per_stage", f"one layer count >= 0 per chunk, got {list(layer_split)}"
        )
    if int(split.sum()) != model.layers:
        raise InputError(
            "layers_per_stage",
            f"the counts sum to {int(split.sum())}, the model has {model.layers} layers",
        )
    return split


def _assemble(split: np.ndarray, block: float, embed: float, head: float) -> np.ndarray:
    """Per-chunk totals of a per-part quantity: blocks, embedding first, head last."""
    out = split * float(block)
    out[0] += embed
    out[-1] += head
    return out


def _sizes(
    model: ModelShape, split: np.ndarray, precision: str, params: dict, act: dict
) -> ChunkSizes:
    import numpy as np

    w = {p: part_w_bytes(model, p, precision) for p in ("block", "embed", "head")}
    send = np.full(len(split), float(model.tokens * model.hidden * WIDE))
    send[-1] = 0.0
    par = split * np.int64(params["block"])
    par[0] += params["embed"]
    par[-1] += params["head"]
    return ChunkSizes(
        params=par,
        act_bytes=_assemble(split, act["block"], act["embed"], act["head"]),
        w_bytes=_assemble(split, w["block"], w["embed"], w["head"]),
        send_bytes=send,
    )


def chunk_sizes(model: ModelShape, layer_split: Sequence[int], precision: str) -> ChunkSizes:
    """Parameters and bytes of every chunk, from the analytic model."""
    split = check_split(model, layer_split)
    parts = ("block", "embed", "head")
    return _sizes(
        model,
        split,
        precision,
        params={p: model.part_params(p) for p in parts},
        act={p: part_act_bytes(model, p, precision) for p in parts},
    )


def profile_chunk_sizes(
    profile: Profile, model: ModelShape, layer_split: Sequence[int], precision: str
) -> ChunkSizes:
    """The same from a measured profile: parameters and activation bytes from its rows."""
    split = check_split(model, layer_split)
    rows = {p: profile.row(model, p) for p in ("block", "embed", "head")}
    return _sizes(
        model,
        split,
        precision,
        params={p: r.params for p, r in rows.items()},
        act={p: r.saved_bytes for p, r in rows.items()},
    )
