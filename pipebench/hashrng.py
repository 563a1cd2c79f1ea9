"""Counter-based random numbers: pure functions of (seed, stream, a, b).

Every random draw in pipebench (jitter, rpd's blocks and delays, minibatch
sampling, gradient noise) is a hash of integers that name it, not a step of
a stateful generator. A draw is therefore the same whatever order the
simulator or the replay visits it in, schedules compared under one seed see
the same numbers, and nothing needs to be stored to regenerate it.
"""

from __future__ import annotations

import math

from pipebench.jit import njit

_MASK32 = 0xFFFFFFFF


@njit(cache=True)
def mix32(x: int) -> int:
    """A 32-bit integer hash with good avalanche (two multiply-xorshift rounds)."""
    x = int(x) & _MASK32  # int(): plain Python ints when NUMBA_DISABLE_JIT=1
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    x ^= x >> 16
    return x


@njit(cache=True)
def uniform01(seed: int, stream: int, a: int, b: int) -> float:
    """A uniform number in (0, 1), a pure function of its four integer arguments."""
    h = mix32(int(seed) ^ mix32(int(stream) ^ mix32(int(a) ^ mix32(int(b)))))
    return (h + 0.5) / 4294967296.0


@njit(cache=True)
def normal01(seed: int, stream: int, a: int, b: int) -> float:
    """A standard normal number (Box-Muller on two hashed uniforms)."""
    u1 = uniform01(seed, stream, a, 2 * b)
    u2 = uniform01(seed, stream, a, 2 * b + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True)
def _half_width(n: int) -> int:
    """The smallest h >= 1 with 4^h >= n: `permuted`'s Feistel network works on 2h bits."""
    half = 1
    while (1 << (2 * half)) < n:
        half += 1
    return half


@njit(cache=True)
def _round(seed: int, stream: int, epoch: int, half: int, r: int, x: int) -> int:
    """Round r of `permuted`'s Feistel network on x = (left << half) | right, 4^half > x:
    (right, left ^ f(right)), f a hash of (seed, stream, epoch, r, right)."""
    mask = (1 << half) - 1
    right = x & mask
    f = mix32(int(seed) ^ mix32(int(stream) ^ mix32(int(epoch) ^ mix32(r * 65536 + right))))
    return (right << half) | ((x >> half) ^ (f & mask))


@njit(cache=True)
def permuted(seed: int, stream: int, epoch: int, i: int, n: int) -> int:
    """Position i of a seeded permutation of 0 .. n-1, one permutation per epoch.

    A 4-round Feistel network (`_round`) is a bijection on [0, 4^h) for any
    round function; walking the cycle until the value falls below n restricts it
    to a bijection on [0, n). No table is stored, so any epoch's shuffle costs
    O(1) per element.
    """
    half = _half_width(n)
    x = i
    while True:
        for r in range(4):
            x = _round(seed, stream, epoch, half, r, x)
        if x < n:
            return x


@njit(cache=True)
def permuted_run(seed: int, stream: int, epoch: int, first: int, n: int, count: int, out) -> None:
    """out[i] = permuted(seed, stream, epoch, first + i, n) for i < count.

    Every position's first pass runs in one loop without a branch, which the
    compiler vectorises; only the positions it left outside [0, n) then walk on,
    one at a time. One call per position waited on each walk's unpredictable end.
    """
    half = _half_width(n)
    for i in range(count):
        out[i] = first + i
    for r in range(4):  # rounds outside, positions inside: the inner loop vectorises
        for i in range(count):
            out[i] = _round(seed, stream, epoch, half, r, out[i])
    for i in range(count):
        x = out[i]
        while x >= n:
            for r in range(4):
                x = _round(seed, stream, epoch, half, r, x)
        out[i] = x
