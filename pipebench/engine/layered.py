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

from pipebench.objectives.layered import Layered


def objective_tuple(obj: Layered) -> tuple:
    """What the kernels receive of a layered objective, in the order they unpack it."""
    return (
        *obj.archs, obj.off, obj.act_size, obj.saved_size, obj.init,
        obj.data_f, obj.data_t, obj.data_i, obj.examples, obj.eval_rows, obj.sampling,
        obj.batch_size,
    )  # fmt: skip
