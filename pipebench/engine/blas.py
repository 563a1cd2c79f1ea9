"""One BLAS thread: numba's matrix products call scipy's OpenBLAS, whose own threads
would fight the runner's threads for the cores.

The runner already keeps every core busy with one run per thread; at the
sizes of pipebench's layered objectives a single BLAS thread is also the
fastest, and OpenBLAS's idle worker threads spin, which made runs 10-50x
slower on a 2-core machine shared with another process.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _openblas() -> ctypes.CDLL | None:
    """scipy's bundled OpenBLAS, if this scipy ships one that can be told its thread count."""
    try:
        import scipy
    except ImportError:  # pragma: no cover - scipy is a dependency
        return None
    libs = Path(scipy.__file__).parent.parent.joinpath("scipy.libs").glob("libscipy_openblas*")
    lib = next((ctypes.CDLL(str(path)) for path in sorted(libs)), None)
    if lib is None or not hasattr(lib, "scipy_openblas_set_num_threads"):
        return None
    return lib


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with scipy's OpenBLAS on one thread, then restore its thread count."""
    lib = _openblas()
    if lib is None:
        yield
        return
    before = lib.scipy_openblas_get_num_threads()
    lib.scipy_openblas_set_num_threads(1)
    try:
        yield
    finally:
        lib.scipy_openblas_set_num_threads(before)
