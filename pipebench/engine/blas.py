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
from importlib.util import find_spec
from pathlib import Path

# (package, its bundled OpenBLAS, the suffix of that build's symbols)
_BUNDLED = {"scipy": ("libscipy_openblas*", ""), "numpy": ("libscipy_openblas64_*", "64_")}


def _openblas(package: str) -> tuple[ctypes.CDLL, str] | None:
    """The OpenBLAS `package` bundles and its symbol suffix, if it can be told its thread count."""
    # Found, not imported: `validate` need not pay scipy's import to pin its threads.
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - dependencies
        return None
    pattern, suffix = _BUNDLED[package]
    site = Path(spec.submodule_search_locations[0]).parent
    libs = site.joinpath(f"{package}.libs").glob(pattern)
    lib = next((ctypes.CDLL(str(path)) for path in sorted(libs)), None)
    if lib is None or not hasattr(lib, f"scipy_openblas_set_num_threads{suffix}"):
        return None
    return lib, suffix


@contextmanager
def one_blas_thread(packages: tuple[str, ...] = ("scipy",)) -> Iterator[None]:
    """Run the block with the OpenBLAS of `packages` on one thread, then restore their counts.

    Runs pin scipy's (numba's products); `validate` pins NumPy's too, whose
    two threads made the SVD of an objective's set-up take seconds on a
    loaded machine.
    """
    found = [lib for lib in map(_openblas, packages) if lib is not None]
    before = [getattr(lib, f"scipy_openblas_get_num_threads{sfx}")() for lib, sfx in found]
    for lib, sfx in found:
        getattr(lib, f"scipy_openblas_set_num_threads{sfx}")(1)
    try:
        yield
    finally:
        for (lib, sfx), count in zip(found, before, strict=True):
            getattr(lib, f"scipy_openblas_set_num_threads{sfx}")(count)
