"""Layered objectives: every stage a real nonlinear layer (MLP, character-level transformer).

Unlike block-linear objectives, a stage's forward produces activations the
next stage consumes, and the weights a backward multiplies by matter, so
stashing (pd, 2bw) and not stashing (paci) train differently. The replay
talks to every layered objective through three kernels, `stage_forward`,
`stage_backward` and `eval_loss` (its body `mean_loss` in the replay), which
take the architecture of either objective with the other one empty
(`Layered.archs`): numba compiles only the kernels of the objective a run uses.

Data travel as three plain arrays whatever the objective: `data_f` (float
inputs, one row per example), `data_t` (float regression targets) and
`data_i` (class labels, or the corpus's tokens). A micro-batch is a list of
`rows`: example indices, or the start positions of its token windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipebench.jit import njit
from pipebench.objectives import mlp
from pipebench.objectives.charlm import spec as charlm_spec
from pipebench.objectives.charlm.stages import charlm_backward, charlm_forward
from pipebench.objectives.kinds import LAYERED_KINDS
from pipebench.objectives.mlp import mlp_backward, mlp_forward

# The kernels hold the codes as constants: after changing LAYERED_KINDS, delete the numba cache.
MLP, CHARLM = (LAYERED_KINDS.index(kind) for kind in ("mlp", "charlm"))


@dataclass(frozen=True, eq=False)
class Layered:
    """A layered objective, ready for the replay."""

    kind: str  # one of LAYERED_KINDS
    description: str
    spec: np.ndarray  # int64 architecture, read by the kernels
    off: np.ndarray  # stage s owns flat weights [off[s], off[s+1])
    act_size: int  # floats passed from a stage to the next per micro-batch
    saved_size: np.ndarray  # floats each stage keeps per micro-batch for its backward
    matrices: np.ndarray  # (offset, rows, cols, out) of the weight matrices (Muon)
    init: np.ndarray  # initial weights, seeded by the objective's seed
    data_f: np.ndarray
    data_t: np.ndarray
    data_i: np.ndarray
    examples: int  # what minibatches are drawn from: examples, or training windows
    eval_rows: np.ndarray  # the fixed set the recorded loss is measured on
    sampling: int
    batch_size: int
    f_star: float | None

    smoothness = None  # unknown for a nonconvex model

    @property
    def code(self) -> int:
        """What the kernels dispatch on."""
        return LAYERED_KINDS.index(self.kind)

    @property
    def dim(self) -> int:
        return int(self.off[-1])

    @property
    def stages(self) -> int:
        return len(self.off) - 1

    @property
    def archs(self) -> tuple[tuple, tuple]:
        """((mlp architecture,), ()) or ((), (charlm architecture,)): what kernels take."""
        return ((self.spec,), ()) if self.code == MLP else ((), (self.spec,))

    def loss(self, weights: np.ndarray) -> float:
        """The recorded loss at `weights` (the replay computes the same in its samples)."""
        return eval_loss(
            *self.archs, self.off, self.act_size, self.saved_size, weights,
            self.data_f, self.data_t, self.data_i, self.eval_rows, self.batch_size,
        )  # fmt: skip

    def gradient(self, weights: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient on one minibatch, all stages at `weights` (for tests)."""
        grad = np.zeros(self.dim)
        value = full_backward(
            *self.archs, self.off, self.act_size, self.saved_size, weights,
            self.data_f, self.data_t, self.data_i, rows, grad,
        )  # fmt: skip
        return value, grad


@njit(cache=True)
def stage_forward(mlp_arch, lm_arch, s, params, data_f, data_t, data_i, rows, x_in, saved, x_out):
    """Forward of stage s for the micro-batch `rows`; the batch loss on the last stage.

    `mlp_arch` or `lm_arch` holds the objective's architecture, the other is
    empty (`Layered.archs`): numba reads `len()` of a tuple argument as a
    constant and prunes the other branch, so a run compiles only its own
    objective's kernels.
    """
    if len(lm_arch) == 0:
        return mlp_forward(mlp_arch[0], s, params, data_f, data_t, data_i, rows, x_in, saved, x_out)
    return charlm_forward(lm_arch[0], s, params, data_i, rows, x_in, saved, x_out)


