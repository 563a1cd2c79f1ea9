"""DualPipeV: two chunks per rank in a V, F&B pairs overlapping a forward with a backward.

DeepSeek-AI, "DeepSeek-V3 Technical Report" (arXiv:2412.19437), Section
3.2.1, and the "cut-in-half" DualPipeV of github.com/deepseek-ai/DualPipe;
the order of PyTorch's `ScheduleDualPipeV`. Rank r holds chunks r and
2p - 1 - r. Its eight phases: 2(p - r - 1) forwards of the first chunk;
r + 1 pairs of forwards F(first), F(second); p - r - 1 rounds of I and a
deferred W of the second chunk, then its forward; m - 2p + r + 1 rounds of
two F&B pairs (forward of one chunk with the full backward of the other;
the last rank runs its first pair as F then B); p - r - 1 rounds of a full
backward of the second chunk and an F&B; r + 1 rounds of backwards of both
chunks, the later half as I with deferred W; p - r - 1 rounds of a deferred
W and a backward of the first chunk; the remaining W's. The README of the
DualPipe repository gives the bubble (PP/2 - 1)(F&B + B - 3W) for 2·PP/2
chunks on PP/2 ranks, i.e. (p - 1)(F&B + B - 3W). Needs m >= 2p.
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
    p = ranks
    m = check_accumulate("dualpipev", ranks, options, least=2 * p)
    b = ProgramBuilder(v_placement(p), m)
    for r in range(p):
        first, second = r, 2 * p - 1 - r
        for _ in range(2 * (p - r - 1)):
            b.f(first)
        for _ in range(r + 1):
            b.f(first)
            b.f(second)
        for _ in range(p - r - 1):
            b.i(second, defer_w=True)
            b.pop_w(r)
            b.f(second)
        for k in range(m - 2 * p + r + 1):
            if k == 0 and r == p - 1:  # the authors keep this pair apart: a smaller bubble
                b.f(first)
                b.b(second)
            else:
                b.pair(first, second)
            b.pair(second, first)
        for _ in range(p - r - 1):
            b.b(second)
            b.pair(second, first)
        split = False  # from the middle of this phase on, backwards defer their W
        half = (r + 1) // 2
        for k in range(r + 1):
            split = split or (k == half and r % 2 == 1)
            b.i(second, defer_w=True) if split else b.b(second)
            split = split or (k == half and r % 2 == 0)
            b.i(first, defer_w=True) if split else b.b(first)
        for _ in range(p - r - 1):
            b.pop_w(r)
            b.i(first, defer_w=True) if split else b.b(first)
        for _ in range(r + 1):
            b.pop_w(r)
    return b.done()


SCHEDULE = program_schedule(
    name="dualpipev",
    summary="DualPipeV: 2 chunks per rank in a V, F&B overlap, split backward at the ends; flush",
    defaults=lambda stages: {
        "accumulate": times_ranks(2, stages),
        "weight_grad": "half",
        "overlap": "sum",
    },
    build=build,
)
