"""Interleaved 1F1B: v chunks per rank, placed in a loop, in Megatron-LM's order.

Narayanan et al., "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM" (SC'21, arXiv:2104.04473), Section 2.2.2; the
same order as PyTorch's `ScheduleInterleaved1F1B`. Chunk c runs on rank
c mod p. Micro-batches go through the chunks of a rank in rounds of p: the
k-th forward of a rank is on its chunk (k // p) mod v, the k-th backward of
its steady phase on chunk v - 1 - (k // p) mod v. Rank r warms up with
(v - 1) p + 2(p - 1 - r) forwards, then alternates F and B, then drains.
Per mini-batch (chunk costs F, B): m v (F + B) + (p - 1)(F + B), a bubble of
(p - 1) / (v m) of the 1F1B work. Needs m a multiple of p.
"""

from pipebench.schedules.base import (
    Program,
    ProgramBuilder,
    check_accumulate,
    looped_placement,
    program_schedule,
)


def build(ranks: int, options: dict[str, object]) -> Program:
    m = check_accumulate("interleaved-1f1b", ranks, options, least=ranks, multiple=ranks)
    v = int(options["chunks"])
    b = ProgramBuilder(looped_placement(ranks, v), m)
    total = v * m  # forwards (and backwards) per rank
    for r in range(ranks):
        warmup = min((v - 1) * ranks + 2 * (ranks - 1 - r), total)

        def forward_chunk(k: int, r: int = r) -> int:
            return (k // ranks) % v * ranks + r

        def backward_chunk(k: int, r: int = r) -> int:
            return (v - 1 - (k // ranks) % v) * ranks + r

        for k in range(warmup):
            b.f(forward_chunk(k))
        for k in range(total - warmup):
            b.f(forward_chunk(warmup + k))
            b.b(backward_chunk(k))
        for k in range(total - warmup, total):
            b.b(backward_chunk(k))
    return b.done()


SCHEDULE = program_schedule(
    name="interleaved-1f1b",
    summary="Interleaved 1F1B (Megatron): `chunks` per rank in a loop; m a multiple of p; flush",
    defaults=lambda stages: {"accumulate": stages, "chunks": 2},
    build=build,
)
