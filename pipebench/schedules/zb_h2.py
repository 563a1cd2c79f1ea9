"""ZB-H2: more warm-up forwards, W's postponed, and a step that does not wait for the others.

Qi, Wan, Huang, Lin, "Zero Bubble Pipeline Parallelism" (ICLR 2024,
arXiv:2401.10241), schedule ZB-H2 (Figure 4) with post-update validation
(Section 5): each rank steps as soon as its own W's are done and starts the
next mini-batch at once, so consecutive mini-batches overlap in a
parallelogram; the weights are still those of minibatch SGD, because a rank
only runs the next mini-batch's forwards after its own step.

Rank r: w = 2(p - r) - 1 warm-up forwards (2p - 1 activations on rank 0);
then I, F while forwards remain, postponing every W; then w rounds of I, W;
then the postponed W's. This is the order the paper draws at F = I = W
(the input gradient first, then a forward while fewer than w micro-batches
wait for theirs, then a W). Per mini-batch, in steady state:
m(F + I + W) + (p - 1) max(0, F + I - 2W).
"""

from pipebench.schedules.base import (
    Program,
    ProgramBuilder,
    check_accumulate,
    program_schedule,
    times_ranks,
)


def build(ranks: int, options: dict[str, object]) -> Program:
    m = check_accumulate("zb-h2", ranks, options, least=1)
    import numpy as np  # here: `pipebench list` loads the schedules without NumPy

    b = ProgramBuilder(np.arange(ranks, dtype=np.int64), m)
    for r in range(ranks):
        warmup = min(2 * (ranks - r) - 1, m)
        for _ in range(warmup):
            b.f(r)
        for _ in range(m - warmup):
            b.i(r)
            b.f(r)
        for _ in range(warmup):
            b.i(r)
            b.w(r)
        while b.pending_w(r):
            b.w(r)
    return b.done(flush=False)


SCHEDULE = program_schedule(
    name="zb-h2",
    summary="ZB-H2: split backward, 2(p-r)-1 warm-up forwards, W postponed; no global sync",
    defaults=lambda stages: {"accumulate": times_ranks(2, stages), "weight_grad": "half"},
    build=build,
)
