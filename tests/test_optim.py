"""Muon, the delay correction `ef` and the lr schedule, against their definitions in NumPy."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numba.core import config as numba_config

from pipebench.optim import OPTIMIZERS, hyper_array
from pipebench.optim.muon import newton_schulz
from pipebench.optim.step import apply_step, lr_factor, moment_buffers

MUON = OPTIMIZERS["muon"]


def numpy_newton_schulz(g: np.ndarray, steps: int) -> np.ndarray:
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (np.linalg.norm(g) + 1e-7)
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_newton_schulz_orthogonalises(rows, cols, seed):
    """Five quintic steps put every singular value near 1 (0.5 .. 1.3).

    Each step multiplies a small singular value (relative to the Frobenius
    norm the iteration starts from) by at most about 3.4, so five steps reach
    0.5 only from about 2e-3: a Gaussian square matrix can be closer to
    singular than that (7x7, seed 171587260: 2.2e-4), and such draws are left out.
    """
    g = np.random.default_rng(seed).standard_normal((rows, cols))
    assume(np.linalg.svd(g, compute_uv=False).min() >= 3e-3 * np.linalg.norm(g))
    o = newton_schulz(g, 5)
    assert o.shape == g.shape
    assert np.allclose(o, numpy_newton_schulz(g, 5), rtol=1e-12, atol=1e-12)
    singular = np.linalg.svd(o, compute_uv=False)
    assert singular.min() > 0.5 and singular.max() < 1.3


def test_muon_step_matches_its_definition():
    """A block holding a 3x4 matrix and 5 other weights: Muon on the matrix, AdamW elsewhere."""
    rng = np.random.default_rng(1)
    d, start, rows, cols = 20, 4, 3, 4  # matrix at [4, 16); AdamW on [0, 4) and [16, 20)
    mats = np.array([[start, rows, cols, 0]], dtype=np.int64)  # stored (fan_in, fan_out)
    params = MUON.defaults | {"adam_lr": 0.01, "weight_decay": 0.1}
    hyper = hyper_array(0.02, params)
    w = rng.standard_normal(d)
    moments, last = moment_buffers(MUON.code, 1, d), np.zeros((1, d))
    ref_w, ref_buf = w.copy(), np.zeros(rows * cols)
    ref_m, ref_v = np.zeros(d), np.zeros(d)
    for t in range(1, 4):
        g = rng.standard_normal(d)
        apply_step(hyper, t, 0, w, g, 1.0, moments, last, 0, (mats,), 0, d, w)
        # reference: Nesterov momentum, orthogonalised, scaled by sqrt(max(1, cols/rows))
        mat = slice(start, start + rows * cols)
        ref_buf = 0.95 * ref_buf + g[mat]
        o = numpy_newton_schulz((g[mat] + 0.95 * ref_buf).reshape(rows, cols), 5).ravel()
        old = ref_w.copy()
        ref_w[mat] = old[mat] - 0.02 * math.sqrt(cols / rows) * o - 0.02 * 0.1 * old[mat]
        for part in (slice(0, start), slice(start + rows * cols, d)):
            ref_m[part] = 0.9 * ref_m[part] + 0.1 * g[part]
            ref_v[part] = 0.95 * ref_v[part] + 0.05 * g[part] ** 2
            step = (ref_m[part] / (1 - 0.9**t)) / (np.sqrt(ref_v[part] / (1 - 0.95**t)) + 1e-8)
            ref_w[part] = old[part] - 0.01 * (step + 0.1 * old[part])
        assert np.allclose(w, ref_w, rtol=1e-12, atol=1e-14)


ONLY_SGD = """
import numpy as np
from pipebench.optim import adamw, hyper_array, momentum, muon
from pipebench.optim.step import apply_step
w = np.ones(4)
apply_step(hyper_array(0.1, {}), 1, 0, w, w, 1.0, (), np.zeros((1, 4)), 0, (), 0, 4, w)
others = (muon.muon_step, adamw.adamw_step, momentum.momentum_step, momentum.lookahead_step)
print(len(apply_step.signatures), *(len(kernel.signatures) for kernel in others), *w)
"""


@pytest.mark.skipif(numba_config.DISABLE_JIT, reason="compilation is numba's")
def test_an_sgd_step_compiles_no_other_optimizer(tmp_path):
    """SGD keeps no moments (the empty tuple) and gets no weight matrices: compiled from
    an empty cache, its steps leave every other optimizer uncompiled, and SGD still
    steps (1 - 0.1 * 1)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", ONLY_SGD], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["1", "0", "0", "0", "0", *["0.9"] * 4], out.stderr[-2000:]


