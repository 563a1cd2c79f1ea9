"""Whether a run starts by compiling numba kernels, and the one line that says so.

Numba compiles each kernel family the first time it runs after installation
and caches the result next to the source. A cold cache is detected by the
cache index of each family's kernels (empty, missing or stale): the run then
says on stderr what it is compiling and how long that took on the project's
2-core machine (benchmarks/perf/README.md, "Compilation"); where a second core
compiles the replay's family beside the timeline's, the longer of the two.
"""

from __future__ import annotations

import multiprocessing
import os
from importlib import import_module

from numba.core import config

from pipebench.objectives import LAYERED_KINDS

# family: (seconds its compilation takes on the project's idle 2-core machine; its
# kernels as module:name), measured on an AMD EPYC Zen 5 on 2026-11-27 (README, "Issue
# 16, tenth round: idle retake"). The timeline's: `pipebench schedule pd -S 16 -M 1600`
# on an empty cache less the same on a full one, 3.9 s. A replay family's figure is the
# first run's wait with its kernels compiled in the child beside the timeline's, the
# longer of the two: `bench_compile.py` (cold minus warm), block-linear 4.9 s and the mlp
# 10.1 s at load 1.8-2.0, charlm 14.4 and 15.0 s at load 1.1-1.3 with its e^y in passes
# (README, "Issue 16, tenth round: rate10"; on the previous machine, a Zen 3, about
# twice as long: 8.2-11.3, 25.6-26.6 and 35.3-36.4 s before the passes).
FAMILIES: dict[str, tuple[int, tuple[str, ...]]] = {
    "timeline": (
        4,
        (  # not the simulator nor the statistics: a tiny run interprets them
            # (timeline/interpret.py), and would be announced as compiling on every run
            "pipebench.engine.replay_size:_needs",
        ),
    ),
    "block-linear": (
        5,
        (
            "pipebench.engine.replay:_replay_trace",
            "pipebench.engine.replay:_replay_plan",
            "pipebench.engine.recorder:take_sample",  # compiled by the block-linear form only
        ),
    ),
    "mlp": (
        10,
        (
            "pipebench.engine.replay:_replay_trace",
            "pipebench.engine.replay:_replay_plan",
            "pipebench.objectives.mlp:mlp_backward",  # by the mlp's layered form only
        ),
    ),
    "charlm": (
        15,
        (
            "pipebench.engine.replay:_replay_trace",
            "pipebench.engine.replay:_replay_plan",
            "pipebench.objectives.charlm.layers:attention_backward",  # by charlm's only
        ),
    ),
}


def _cached(kernel: str) -> bool:
    """Whether numba's cache holds a current compilation of `kernel` (module:name)."""
    module, name = kernel.split(":")
    dispatcher = getattr(import_module(module), name)
    try:
        return bool(dispatcher._cache._cache_file._load_index())  # numba's own freshness check
    except (AttributeError, OSError):  # another numba, or an unreadable cache: say nothing
        return True


def can_compile_aside() -> bool:
    """Whether a run compiles its replay kernels in a forked child beside the timeline's
    (engine/precompile.py): a second core, and fork to start the child."""
    return (os.cpu_count() or 1) >= 2 and "fork" in multiprocessing.get_all_start_methods()


def family_cold(family: str) -> bool:
    """Whether numba's cache lacks some kernel of `family` (a key of FAMILIES)."""
    return not all(_cached(k) for k in FAMILIES[family][1])


def replay_family(objective_kind: str) -> str:
    """The replay kernels' family (a key of FAMILIES) for this kind of objective: the
    layered replay with the model's own stage kernels, which compile very differently."""
    return objective_kind if objective_kind in LAYERED_KINDS else "block-linear"


def cold_families(objective_kind: str) -> list[str]:
    """The kernel families a run on this kind of objective would compile first."""
    if config.DISABLE_JIT:
        return []
    wanted = ["timeline", replay_family(objective_kind)]
    return [f for f in wanted if family_cold(f)]


def compile_notice(objective_kind: str) -> str | None:
    """One line for stderr when kernels will be compiled first; None when all are cached."""
    cold = cold_families(objective_kind)
    if not cold:
        return None
    each = [FAMILIES[f][0] for f in cold]
    seconds = max(each) if can_compile_aside() else sum(each)  # side by side, or in turn
    return (
        f"compiling the {' and '.join(cold)} kernels (first run after installation only; "
        f"about {seconds} s on 2 idle cores)..."
    )
