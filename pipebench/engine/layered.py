"""What the replay hands a layered objective.

The walk over the trace is `replay.py`'s, one kernel for both forms of
objective; what differs is the work of F and B. F(s, m) runs stage s at
version vF on the input stage s-1 handed over, keeps what its backward needs
(one slot per micro-batch in flight) and hands its output on. B(s, m)
multiplies by version vB: the stashed weights for pd and 2bw (vB = vF), the
current ones for paci, which reuses the forward's saved activations, or
recomputes them first with the current weights when `recompute` is set. Loss
samples run the whole model at the visible weights on the objective's fixed
evaluation set (`replay._loss_at`).
"""

from __future__ import annotations

import numpy as np

from pipebench.objectives.layered import Layered


def objective_tuple(obj: Layered) -> tuple:
    """What the kernels receive of a layered objective, in the order they unpack it."""
    return (
        *obj.archs, obj.off, obj.act_size, obj.saved_size, obj.init,
        obj.data_f, obj.data_t, obj.data_i, obj.examples, obj.eval_rows, obj.sampling,
        obj.batch_size,
    )  # fmt: skip


def stage_kernel_types(obj: Layered) -> tuple[tuple, tuple]:
    """The numba argument types of `stage_forward` and `stage_backward` as both replay
    kernels call them: every array of a micro-batch is a view of one row of a C array,
    which numba types as a one-dimensional C array (engine/precompile.py compiles them
    ahead of the replay kernels with these)."""
    from numba import typeof  # numba only where kernels are compiled (pipebench/jit.py)

    row, rows = np.zeros(0), np.zeros(0, np.int64)
    common = (*obj.archs, np.int64(0), row, obj.data_f, obj.data_t, obj.data_i, rows)
    forward = (*common, row, row, row)  # x_in, saved, x_out
    backward = (*common, row, row, row, row)  # saved, g_out, g_in, grad
    return tuple(map(typeof, forward)), tuple(map(typeof, backward))
