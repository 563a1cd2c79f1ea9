"""Cost model and option validation, jitter, stragglers, and the pure-Python (no JIT) path."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ALL_SCHEDULES, durations, unit
from hypothesis import given, settings
from hypothesis import strategies as st

from pipebench.errors import InputError
from pipebench.timeline import SCHEDULES, CostModel, build_timeline
from pipebench.timeline.costs import _clock_problem, _total
from pipebench.timeline.trace import BACKWARD, FORWARD

NAN, INF = float("nan"), float("inf")


def _field_of(fn, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as err:
        fn(*args, **kwargs)
    assert isinstance(err.value, ValueError)
    assert err.value.message and err.value.field in str(err.value)
    return err.value


# ---------------------------------------------------------------- CostModel.build


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"stages": 0}, "stages"),
        ({"stages": -3}, "stages"),
        ({"stages": 3, "forward": 0.0}, "forward"),
        ({"stages": 3, "forward": -1.0}, "forward"),
        ({"stages": 3, "forward": NAN}, "forward"),
        ({"stages": 3, "forward": INF}, "forward"),
        ({"stages": 3, "forward": [1.0, 0.0, 1.0]}, "forward"),
        ({"stages": 3, "forward": [1.0, 2.0]}, "forward"),
        ({"stages": 3, "forward": [1.0, 2.0, 3.0, 4.0]}, "forward"),
        ({"stages": 3, "backward": 0}, "backward"),
        ({"stages": 3, "backward": -0.5}, "backward"),
        ({"stages": 3, "backward": [1.0, NAN, 1.0]}, "backward"),
        ({"stages": 3, "backward": [1.0, 1.0]}, "backward"),
        ({"stages": 3, "comm": -0.1}, "comm"),
        ({"stages": 3, "comm": NAN}, "comm"),
        ({"stages": 3, "comm": INF}, "comm"),
        ({"stages": 3, "update": -1.0}, "update"),
        ({"stages": 3, "update": INF}, "update"),
        ({"stages": 3, "allreduce": -2.0}, "allreduce"),
        ({"stages": 3, "allreduce": NAN}, "allreduce"),
        ({"stages": 3, "jitter": 1.0}, "jitter"),
        ({"stages": 3, "jitter": 1.5}, "jitter"),
        ({"stages": 3, "jitter": -0.1}, "jitter"),
        ({"stages": 3, "jitter": NAN}, "jitter"),
        ({"stages": 3, "straggler": (3, 2.0)}, "straggler"),
        ({"stages": 3, "straggler": (-1, 2.0)}, "straggler"),
        ({"stages": 3, "straggler": (1, 0.5)}, "straggler"),
        ({"stages": 3, "straggler": (1, NAN)}, "straggler"),
        ({"stages": 3, "straggler": (1, INF)}, "straggler"),
    ],
)
def test_bad_costs_name_the_field(kwargs, field):
    assert _field_of(CostModel.build, **kwargs).field == field


def test_valid_boundaries_and_unit_model():
    c = CostModel.build(3, comm=0.0, update=0.0, allreduce=0.0, jitter=0.0, straggler=(2, 1.0))
    assert c.stages == 3
    assert np.array_equal(c.forward, [1.0, 1.0, 1.0]) and np.array_equal(c.backward, [1, 1, 1])
    assert (c.comm, c.update, c.allreduce, c.jitter) == (0.0, 0.0, 0.0, 0.0)
    assert CostModel.build(1, jitter=0.999).jitter == 0.999


def test_numpy_scalars_are_numbers():
    c = CostModel.build(np.int64(2), forward=np.int64(2), backward=np.float32(0.5))
    assert np.array_equal(c.forward, [2.0, 2.0]) and np.array_equal(c.backward, [0.5, 0.5])


def test_per_stage_costs_and_straggler():
    c = CostModel.build(3, forward=[1.0, 2.0, 0.5], backward=3.0, straggler=(1, 2.5))
    assert np.array_equal(c.forward, [1.0, 5.0, 0.5])
    assert np.array_equal(c.backward, [3.0, 7.5, 3.0])
    tr = build_timeline("pd", c, 6)
    assert np.allclose(durations(tr, FORWARD), np.array([[1.0], [5.0], [0.5]]))
    assert np.allclose(durations(tr, BACKWARD), np.array([[3.0], [7.5], [3.0]]))


def test_straggler_leaves_caller_lists_alone():
    fwd = [1.0, 2.0]
    CostModel.build(2, forward=fwd, straggler=(0, 3.0))
    assert fwd == [1.0, 2.0]


COST = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(deadline=None, max_examples=150)
@given(
    costs=st.lists(st.tuples(COST, COST), min_size=1, max_size=300),
    microbatches=st.integers(1, 10**12),
    jitter=st.floats(0.0, 0.99),
    recompute=st.booleans(),
    straggler=st.floats(1.0, 10.0),
)
def test_a_run_s_length_is_numpy_s_sum_to_the_bit(
    costs, microbatches, jitter, recompute, straggler
):
    # The cost model holds tuples (validate loads no NumPy) and sums them in NumPy's order
    # (pipebench.numsum): the bound `validate` checks a budget against is the one NumPy gave.
    fwd, bwd = (list(x) for x in zip(*costs, strict=True))
    c = CostModel.build(
        len(fwd), forward=fwd, backward=bwd, jitter=jitter, straggler=(0, straggler)
    )
    f, b = np.asarray(fwd), np.asarray(bwd)
    f[0] *= straggler
    b[0] *= straggler
    assert np.array_equal(c.forward, f) and np.array_equal(c.backward, b)
    parts = c.run_parts(microbatches, recompute)
    m = microbatches
    assert parts["forward"] == m * float(f.sum()) * (1 + jitter) * (2 if recompute else 1)
    assert parts["backward"] == m * float(b.sum()) * (1 + jitter)
    problem = _clock_problem(_total(parts), float(min(f.min(), b.min())) * (1 - jitter))
    expected = None if problem is None else (max(parts, key=parts.__getitem__), problem)
    assert c.clock_check(microbatches, recompute) == expected


# ---------------------------------------------------------------- jitter


def test_jitter_depends_only_on_seed_kind_stage_microbatch():
    S, M, j = 4, 12, 0.5
    base = np.array([1.0, 2.0, 0.5, 1.5])
    costs = CostModel.build(S, forward=base, backward=2 * base, comm=0.2, jitter=j, seed=11)
    pd = build_timeline("pd", costs, M)
    paci = build_timeline("paci", costs, M, accumulate=3)
    for kind in (FORWARD, BACKWARD):
        assert np.allclose(durations(pd, kind), durations(paci, kind), rtol=1e-12, atol=0)
    # a different schedule, other timings, same factors
    for name in ("gpipe", "naive", "localsgd"):
        other = build_timeline(name, costs, M)
        assert np.allclose(durations(other, FORWARD), durations(pd, FORWARD), rtol=1e-12)
    fwd_factor = durations(pd, FORWARD) / base[:, None]
    bwd_factor = durations(pd, BACKWARD) / (2 * base[:, None])
    for factor in (fwd_factor, bwd_factor):
        assert np.all((factor >= 1 - j - 1e-12) & (factor <= 1 + j + 1e-12))
        assert np.unique(np.round(factor, 12)).size > S * M // 2  # really varies per op
    assert not np.allclose(fwd_factor, bwd_factor)  # the kind is part of the draw
    reseeded = build_timeline("pd", CostModel.build(S, forward=base, jitter=j, seed=12), M)
    assert not np.allclose(durations(reseeded, FORWARD), durations(pd, FORWARD))


def test_zero_jitter_is_exact():
    costs = CostModel.build(3, forward=[0.3, 0.7, 1.1], backward=0.9, seed=99)
    tr = build_timeline("paci", costs, 8)
    assert np.allclose(durations(tr, FORWARD), np.array([[0.3], [0.7], [1.1]]), rtol=1e-12)
    assert np.allclose(durations(tr, BACKWARD), 0.9, rtol=1e-12)


def test_jitter_is_roughly_uniform():
    tr = build_timeline("pd", CostModel.build(2, jitter=0.5, seed=1), 400)
    factor = durations(tr, FORWARD).ravel()
    assert abs(factor.mean() - 1.0) < 0.05
    assert factor.min() < 0.55 and factor.max() > 1.45
    hist = np.histogram(factor, bins=4, range=(0.5, 1.5))[0]
    assert np.all(hist > 140), hist  # 800 draws, 200 expected per bin


# ---------------------------------------------------------------- schedules and options


def test_registry_names():
    assert set(SCHEDULES) == set(ALL_SCHEDULES)


def test_unknown_schedule_lists_known_ones():
    err = _field_of(build_timeline, "pipedream-3", unit(2), 4)
    assert err.field == "schedule"
    for name in ALL_SCHEDULES:
        assert name in err.message


@pytest.mark.parametrize("name", ALL_SCHEDULES)
@pytest.mark.parametrize("M", [0, -1])
def test_microbatches_must_be_positive(name, M):
    assert _field_of(build_timeline, name, unit(2), M).field == "microbatches"


@pytest.mark.parametrize(
    ("name", "option", "value"),
    [
        ("pd", "replicas", 2),
        ("pd", "accumulate", 2),
        ("pd", "recompute", True),
        ("pd", "delta", 3),
        ("naive", "accumulate", 1),
        ("2bw", "recompute", False),
        ("2bw", "local_steps", 1),
        ("paci", "delays", "max"),
        ("paci", "replicas", 1),
        ("localsgd", "accumulate", 1),
        ("gpipe", "replicas", 2),
        ("1f1b-flush", "delta", 1),
        ("rpd", "accumulate", 2),
        ("rpd", "recompute", True),
        ("pd", "bogus_option", 1),
    ],
)
def test_option_that_does_not_apply(name, option, value):
    assert _field_of(build_timeline, name, unit(3), 6, **{option: value}).field == option


@pytest.mark.parametrize(
    ("name", "option", "value"),
    [
        ("gpipe", "accumulate", 0),
        ("1f1b-flush", "accumulate", -2),
        ("paci", "accumulate", 0),
        ("paci", "accumulate", 1.5),
        ("paci", "accumulate", True),
        ("paci", "accumulate", "2"),
        ("2bw", "accumulate", 0),
        ("paci", "recompute", "yes"),
        ("paci", "recompute", 1),
        ("localsgd", "replicas", 0),
        ("localsgd", "local_steps", 0),
        ("localsgd", "local_steps", 2.0),
        ("rpd", "delays", "bogus"),
        ("rpd", "delta", -1),
        ("rpd", "delta", 1.5),
        ("rpd", "delta", "big"),
    ],
)
def test_option_out_of_range(name, option, value):
    assert _field_of(build_timeline, name, unit(3), 6, **{option: value}).field == option


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("gpipe", {"accumulate": 1}),
        ("1f1b-flush", {"accumulate": 5}),
        ("2bw", {"accumulate": 3}),
        ("paci", {"accumulate": 9, "recompute": True}),
        ("localsgd", {"replicas": 1, "local_steps": 4}),
        ("rpd", {"delta": 0, "delays": "pd"}),
        ("rpd", {"delta": "auto", "delays": "zero"}),
    ],
)
def test_valid_options_accepted(name, options):
    out = build_timeline(name, unit(3), 7, **options)
    assert out is not None


# ---------------------------------------------------------------- no JIT


DIGEST = r"""
import json
import numpy as np
from pipebench.timeline import CostModel, build_timeline, stats_of
from pipebench.timeline.rpd_draws import fill_delays
from pipebench.timeline.stats import update_delays, update_staleness


