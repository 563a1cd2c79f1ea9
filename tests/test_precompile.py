"""The replay kernels compiled aside (engine/precompile.py) are those the run calls.

The child compiles each kernel for the argument types of a replay of no
operations; if these differed from a real replay's in any argument, the run
would compile again after waiting for the child. Types are compared with
numba's own `typeof`, as its dispatcher types a call; nothing is compiled.
Whether the child saves time is measured, not tested (benchmarks/perf/bench_compile.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest

from pipebench.api import load_experiment
from pipebench.engine import compiling, precompile, replay
from pipebench.engine.precompile import empty_replay
from pipebench.engine.replay import replay_signature
from pipebench.runner import entry_replays
from pipebench.timeline.registry import setup_schedule

SCENARIO = """name: forms
objective: {objective}
pipeline: {{stages: 2}}
budget: {{microbatches: 4}}
optimizer: {{name: sgd, lr: 0.01}}
schedules: {schedules}
"""
OBJECTIVES = {
    "block-linear": "{kind: quadratic, examples: 20, dim: 8, batch_size: 2}",
    "mlp": "{kind: mlp, width: 8, inputs: 4, outputs: 2, examples: 16, batch_size: 2}",
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize(
    "schedules",
    [
        "[pd, rpd, gpipe, zbv]",
        "[{name: paci, recompute: true}, {name: rpd, delays: pd, sampling: shuffle}]",
        "[{name: pd, optimizer: {name: adamw, predict: true, delay_lr: pipemare}}]",
        "[pd, {name: 2bw, optimizer: {name: momentum, delay_compensation: 0.1}}, localsgd]",
    ],
)
def test_an_empty_replay_types_the_kernel_as_the_real_one(
    tmp_path: Path, objective: str, schedules: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(objective=OBJECTIVES[objective], schedules=schedules))
    exp = load_experiment(path)
    for entry in exp.entries:
        sized, _ = entry_replays(exp, entry).per_seed[exp.seeds[0]]
        on = exp.switches
        inputs = (exp.objective_of(entry), entry.optimizer_code, entry.hyper(0.01), 0, on)
        real = replay_signature(sized, *inputs)
        assert replay_signature(empty_replay(entry.setup), *inputs) == real, entry.label


@pytest.mark.parametrize("aside", [True, False])
def test_the_notice_counts_side_by_side_families_once(
    monkeypatch: pytest.MonkeyPatch, aside: bool
) -> None:
    monkeypatch.setattr(compiling.config, "DISABLE_JIT", False)
    monkeypatch.setattr(compiling, "family_cold", lambda family: True)
    monkeypatch.setattr(compiling, "can_compile_aside", lambda: aside)
    timeline, replay = (compiling.FAMILIES[f][0] for f in ("timeline", "block-linear"))
    expected = max(timeline, replay) if aside else timeline + replay
    assert f"about {expected} s on 2 idle cores" in compiling.compile_notice("quadratic")


def test_nothing_is_compiled_aside_when_the_cache_holds_the_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(precompile, "family_cold", lambda family: False)
    aside = precompile.compile_replays_aside("quadratic", [])
    assert multiprocessing.active_children() == []
    assert aside.wait(np.zeros(1, np.int64), setup_schedule("pd", 2, {})) is None


def _runs(*names: str) -> list:
    return [(setup_schedule(name, 2, {}), None, 0, None, 0, None) for name in names]


def test_the_child_compiles_the_trace_kernels_first_and_rpds_plan_kernel_if_free_first() -> None:
    first, rest = precompile.split_runs(_runs("pd", "rpd", "gpipe"))
    assert [run[0].name for run in first] == ["pd", "gpipe"]
    assert [run[0].name for run in rest] == ["rpd"]
    first, rest = precompile.split_runs(_runs("rpd"))
    assert [run[0].name for run in first] == ["rpd"] and rest == []


def test_the_rest_goes_to_the_side_that_claims_it_first() -> None:
    state = multiprocessing.get_context("fork").Array("i", 4)
    assert precompile._claim(state, precompile.PARENT)
    assert not precompile._claim(state, precompile.CHILD)
    assert precompile._claim(state, precompile.PARENT)


@pytest.fixture
def compiling_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precompile, "family_cold", lambda family: True)
    monkeypatch.setattr(precompile, "can_compile_aside", lambda: True)
    monkeypatch.setattr(precompile.config, "DISABLE_JIT", False)


@pytest.fixture
def nothing_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """No kernel compiled ahead of the replay kernels (`_runs` has no objective)."""
    monkeypatch.setattr(precompile, "ahead_of", lambda *_: precompile.Ahead([], [], False))


def test_a_child_free_first_compiles_rpds_plan_kernel_and_rpd_waits_for_it(
    monkeypatch: pytest.MonkeyPatch, compiling_aside: None, nothing_ahead: None
) -> None:
    monkeypatch.setattr(precompile, "compile_replays", lambda runs: None)  # in the child
    aside = precompile.compile_replays_aside("quadratic", _runs("pd", "rpd"))
    aside.wait(np.zeros(1, np.int64), setup_schedule("rpd", 2, {}))  # until the child ends
    assert multiprocessing.active_children() == []
    aside.parent_free()  # too late: the child had it
    assert list(aside._state) == [precompile.CHILD, 1, 0, 1]


def test_rpd_compiles_in_the_parent_once_it_is_free_before_the_child(
    monkeypatch: pytest.MonkeyPatch, compiling_aside: None, nothing_ahead: None
) -> None:
    parent, compiled = os.getpid(), []

    def compiling(runs: list) -> None:  # the child never ends; the parent notes its share
        if os.getpid() != parent:
            time.sleep(600)
        compiled.append([run[0].name for run in runs])

    monkeypatch.setattr(precompile, "compile_replays", compiling)
    before = set(multiprocessing.active_children())
    aside = precompile.compile_replays_aside("quadratic", _runs("pd", "rpd"))
    (child,) = set(multiprocessing.active_children()) - before
    try:
        aside.parent_free()  # free, but the kernels the plan kernel shares are not cached
        assert list(aside._state) == [precompile.FREE, 0, 0, 1]
        aside.wait(np.ones(1, np.int64), setup_schedule("pd", 2, {}))  # Ctrl-C: no wait
        assert compiled == []
        aside._state[precompile.REST_OPEN] = 1  # what the child's `_Typed` sets
        # a run waiting for the child's trace kernel compiles the plan kernel meanwhile
        assert not aside._ready(rest=False) and compiled == [["rpd"]]
        aside.wait(np.zeros(1, np.int64), setup_schedule("rpd", 2, {}))  # the parent's now
        assert child.is_alive() and compiled == [["rpd"]]  # once
        assert list(aside._state) == [precompile.PARENT, 0, 1, 1]
    finally:
        child.kill()
        child.join()


class _Kernel:
    """A stand-in for a stage kernel: what it was compiled for; `compiling(types)` runs
    in `compile`."""

    def __init__(self, compiling) -> None:
        self.compiled: list[tuple] = []
        self._compiling = compiling

    def compile(self, types: tuple) -> None:
        self._compiling(types)
        self.compiled.append(types)


def test_a_layered_runs_parent_compiles_the_stage_backward_and_later_the_plan_kernel(
    monkeypatch: pytest.MonkeyPatch, compiling_aside: None
) -> None:
    context = multiprocessing.get_context("fork")
    forward_done, typing, typed = context.Event(), context.Event(), context.Event()
    seen = []  # whether the child had started on the replay kernels

    def backward_compiling(types: tuple) -> None:  # in the parent, once the child waits
        forward_done.wait(600)
        seen.append(typing.wait(0.3))

    parent, compiled = os.getpid(), []

    def child_compiling(runs: list) -> None:  # the parent's share: noted
        if os.getpid() == parent:
            compiled.append([run[0].name for run in runs])
            return
        typing.set()
        typed.wait(600)

    monkeypatch.setattr(precompile, "compile_replays", child_compiling)
    monkeypatch.setattr(precompile, "stage_kernel_types", lambda obj: (("f",), ("b",)))
    monkeypatch.setattr(precompile, "stage_forward", _Kernel(lambda t: forward_done.set()))
    backward = _Kernel(backward_compiling)
    monkeypatch.setattr(precompile, "stage_backward", backward)
    before = set(multiprocessing.active_children())
    aside = precompile.compile_replays_aside("mlp", _runs("pd", "rpd"))
    (child,) = set(multiprocessing.active_children()) - before
    try:
        assert backward.compiled == [("b",)] and seen == [False]
        assert typing.wait(600)  # the child goes on once the backward is in the cache
        aside.parent_free()  # free, but the kernels the plan kernel shares are not cached
        assert list(aside._state) == [precompile.FREE, 0, 0, 1]
        aside._state[precompile.REST_OPEN] = 1  # what the child's `_Typed` sets
        aside.wait(np.zeros(1, np.int64), setup_schedule("rpd", 2, {}))  # the parent's now
        assert child.is_alive() and compiled == [["rpd"]]
        assert list(aside._state) == [precompile.PARENT, 0, 1, 1]
    finally:
        typed.set()
        child.join()


STAGES_THEN_REPLAYS = """
import json, sys
from pipebench.api import load_experiment
from pipebench.engine import replay
from pipebench.engine.layered import stage_kernel_types
from pipebench.objectives.layered import stage_backward, stage_forward
from pipebench.runner import entry_replays

