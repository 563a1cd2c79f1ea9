"""ZB-V: two chunks per rank in a V, backward split into I and W.

Qi, Wan, Huang, Lin, "Pipeline Parallelism with Controllable Memory"
(NeurIPS 2024, arXiv:2405.15362) and the ZB-V schedule of "Zero Bubble
Pipeline Parallelism" (arXiv:2401.10241, Section 6); the order of PyTorch's
`ScheduleZBVZeroBubble`. Rank r holds chunks r (going down) and 2p - 1 - r
(coming back), so the last chunk's output returns to rank 0. Rank r:
2(p - r) - 1 forwards of its first chunk; r pairs F(second), F(first);
p - r rounds F, I, W of the second chunk; then F, I, W of the first chunk
and of the second in turn while forwards remain; then r pairs I(first),
I(second) and p - r pairs I, W of the first chunk; the W's left last. With
F = I = W the steady state has no bubble.
"""

from pipebench.schedules.base import (
    Program,
    ProgramBuilder,
    check_accumulate,
    program_schedule,
    times_ranks,
    v_placement,
)


def build(ranks: int, options: dict[str, object]) -> Program:
    m = check_accumulate("zbv", ranks, options, least=1)
    p = ranks
    b = ProgramBuilder(v_placement(p), m)
    n = max(2 * p - 1, m)  # the order for at least 2p - 1; done() drops micro-batches >= m
    for r in range(p):
        down, up = r, 2 * p - 1 - r
        f = b.f
        for _ in range(2 * (p - r) - 1):
            f(down)
        for _ in range(r):
            f(up)
            f(down)
        for _ in range(p - r):
            f(up)
            b.i(up)
            b.w(up)
        while b.forwards(up) < b.forwards(down) or b.forwards(down) < n:
            if b.forwards(down) < n:
                f(down)
            b.i(down)
            b.w(down)
            f(up)
            b.i(up)
            b.w(up)
        for _ in range(r):
            b.i(down)
            b.i(up)
        for _ in range(p - r):
            b.i(down)
            b.w(down)
        for chunk in (up, down):
            while b.pending_w(chunk):
                b.w(chunk)
    return b.done()


SCHEDULE = program_schedule(
    name="zbv",
    summary="ZB-V: 2 chunks per rank in a V, split backward, W fills the bubbles; flush",
    defaults=lambda stages: {"accumulate": times_ranks(2, stages), "weight_grad": "half"},
    build=build,
)