def delays_at(plan, k):
    out = np.empty(plan.stages, dtype=np.int64)
    fill_delays(plan.mode, plan.delta, plan.seed, k, plan.pd_update_mb, plan.pd_reads, out)
    return out


def digest():
    out = {}
    costs = CostModel.build(3, forward=[1.0, 1.7, 0.6], backward=1.3, comm=0.35, update=0.1,
                            allreduce=0.8, jitter=0.4, seed=1234)
    for name in ("pd", "localsgd", "paci"):
        tr = build_timeline(name, costs, 7)
        out[name] = {
            "makespan": tr.makespan,
            "start": tr.start.tolist(), "end": tr.end.tolist(),
            "ints": [int(getattr(tr, f).astype(np.int64).sum()) for f in
                     ("kind", "stage", "mb", "replica", "v_fwd", "v_bwd", "upd_op",
                      "upd_first", "upd_version")],
            "delays": update_delays(tr).tolist(),
            "staleness": update_staleness(tr).tolist(),
            "stats": stats_of(tr).as_dict(),
        }
    plan = build_timeline("rpd", costs, 7)
    out["rpd"] = {"block": plan.block.tolist(),
                  "delays": [delays_at(plan, k).tolist() for k in range(plan.iterations)],
                  "stats": stats_of(plan).as_dict()}
    return json.dumps(out, sort_keys=True)
"""


NO_JIT_MAIN = """
import numba

assert numba.config.DISABLE_JIT
print(digest())
"""


def test_no_jit_matches_jit():
    namespace: dict = {}
    exec(DIGEST, namespace)
    jitted = json.loads(namespace["digest"]())
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run(
        [sys.executable, "-c", DIGEST + NO_JIT_MAIN],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain = json.loads(proc.stdout)
    assert plain == jitted
    assert math.isfinite(jitted["pd"]["makespan"]) and jitted["pd"]["makespan"] > 0