@njit(cache=True)
def stage_backward(
    mlp_arch, lm_arch, s, params, data_f, data_t, data_i, rows, saved, g_out, g_in, grad
):
    """Backward of stage s: adds to `grad` (the stage's slice), writes dLoss/d(input) to g_in."""
    if len(lm_arch) == 0:
        mlp_backward(mlp_arch[0], s, params, data_f, data_t, data_i, rows, saved, g_out, g_in, grad)
    else:
        charlm_backward(lm_arch[0], s, params, data_i, rows, saved, g_out, g_in, grad)


# inline: typed into each caller rather than compiled as a kernel of its own, a level
# whose compilation (everything below it, again) took seconds of a first layered run
@njit(cache=True, inline="always")
def _chain_forward(
    mlp_arch, lm_arch, off, act_size, saved_size, w, data_f, data_t, data_i, rows, saved
):
    """Every stage's forward at weights `w`; returns the loss; saved[s] is stage s's store."""
    S = len(off) - 1
    x = np.zeros(act_size)
    y = np.zeros(act_size)
    value = 0.0
    for s in range(S):
        value = stage_forward(mlp_arch, lm_arch, s, w[off[s] : off[s + 1]], data_f, data_t,
                              data_i, rows, x, saved[s, : saved_size[s]], y)  # fmt: skip
        x, y = y, x
    return value


@njit(cache=True)
def eval_loss(mlp_arch, lm_arch, off, act_size, saved_size, w, data_f, data_t, data_i, rows,
              batch):  # fmt: skip
    """The exact mean loss over `rows`, `batch` of them at a time (at most the batch the
    buffers are sized for; any chunking gives the same mean)."""
    capacity = mlp_arch[0][mlp.BATCH] if len(lm_arch) == 0 else lm_arch[0][charlm_spec.BATCH]
    if batch < 1 or batch > capacity:
        raise ValueError("eval_loss: batch must be between 1 and the layout's batch size")
    if len(rows) == 0:
        raise ValueError("eval_loss: no rows")
    return mean_loss(mlp_arch, lm_arch, off, act_size, saved_size, w, data_f, data_t, data_i,
                     rows, batch)  # fmt: skip


# inline: the replay's loss sample (`replay._loss_at`) runs this without a kernel level of
# its own, which recompiled the whole forward below it (about 2-4 s of a first run)
@njit(cache=True, inline="always")
def mean_loss(mlp_arch, lm_arch, off, act_size, saved_size, w, data_f, data_t, data_i, rows,
              batch):  # fmt: skip
    """`eval_loss` without its checks of `rows` and `batch`, for callers that sized them."""
    saved = np.zeros((len(off) - 1, saved_size.max()))
    total = 0.0
    for lo in range(0, len(rows), batch):
        chunk = rows[lo : lo + batch]
        value = _chain_forward(mlp_arch, lm_arch, off, act_size, saved_size, w, data_f, data_t,
                               data_i, chunk, saved)  # fmt: skip
        total += value * len(chunk)
    return total / len(rows)


@njit(cache=True)
def full_backward(mlp_arch, lm_arch, off, act_size, saved_size, w, data_f, data_t, data_i, rows,
                  grad):  # fmt: skip
    """Loss of one minibatch and its gradient (added to `grad`), every stage at `w`."""
    S = len(off) - 1
    saved = np.zeros((S, saved_size.max()))
    value = _chain_forward(mlp_arch, lm_arch, off, act_size, saved_size, w, data_f, data_t,
                           data_i, rows, saved)  # fmt: skip
    g = np.zeros(act_size)
    g_next = np.zeros(act_size)
    for s in range(S - 1, -1, -1):
        stage_backward(mlp_arch, lm_arch, s, w[off[s] : off[s + 1]], data_f, data_t, data_i,
                       rows, saved[s, : saved_size[s]], g, g_next,
                       grad[off[s] : off[s + 1]])  # fmt: skip
        g, g_next = g_next, g
    return value
