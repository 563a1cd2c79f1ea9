"""A charlm model's layout over its pipeline stages, and its initial parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipebench.errors import InputError
from pipebench.objectives.charlm.spec import (
    _block_param_fields,
    _block_saved_sizes,
    _boundaries,
    _emb_param_fields,
    _head_param_fields,
    _head_saved_sizes,
    _numel,
    _tensors,
)
from pipebench.objectives.charlm.views import stage_sizes


@dataclass(frozen=True, eq=False)
class CharLMLayout:
    """Where everything lives: `spec` for the kernels, `off[s]:off[s+1]` stage s's params,
    `act_size` floats between stages, `saved_size[s]` floats saved per micro-batch in flight
    (for s >= 1 the first `act_size` of them hold the stage's input), `matrices` the
    (offset, rows, cols) of every block matrix (q, k, v, attention out, MLP in and out)."""

    spec: np.ndarray
    off: np.ndarray
    act_size: int
    saved_size: np.ndarray
    matrices: np.ndarray

    def tensors(self) -> list[tuple[str, int, tuple[int, ...]]]:
        """(name, flat offset, shape) of every parameter tensor, in storage order."""
        return _tensors(self.spec)


def _positive(field: str, value: int) -> None:
    if value < 1:
        raise InputError(field, f"must be >= 1, got {value}")


def charlm_layout(
    vocab: int, width: int, heads: int, context: int, batch: int, layers: int, stages: int
) -> CharLMLayout:
    """The layout of a model with `layers` blocks over `stages` pipeline stages.

    Stage 0 holds the embeddings and stage S-1 the final LayerNorm and head; with
    S >= 3 the blocks are spread as evenly as possible over stages 1..S-2 (the
    earlier ones take the extra), with S == 2 they join the embeddings on stage 0.
    """
    if vocab < 2:  # the vocabulary is the corpus's alphabet
        raise InputError("objective.corpus", f"needs >= 2 distinct characters, got {vocab}")
    _positive("objective.width", width)
    _positive("objective.heads", heads)
    if width % heads:
        raise InputError("objective.heads", f"must divide width {width}, got {heads}")
    _positive("objective.context", context)
    _positive("objective.batch_size", batch)
    _positive("objective.layers", layers)
    _positive("pipeline.stages", stages)
    if stages >= 3 and layers < stages - 2:
        raise InputError(
            "objective.layers",
            f"must be >= stages - 2 = {stages - 2} (one block per middle stage), got {layers}",
        )
    V, D, H, T, B, L, S = vocab, width, heads, context, batch, layers, stages
    N = B * T
    if S >= 3:
        per, extra = divmod(L, S - 2)
        counts = [0] + [per + (i < extra) for i in range(S - 2)] + [0]
    else:
        counts = [L] + [0] * (S - 1)
    # Scratch: the block forward's qkv or GELU output and MLP output (5ND); the backward's
    # two activation gradients (2ND), then a block's (9ND + 4D^2) or the head's.
    ND = N * D
    spec = [V, D, H, T, B, S, L, 5 * ND, 2 * ND + max(9 * ND + 4 * D * D, N * V + ND + V * D)]
    spec += _boundaries(_numel(_emb_param_fields(V, D, T)))
    spec += _boundaries(_numel(_block_param_fields(D)))
    spec += _boundaries(_numel(_head_param_fields(V, D)))
    spec += _boundaries(_block_saved_sizes(N, D, B * H * T * T))
    spec += _boundaries(_head_saved_sizes(N, D, V))
    spec += _boundaries(counts)
    spec_array = np.array(spec, dtype=np.int64)
    sizes = np.array([stage_sizes(spec_array, s) for s in range(S)], dtype=np.int64)
    matrices = []
    for name, at, (rows, cols) in (t for t in _tensors(spec_array) if len(t[2]) == 2):
        if name.endswith("attn.w_qkv"):  # q, k and v are orthogonalised separately
            matrices += [(at + i * D * D, D, D) for i in range(3)]
        elif name.startswith("block"):
            matrices.append((at, rows, cols))
    return CharLMLayout(
        spec=spec_array,
        off=np.concatenate([[0], np.cumsum(sizes[:, 0])]).astype(np.int64),
        act_size=N * D,
        saved_size=sizes[:, 1].copy(),
        matrices=np.array(matrices, dtype=np.int64),
    )


def charlm_init(layout: CharLMLayout, seed: int) -> np.ndarray:
    """GPT-2 style: matrices and embeddings normal(0, 0.02), LayerNorm gains 1, biases 0.

    One draw over the whole flat vector, so the parameters do not depend on the stages.
    """
    params = np.random.default_rng(seed).normal(0.0, 0.02, int(layout.off[-1]))
    for name, at, shape in layout.tensors():
        if len(shape) == 1:
            params[at : at + shape[0]] = 1.0 if name.endswith(".g") else 0.0
    return params