exp = load_experiment(sys.argv[1])
objective = exp.objective_of(exp.entries[0])
kernels = (stage_forward, stage_backward)
for kernel, types in zip(kernels, stage_kernel_types(objective)):
    kernel.compile(types)  # as engine/precompile.py does ahead of the replay kernels
for entry in exp.entries:  # numba types the replay kernels: each stage call must be found
    sized, _ = entry_replays(exp, entry).per_seed[exp.seeds[0]]
    replay.replay(sized, objective, entry.optimizer_code, entry.hyper(0.01), 0, 4, None,
                  exp.switches)
print(json.dumps([len(kernel.signatures) for kernel in kernels]))
"""


def test_the_stage_kernels_compiled_ahead_are_those_the_replays_call(tmp_path: Path) -> None:
    """In a process with an empty numba cache, so that the layered replay kernels are
    typed (a cached one types no callee): every stage call they make finds the signature
    compiled ahead; types that drifted would compile a second."""
    if precompile.config.DISABLE_JIT:
        pytest.skip("no compilation under NUMBA_DISABLE_JIT")
    path = tmp_path / "s.yaml"
    # recompute, weight prediction (its weights a kernel's output) and rpd's plan
    predicting = "{name: 2bw, optimizer: {name: sgd, predict: true}}"
    schedules = f"[pd, {{name: paci, recompute: true}}, {predicting}, rpd]"
    path.write_text(SCENARIO.format(objective=OBJECTIVES["mlp"], schedules=schedules))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    done = subprocess.run(
        [sys.executable, "-c", STAGES_THEN_REPLAYS, str(path)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1]) == [1, 1]


def test_a_kernel_is_marked_typed_once_its_callees_are_compiled() -> None:
    """`_Typed` hears the end of the trace kernel's type inference, after its callees."""
    if precompile.config.DISABLE_JIT:
        pytest.skip("no compilation under NUMBA_DISABLE_JIT")
    from numba import njit
    from numba.core import event

    callee = njit(lambda x: x + 1.0)
    compiled_then = []

    class State(list):
        def __setitem__(self, index: int, value: int) -> None:
            compiled_then.append(len(callee.signatures))
            super().__setitem__(index, value)

    def caller(x: float) -> float:
        return 2.0 * callee(x)

    caller.__qualname__ = replay._replay_trace.py_func.__qualname__  # as the trace kernel
    state = State([0, 0, 0])
    with event.install_listener("numba:run_pass", precompile._Typed(state)):
        assert njit(caller)(1.0) == 4.0
    assert state == [0, 0, 1] and compiled_then == [1]