# muon is tested on its own: it needs weight matrices
@pytest.mark.parametrize("name", [name for name in OPTIMIZERS if name != "muon"])
def test_ef_adds_the_last_change_of_the_update(name):
    """w <- w - (2 u_t - u_{t-1}), u the optimizer's own update; no correction at t = 1."""
    info = OPTIMIZERS[name]
    rng = np.random.default_rng(2)
    d = 6
    plain = hyper_array(0.1, info.defaults)
    corrected = hyper_array(0.1, info.defaults | {"ef": True})
    w_ref, w_ef = rng.standard_normal(d), None
    w_ef = w_ref.copy()
    state_ref = [moment_buffers(info.code, 1, d), np.zeros((1, d)), 0]
    state_ef = [moment_buffers(info.code, 1, d), np.zeros((1, d)), 0]
    u_prev = np.zeros(d)
    empty = ()  # no weight matrices
    for t in range(1, 5):
        g = rng.standard_normal(d)
        # the optimizer's update u_t from the corrected run's weights and state
        probe = w_ef.copy()
        apply_step(plain, t, 0, w_ef, g, 1.0, *state_ref, empty, 0, d, probe)
        u = w_ef - probe
        expected = w_ef - (2 * u - u_prev) if t > 1 else w_ef - u
        stepped = np.empty(d)  # a separate version, as the replay keeps under ef
        apply_step(corrected, t, 0, w_ef, g, 1.0, *state_ef, empty, 0, d, stepped)
        assert np.allclose(stepped, expected, rtol=1e-13, atol=1e-15)
        w_ef = stepped
        u_prev = u


def test_lr_schedule_warm_up_and_cosine():
    hyper = hyper_array(1.0, {"warmup": 4, "cosine": True})
    horizon = 20
    for t in range(1, 25):
        warm = t / 4 if t < 4 else 1.0
        cosine = 0.5 * (1 + math.cos(math.pi * min(t - 1, horizon) / horizon))
        assert lr_factor(hyper, t, horizon) == pytest.approx(warm * cosine, abs=1e-15)
    assert lr_factor(hyper_array(1.0, {}), 7, 10) == 1.0
    assert lr_factor(hyper_array(1.0, {"cosine": True}), 11, 10) == pytest.approx(0.0, abs=1e-15)


def test_ef_through_the_replay_even_with_one_version_kept():
    """naive keeps one weight version; with ef the replay keeps two, and the run equals
    sequential SGD with the correction w <- w - (2 u_t - u_{t-1}), u_t = lr g_t."""
    from training import numpy_gradient, objective, train

    obj = objective("quadratic", 1)
    curve, _, _ = train("naive", obj, 1, lr=0.05, seed=3, params={"ef": True},
                        budget=("microbatches", 15))  # fmt: skip
    w, u_prev = np.zeros(obj.dim), np.zeros(obj.dim)
    for m in range(15):
        u = 0.05 * numpy_gradient(obj, w, m, 3)
        w = w - (2 * u - u_prev) if m > 0 else w - u
        u_prev = u
    assert np.allclose(curve.model, w, rtol=1e-12, atol=1e-14)
