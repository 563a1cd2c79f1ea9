"""numba's `njit`, declared without importing numba until a kernel is called or compiled.

Importing numba costs about 0.3 s of CPU time (scipy's with it), and every kernel
module declared its kernels at import, so `validate`, which imports the
objectives and the timeline but runs no compiled kernel, paid it
(benchmarks/perf/README.md, "Issue 16, sixth round: lazyjit"). `njit` here
takes numba's options and returns a `Kernel`: the Python function and the
options. The first call, compilation or numba attribute asked of any kernel
imports numba and makes every kernel declared so far with numba's own `njit`
(the same function, so the same cache file and the same code under
NUMBA_DISABLE_JIT=1), then puts the real kernel in place of the `Kernel` in
every pipebench module's globals: numba resolves the kernels a kernel calls,
and inlines them, from its module's globals when it compiles it. Kernels
declared after that are numba's from the start.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from functools import update_wrapper
from typing import Any

_declared: list[Kernel] = []  # declared before numba was imported, in order
_lock = threading.Lock()
_njit: Callable | None = None  # numba.njit, once every declared kernel is made


class Kernel:
    """A kernel numba has not made yet: the function and its `njit` options."""

    def __init__(self, func: Callable, options: dict[str, Any]) -> None:
        self.made: Callable | None = None  # numba's kernel, once made
        self.py_func = func  # as numba's dispatcher names it (timeline/interpret.py)
        self.options = options
        update_wrapper(self, func)

    @property
    def signatures(self) -> list:
        """The signatures compiled so far: none before numba makes the kernel."""
        return getattr(self.made, "signatures", [])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return (self.made or _make_all(self))(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # numba's: compile, stats, the cache...
        if name.startswith("__") or name == "made":  # copy and pickle ask: no numba for them
            raise AttributeError(name)
        return getattr(self.made or _make_all(self), name)

    def __repr__(self) -> str:
        return f"<kernel {self.__module__}.{self.__qualname__}, not made yet>"


def njit(func: Callable | None = None, **options: Any) -> Any:
    """`numba.njit(func, **options)`, made when some kernel is first called or compiled.

    Used as `@njit`, `@njit(cache=True, ...)` or `njit(cache=True, ...)(func)`."""
    if func is None:
        return lambda f: njit(f, **options)
    with _lock:  # not while another thread makes the kernels declared so far
        if _njit is None:
            kernel = Kernel(func, options)
            _declared.append(kernel)
            return kernel
    return _njit(**options)(func)


def _make_all(kernel: Kernel) -> Callable:
    """Import numba, make every declared kernel and put it in the modules' globals;
    returns `kernel` made."""
    global _njit
    with _lock:
        if _njit is None:
            from numba import njit as numba_njit  # the point of this module

            made = {id(k): numba_njit(**k.options)(k.py_func) for k in _declared}
            _replace_in_modules(made)
            for each in _declared:  # last: another thread calls `made` once globals hold it
                each.made = made[id(each)]
            _declared.clear()
            _njit = numba_njit
    return kernel.made


def _replace_in_modules(made: dict[int, Callable]) -> None:
    """Every pipebench module's global holding a declared kernel now holds numba's."""
    for name, module in list(sys.modules.items()):
        if name != "pipebench" and not name.startswith("pipebench."):
            continue
        namespace = getattr(module, "__dict__", {})
        for key, value in list(namespace.items()):
            if type(value) is Kernel:
                namespace[key] = made[id(value)]