def _declared(kernel) -> tuple[str, bool]:
    """(inline, cached) as the kernel was declared, made by numba yet or not (pipebench.jit)."""
    if hasattr(kernel, "targetoptions"):  # numba's dispatcher
        return kernel.targetoptions.get("inline", "never"), type(
            kernel._cache
        ).__name__ != "NullCache"
    return kernel.options.get("inline", "never"), kernel.options.get("cache", False)


@pytest.mark.skipif(compiling.config.DISABLE_JIT, reason="nothing is compiled or announced")
@pytest.mark.parametrize("family", sorted(compiling.FAMILIES))
def test_a_family_is_judged_by_kernels_compiled_and_cached_on_their_own(family: str) -> None:
    """A kernel typed into its callers (`inline="always"`) is never cached on its own:
    judging a family by one would announce compiling on every run."""
    for name in compiling.FAMILIES[family][1]:
        module, attr = name.split(":")
        assert _declared(getattr(import_module(module), attr)) == ("never", True), name


AHEAD_THEN_REPLAYS = """
import json, sys
from pipebench.api import load_experiment
from pipebench.engine import precompile, replay
from pipebench.runner import entry_replays, replay_runs

exp = load_experiment(sys.argv[1])
ahead = precompile.ahead_of(exp.objective.kind, *precompile.split_runs(replay_runs(exp)))
for kernel, types in ahead.child + ahead.parent:  # as the two processes do
    kernel.compile(types)
for entry in exp.entries:  # numba types the replay kernels: each callee must be found
    sized, _ = entry_replays(exp, entry).per_seed[exp.seeds[0]]
    objective, hyper = exp.objective_of(entry), entry.hyper(entry.lrs[0])
    replay.replay(sized, objective, entry.optimizer_code, hyper, 0, 4, None, exp.switches)
print(json.dumps([
    [kernel.__name__, [str(t) for t in types], [[str(t) for t in s] for s in kernel.signatures]]
    for kernel, types in ahead.child + ahead.parent
]))
"""


