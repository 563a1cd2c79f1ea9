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
def permuted(seed: int, stream: int, epoch: int, i: int, n: int) -> int:
    """Position i of a seeded permutation of 0 .. n-1, one permutation per epoch.

    A 4-round Feistel network is a bijection on [0, 4^h) for any round
    function; walking the cycle until the value falls below n restricts it to
    a bijection on [0, n). No table is stored, so any epoch's shuffle costs
    O(1) per element.
    """
    half = 1
    while (1 << (2 * half)) < n:
        half += 1
    mask = (1 << half) - 1
    x = i
    while True:
        left = x >> half
        right = x & mask
        for r in range(4):
            f = mix32(int(seed) ^ mix32(int(stream) ^ mix32(int(epoch) ^ mix32(r * 65536 + right))))
            left, right = right, left ^ (f & mask)
        x = (left << half) | right
        if x < n:
            return x
