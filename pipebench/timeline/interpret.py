"""Tiny timelines in Python: a process's first call of any compiled kernel costs about a second.

Numba's first dispatch in a process, even of a kernel its cache holds,
initialises its CPU target: it imports its array and linear-algebra
implementations, scipy's BLAS among them, 0.7-0.9 s of CPU time, a third of
`pipebench validate` (benchmarks/perf/README.md). A time budget is checked
against each schedule's first update, a run of a few hundred operations,
which the kernels' own Python code times in a few milliseconds each, to the
same bits: the kernels use no fast-math, and this is the code
NUMBA_DISABLE_JIT=1 runs. A tiny run's statistics and rpd's draws go the same
way: compiling them was a quarter of a first tiny run's compilation
(benchmarks/perf/README.md, "Issue 16, eighth round: blc8").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from types import FunctionType

# Operations a process interprets in all before it calls the compiled kernels: about
# 0.1 s in Python (some 12 us per operation on a 2-core machine at load 6), well under
# numba's first dispatch, and what a `run` that compiles later pays at most. The
# first-update checks of the quickstart (ten schedules, 8 stages) take 4,789.
INTERPRET_UP_TO = 10_000
_interpreted = 0  # operations this process has interpreted so far


def kernel_for(kernel: Callable, operations: int) -> Callable:
    """`kernel`, or its Python code while this process has not called the compiled kernel
    and has interpreted fewer than `INTERPRET_UP_TO` operations, this run's included."""
    global _interpreted
    if getattr(kernel, "signatures", None) or _interpreted + operations > INTERPRET_UP_TO:
        return kernel
    _interpreted += operations
    return interpreted(kernel)


@cache
def interpreted(kernel: Callable) -> Callable:
    """The Python function of a numba kernel, calling the Python of the kernels it calls."""
    func = getattr(kernel, "py_func", kernel)
    callees = {
        name: interpreted(value)
        for name in func.__code__.co_names
        if hasattr(value := func.__globals__.get(name), "py_func")
    }
    if not callees:
        return func
    namespace = func.__globals__ | callees  # the module's globals, helper kernels interpreted
    return FunctionType(func.__code__, namespace, func.__name__, func.__defaults__)