def test_the_trace_callees_compiled_ahead_are_those_the_replays_call(tmp_path: Path) -> None:
    """In a process with an empty numba cache, so that the replay kernels are typed (not
    loaded): after real replays, each callee compiled ahead holds exactly the signatures
    it was compiled with (two for the kernels the plan calls without the trace kernel's
    optional arguments); types that drifted would add another."""
    if precompile.config.DISABLE_JIT:
        pytest.skip("no compilation under NUMBA_DISABLE_JIT")
    path = tmp_path / "s.yaml"
    # every row kind (I and W from zbv, AVG from localsgd), weight prediction, rpd's plan
    predicting = "{name: 2bw, optimizer: {name: momentum, predict: true}}"
    schedules = f"[pd, zbv, localsgd, rpd, {predicting}]"
    scenario = SCENARIO.format(objective=OBJECTIVES["block-linear"], schedules=schedules)
    path.write_text(scenario.replace("{name: sgd, lr: 0.01}", "{name: momentum, lr: 0.01}"))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    done = subprocess.run(
        [sys.executable, "-c", AHEAD_THEN_REPLAYS, str(path)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    compiled = json.loads(done.stdout.splitlines()[-1])
    names = {name for name, _, _ in compiled}
    assert set(precompile.PARENT_CALLEES) | {"_loss_at", "versions_read"} < names
    ahead: dict[str, list] = {}
    for name, types, _ in compiled:
        ahead.setdefault(name, []).append(types)
    for name, _, signatures in compiled:
        assert sorted(signatures) == sorted(ahead[name]), name


NONE_AHEAD = precompile.Ahead([], [], False)


def test_the_child_goes_on_when_the_parent_dies_before_its_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = multiprocessing.get_context("fork")
    state, started = context.Array("i", 4), context.Event()
    monkeypatch.setattr(precompile, "compile_replays", lambda runs: started.set())

    def parent() -> None:  # starts the child, then dies without its share
        context.Process(target=precompile._compile, args=([], [], state, NONE_AHEAD)).start()
        os._exit(0)

    dying = context.Process(target=parent)
    dying.start()
    dying.join()
    assert started.wait(600) and state[precompile.AHEAD_DONE] == 0


def test_the_child_goes_on_when_the_parents_share_fails(
    monkeypatch: pytest.MonkeyPatch, compiling_aside: None
) -> None:
    context = multiprocessing.get_context("fork")
    started = context.Event()
    monkeypatch.setattr(precompile, "compile_replays", lambda runs: started.set())
    failing = _Kernel(lambda types: 1 / 0)
    ahead = precompile.Ahead([], [(failing, ("b",))], True)
    monkeypatch.setattr(precompile, "ahead_of", lambda *_: ahead)
    before = set(multiprocessing.active_children())
    with pytest.raises(ZeroDivisionError):  # as the replay would compile it and fail
        precompile.compile_replays_aside("quadratic", _runs("pd"))
    (child,) = set(multiprocessing.active_children()) - before
    assert started.wait(600)
    child.join()
    assert child.exitcode == 0
