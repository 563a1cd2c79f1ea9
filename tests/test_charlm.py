"""charlm: layer and stage gradients against finite differences, stage splits, weight versions
in the backward (paci), a reference model (numpy, and torch autograd when installed),
learning a Markov chain down to its entropy rate, and the corpora."""

from __future__ import annotations

import gzip
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from pipebench.engine import blas
from pipebench.errors import InputError
from pipebench.jit import njit
from pipebench.objectives.charlm import layers as lm
from pipebench.objectives.charlm import spec as lmspec
from pipebench.objectives.charlm.layout import charlm_init, charlm_layout
from pipebench.objectives.charlm.stages import charlm_backward, charlm_forward
from pipebench.objectives.corpus import load_corpus, split, windows
from pipebench.objectives.layered import eval_loss

SMALL = {"vocab": 7, "width": 8, "heads": 2, "context": 5, "batch": 2}
FD_STEP = 1e-6
FD_TOL = 1e-8  # central differences in float64: truncation ~1e-12, rounding ~1e-10


def fd_error(loss, arrays, grads) -> float:
    """Largest |central difference - analytic| over every entry of `arrays` (perturbed in place)."""
    worst = 0.0
    for a, g in zip(arrays, grads, strict=True):
        flat, gflat = a.reshape(-1), g.reshape(-1)
        assert np.shares_memory(flat, a)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + FD_STEP
            up = loss()
            flat[i] = keep - FD_STEP
            down = loss()
            flat[i] = keep
            worst = max(worst, abs((up - down) / (2 * FD_STEP) - gflat[i]))
    return worst


def problem(layout, seed: int = 0):
    """Params (init plus noise, so biases and gains matter), a token stream and B windows."""
    rng = np.random.default_rng(seed)
    V, T, B = (int(layout.spec[i]) for i in (lmspec._V, lmspec._T, lmspec._B))
    params = charlm_init(layout, seed) + rng.normal(0.0, 0.3, int(layout.off[-1]))
    tokens = rng.integers(0, V, 60)
    return params, tokens, windows(len(tokens), T, B, seed)


def stage(layout, params, s):
    return params[layout.off[s] : layout.off[s + 1]]


def named(layout, flat) -> dict:
    """Views of a flat vector (numpy or torch) as the model's named tensors."""
    return {n: flat[at : at + math.prod(shape)].reshape(shape) for n, at, shape in layout.tensors()}


def forward(layout, params, tokens, starts, first=0, x_in=None):
    """Chain the stage forwards from `first`: (loss, saved buffers, stage inputs), by stage."""
    S = len(layout.off) - 1
    saved = {s: np.zeros(layout.saved_size[s]) for s in range(first, S)}
    inputs = {first: np.zeros(layout.act_size) if x_in is None else x_in}
    loss = 0.0
    for s in range(first, S):
        inputs[s + 1] = np.zeros(layout.act_size)
        p = stage(layout, params, s)
        loss = charlm_forward(layout.spec, s, p, tokens, starts, inputs[s], saved[s], inputs[s + 1])
    return loss, saved, inputs


def backward(layout, params, tokens, starts, saved, first=0):
    """Chain the stage backwards down to `first`: (gradient of the full vector, g_in of first)."""
    grad = np.zeros_like(params)
    g = np.zeros(layout.act_size)
    for s in range(len(layout.off) - 2, first - 1, -1):
        g_in = np.zeros(layout.act_size)
        p, gs = stage(layout, params, s), stage(layout, grad, s)
        charlm_backward(layout.spec, s, p, tokens, starts, saved[s], g, g_in, gs)
        g = g_in
    return grad, g


def loss_and_grad(layout, params, tokens, starts):
    loss, saved, _ = forward(layout, params, tokens, starts)
    return loss, backward(layout, params, tokens, starts, saved)[0]


# ---------------------------------------------------------------- layers


def _layer_cases():
    """Per layer: (loss of its inputs, inputs, analytic gradients) with loss = sum(r * output)."""
    rng = np.random.default_rng(5)
    N, D, V, T, H = 10, 8, 7, 5, 2
    cases = {}

    ids = rng.integers(0, V, N)
    wte, wpe, r = rng.normal(size=(V, D)), rng.normal(size=(T, D)), rng.normal(size=(N, D))

    def embedding():
        x = np.empty((N, D))
        lm.embedding_forward(ids, wte, wpe, x)
        return np.sum(r * x)

    dwte, dwpe = np.zeros_like(wte), np.zeros_like(wpe)
    lm.embedding_backward(ids, r, dwte, dwpe)
    cases["embedding"] = (embedding, [wte, wpe], [dwte, dwpe])

    x, g, b = rng.normal(size=(N, D)) * 2 + 1, rng.normal(size=D), rng.normal(size=D)
    xhat, rstd = np.empty((N, D)), np.empty(N)

    def layernorm():
        out = np.empty((N, D))
        lm.layernorm_forward(x, g, b, xhat, rstd, out)
        return np.sum(r * out)

    layernorm()
    dx, dg, db = np.zeros_like(x), np.zeros_like(g), np.zeros_like(b)
    lm.layernorm_backward(r, xhat, rstd, g, dx, dg, db)
    cases["layernorm"] = (layernorm, [x, g, b], [dx, dg, db])

    xl, w, bl = rng.normal(size=(N, D)), rng.normal(size=(3, D)), rng.normal(size=3)
    rl = rng.normal(size=(N, 3))

    def linear():
        out = np.empty((N, 3))
        lm.linear_forward(xl, w, bl, out)
        return np.sum(rl * out)

    dxl, dw, dbl = np.empty_like(xl), np.zeros_like(w), np.zeros_like(bl)
    lm.linear_backward(rl, xl, w, dxl, dw, dbl, np.empty_like(w))
    cases["linear"] = (linear, [xl, w, bl], [dxl, dw, dbl])

    h = rng.normal(size=(N, 4 * D)) * 2
    rh, t = rng.normal(size=(N, 4 * D)), np.empty((N, 4 * D))

    def gelu():
        a = np.empty_like(h)
        lm.gelu_forward(h, t, a)
        return np.sum(rh * a)

    gelu()
    dh = np.empty_like(h)
    lm.gelu_backward(rh, h, t, dh)
    cases["gelu"] = (gelu, [h], [dh])

    nb, hd = N // T, D // H
    qkv = rng.normal(size=(N, 3 * D))
    q, k, v = (np.empty((nb * H, T, hd)) for _ in range(3))
    att = np.empty((nb * H, T, T))

    def attention():
        y = np.empty((N, D))
        lm.attention_forward(qkv, q, k, v, att, y)
        return np.sum(r * y)

    attention()
    dqkv = np.empty_like(qkv)
    lm.attention_backward(r, q, k, v, att, dqkv)
    cases["attention"] = (attention, [qkv], [dqkv])

    z, targets = rng.normal(size=(N, V)) * 3, rng.integers(0, V, N)
    probs = z.copy()
    lm.cross_entropy_forward(probs, targets)
    dz = np.empty_like(z)
    lm.cross_entropy_backward(probs, targets, dz)
    cases["cross_entropy"] = (lambda: lm.cross_entropy_forward(z.copy(), targets), [z], [dz])
    return cases


@pytest.mark.parametrize(
    "name", ["embedding", "layernorm", "linear", "gelu", "attention", "cross_entropy"]
)
def test_layer_backward_matches_finite_differences(name):
    loss, arrays, grads = _layer_cases()[name]
    assert fd_error(loss, arrays, grads) < FD_TOL


@njit
def _exp_and_tanh(y, u):
    """e^y and tanh(u) by the layer kernels' in-place loops (3 scratch rows each)."""
    e, t = y.copy(), u.copy()
    n = max(len(e), len(t))
    k, r, q = np.empty(n), np.empty(n), np.empty(n)
    lm._exp_inplace(e, len(e), k, r, q)
    lm._tanh_inplace(t, len(t), k, r, q)
    return e, t


def test_exp_and_tanh_are_accurate_to_a_few_ulps():
    y = -np.exp(np.linspace(-30.0, math.log(708.0), 2001))
    u = np.concatenate([y / 30, -y / 30, [0.0, 25.0, -25.0]])
    got, got_tanh = _exp_and_tanh(np.append(y, -1000.0), u)
    assert np.all(np.abs(got[:-1] - np.exp(y)) <= np.spacing(np.exp(y)))
    assert 0.0 < got[-1] < 1e-307  # floored: as good as 0 next to e^0
    assert [lm._exp_nonpos(v) for v in y] == got[:-1].tolist()  # the cross-entropy's, one by one
    assert np.all(np.abs(got_tanh - np.tanh(u)) <= 4 * np.spacing(np.abs(np.tanh(u))))


# ---------------------------------------------------------------- stages


@pytest.mark.parametrize("stages", [1, 2, 4])
def test_stage_backward_matches_finite_differences_through_the_remaining_stages(stages):
    """g_in and the stage gradient against the loss through the stages after it. S = 1 is the
    whole model; with S = 2, stage 1 is exactly the final LayerNorm, head and cross-entropy;
    with S = 4, stage 0 is the embeddings alone."""
    layout = charlm_layout(**SMALL, layers=2, stages=stages)
    params, tokens, starts = problem(layout)
    _, _, inputs = forward(layout, params, tokens, starts)
    for s in range(stages):
        x_in = inputs[s].copy()
        _, saved, _ = forward(layout, params, tokens, starts, s, x_in)
        grad, g_in = backward(layout, params, tokens, starts, saved, s)
        p = stage(layout, params, s)  # a view: perturbing it perturbs params

        def loss(first=s, x=x_in):
            return forward(layout, params, tokens, starts, first, x)[0]

        arrays, grads = [p], [stage(layout, grad, s)]
        if s > 0:
            arrays.append(x_in)
            grads.append(g_in)
        assert fd_error(loss, arrays, grads) < FD_TOL, f"stage {s} of {stages}"


def test_splitting_into_stages_does_not_change_the_function():
    reference = charlm_layout(**SMALL, layers=3, stages=1)
    params, tokens, starts = problem(reference)
    want_loss, want_grad = loss_and_grad(reference, params, tokens, starts)
    for stages in (2, 3, 5):
        layout = charlm_layout(**SMALL, layers=3, stages=stages)
        assert layout.off[-1] == reference.off[-1]
        np.testing.assert_array_equal(charlm_init(layout, 7), charlm_init(reference, 7))
        loss, grad = loss_and_grad(layout, params, tokens, starts)
        assert abs(loss - want_loss) <= 1e-12
        np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-12)


def test_blocks_are_spread_evenly_over_the_middle_stages():
    def blocks(layers, stages):
        spec = charlm_layout(**SMALL, layers=layers, stages=stages).spec
        return np.diff(spec[lmspec._FIRST :]).tolist()

    assert blocks(6, 8) == [0, 1, 1, 1, 1, 1, 1, 0]
    assert blocks(7, 4) == [0, 4, 3, 0]
    assert blocks(3, 2) == [3, 0]
    assert blocks(2, 1) == [2]


def test_saved_starts_with_the_stage_input_and_sizes_add_up():
    layout = charlm_layout(**SMALL, layers=2, stages=4)
    params, tokens, starts = problem(layout)
    _, saved, inputs = forward(layout, params, tokens, starts)
    for s in range(1, 4):
        np.testing.assert_array_equal(saved[s][: layout.act_size], inputs[s])
    B, T, D, H, V = 2, 5, 8, 2, 7
    N = B * T
    block = 17 * N * D + 2 * N + B * H * T * T
    head = 3 * N * D + N + N * V
    assert layout.saved_size.tolist() == [0, block, block, head]
    assert layout.act_size == N * D


def val_loss(layout, params, tokens, starts, batch) -> float:
    """The recorded loss, as the replay computes it (`layered.eval_loss`)."""
    empty = np.zeros((0, 0))
    return eval_loss((), (layout.spec,), layout.off, layout.act_size, layout.saved_size,
                     params, empty, empty, tokens, starts, batch)  # fmt: skip


def test_loss_is_the_exact_mean_over_windows_in_any_chunking():
    layout = charlm_layout(**SMALL, layers=1, stages=3)
    params, tokens, _ = problem(layout)
    starts = windows(len(tokens), 5, 5, seed=9)
    one_by_one = [val_loss(layout, params, tokens, starts[i : i + 1], 1) for i in range(5)]
    for batch in (1, 2):
        got = val_loss(layout, params, tokens, starts, batch)
        assert got == pytest.approx(np.mean(one_by_one), abs=1e-14)
    assert val_loss(layout, params, tokens, starts[:2], 2) == pytest.approx(
        forward(layout, params, tokens, starts[:2])[0], abs=1e-14
    )
    with pytest.raises(ValueError, match="batch"):
        val_loss(layout, params, tokens, starts, 3)


def test_windows_outside_the_tokens_are_refused():
    layout = charlm_layout(**SMALL, layers=1, stages=1)
    params, tokens, _ = problem(layout)
    bad = np.array([0, len(tokens) - 5], dtype=np.int64)  # needs T + 1 = 6 tokens
    with pytest.raises(IndexError, match="window"):
        val_loss(layout, params, tokens, bad, 2)


# ---------------------------------------------------------------- weight versions (paci)


def test_head_backward_takes_weights_from_params_and_activations_from_saved():
    layout = charlm_layout(**SMALL, layers=1, stages=3)
    p1, tokens, starts = problem(layout, seed=1)
    p2 = p1 + np.random.default_rng(2).normal(0.0, 0.2, len(p1))
    _, saved, _ = forward(layout, p1, tokens, starts)
    grad1, _ = backward(layout, p1, tokens, starts, saved, 2)
    grad2, g_in = backward(layout, p2, tokens, starts, saved, 2)
    w1, w2, d1, d2 = (named(layout, a) for a in (p1, p2, grad1, grad2))
    # What the forward computed under p1, from the head's saved input.
    x = saved[2][: layout.act_size].reshape(10, 8)
    rstd = 1 / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    xhat = (x - x.mean(1, keepdims=True)) * rstd
    ln = xhat * w1["lnf.g"] + w1["lnf.b"]
    logits = ln @ w1["head.w"].T + w1["head.b"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    targets = tokens[starts[:, None] + np.arange(1, 6)].reshape(-1)
    dz = (probs - np.eye(7)[targets]) / 10
    # The head's weight gradients need saved activations only: the same under p1 and p2.
    np.testing.assert_array_equal(d2["head.w"], d1["head.w"])
    np.testing.assert_array_equal(d2["head.b"], d1["head.b"])
    np.testing.assert_allclose(d2["head.w"], dz.T @ ln, rtol=0, atol=1e-14)
    # Everything below the head matrix multiplies by p2's matrix and gain, around the saved
    # normalisation.
    dln = dz @ w2["head.w"]
    np.testing.assert_allclose(d2["lnf.g"], (dln * xhat).sum(0), rtol=0, atol=1e-14)
    dxhat = dln * w2["lnf.g"]
    mean, proj = dxhat.mean(1, keepdims=True), (dxhat * xhat).mean(1, keepdims=True)
    np.testing.assert_allclose(g_in.reshape(10, 8), rstd * (dxhat - mean - xhat * proj), atol=1e-14)


def test_block_backward_mixes_saved_activations_with_current_weights():
    layout = charlm_layout(**SMALL, layers=1, stages=3)
    p1, tokens, starts = problem(layout, seed=1)
    p2 = p1 + np.random.default_rng(2).normal(0.0, 0.2, len(p1))
    _, saved, inputs = forward(layout, p1, tokens, starts)
    g_out = np.random.default_rng(3).normal(size=layout.act_size)

    def block_backward(params, sv):
        grad, g_in = np.zeros_like(params), np.zeros(layout.act_size)
        p, g = stage(layout, params, 1), stage(layout, grad, 1)
        charlm_backward(layout.spec, 1, p, tokens, starts, sv, g_out, g_in, g)
        return named(layout, grad), g_in

    grads1, g_in1 = block_backward(p1, saved[1])
    grads2, g_in2 = block_backward(p2, saved[1])
    # The last linear layer's gradient needs only its saved input and g_out.
    for name in ("block0.mlp.w_proj", "block0.mlp.b_proj"):
        np.testing.assert_array_equal(grads2[name], grads1[name])
    assert not np.allclose(g_in2, g_in1)
    assert not np.allclose(grads2["block0.attn.w_qkv"], grads1["block0.attn.w_qkv"])
    # Not a recompute: the activations of p2's own forward give another gradient.
    saved2, out = np.zeros(layout.saved_size[1]), np.zeros(layout.act_size)
    charlm_forward(layout.spec, 1, stage(layout, p2, 1), tokens, starts, inputs[1], saved2, out)
    grads22, _ = block_backward(p2, saved2)
    assert not np.allclose(grads22["block0.mlp.w_proj"], grads2["block0.mlp.w_proj"])


# ---------------------------------------------------------------- reference models


def reference_loss(layout, flat, tokens, starts, xp):
    """The model written with array operations on the flat params (numpy or torch); `xp`
    supplies the few operations the two spell differently."""
    V, D, H, T, B, L = (
        int(layout.spec[i])
        for i in (lmspec._V, lmspec._D, lmspec._H, lmspec._T, lmspec._B, lmspec._L)
    )
    hd = D // H
    w = named(layout, flat)
    idx = starts[:, None] + np.arange(T)
    x = w["emb.wte"][xp.asarray(tokens[idx])] + w["emb.wpe"]
    above = xp.asarray(np.triu(np.full((T, T), -np.inf), 1))
    for i in range(L):
        p = {n.split(".", 1)[1]: a for n, a in w.items() if n.startswith(f"block{i}.")}
        u = xp.layernorm(x, p["ln1.g"], p["ln1.b"])
        qkv = u @ p["attn.w_qkv"].T + p["attn.b_qkv"]
        q, k, v = (
            qkv[..., j * D : (j + 1) * D].reshape(B, T, H, hd).swapaxes(1, 2) for j in range(3)
        )
        att = xp.softmax(q @ k.swapaxes(-1, -2) / math.sqrt(hd) + above)
        y = (att @ v).swapaxes(1, 2).reshape(B, T, D)
        x = x + y @ p["attn.w_o"].T + p["attn.b_o"]
        u = xp.layernorm(x, p["ln2.g"], p["ln2.b"])
        a = xp.gelu(u @ p["mlp.w_fc"].T + p["mlp.b_fc"])
        x = x + a @ p["mlp.w_proj"].T + p["mlp.b_proj"]
    u = xp.layernorm(x, w["lnf.g"], w["lnf.b"])
    logits = u @ w["head.w"].T + w["head.b"]
    return xp.cross_entropy(logits.reshape(B * T, V), xp.asarray(tokens[idx + 1].reshape(-1)))


def _numpy_ops() -> SimpleNamespace:
    def layernorm(x, g, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * g + b

    def softmax(s):
        e = np.exp(s - s.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def gelu(h):
        return 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))

    def cross_entropy(z, y):
        return float(np.mean(-np.log(softmax(z)[np.arange(len(y)), y])))

    return SimpleNamespace(
        asarray=np.asarray,
        layernorm=layernorm,
        softmax=softmax,
        gelu=gelu,
        cross_entropy=cross_entropy,
    )


def test_matches_a_numpy_reference_model():
    layout = charlm_layout(**SMALL, layers=2, stages=3)
    params, tokens, starts = problem(layout)
    want = reference_loss(layout, params, tokens, starts, _numpy_ops())
    assert forward(layout, params, tokens, starts)[0] == pytest.approx(want, abs=1e-12)


def test_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ops = SimpleNamespace(
        asarray=torch.as_tensor,
        layernorm=lambda x, g, b: F.layer_norm(x, (x.shape[-1],), g, b, eps=1e-5),
        softmax=lambda s: torch.softmax(s, -1),
        gelu=lambda h: F.gelu(h, approximate="tanh"),
        cross_entropy=F.cross_entropy,
    )
    layout = charlm_layout(**SMALL, layers=2, stages=3)
    params, tokens, starts = problem(layout)
    flat = torch.tensor(params, dtype=torch.float64, requires_grad=True)
    loss = reference_loss(layout, flat, tokens, starts, ops)
    loss.backward()
    want_loss, want_grad = loss_and_grad(layout, params, tokens, starts)
    assert loss.item() == pytest.approx(want_loss, abs=1e-12)
    np.testing.assert_allclose(flat.grad.numpy(), want_grad, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- learning


@pytest.fixture
def one_blas_thread():
    """scipy's OpenBLAS on one thread, as the runner runs it (pipebench.engine.blas)."""
    with blas.one_blas_thread():
        yield


@pytest.mark.usefixtures("one_blas_thread")
def test_validation_loss_approaches_the_markov_entropy_rate():
    """A 1-block model learns the chain's transitions: validation loss ends near the entropy
    rate (the best any predictor can do) and not below it by more than sampling noise."""
    corpus = load_corpus("markov", None, seed=1, length=100_000, symbols=16)
    train, valid = split(corpus.tokens, 0.2)
    T, B = 16, 16
    layout = charlm_layout(16, 32, 2, T, B, layers=1, stages=3)
    params = charlm_init(layout, 0)
    m, v = np.zeros_like(params), np.zeros_like(params)
    lr, beta1, beta2 = 1e-2, 0.9, 0.99
    started = time.perf_counter()
    steps = 400
    for step in range(1, steps + 1):
        starts = windows(len(train), T, B, seed=step)
        _, grad = loss_and_grad(layout, params, train, starts)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        rate = lr * min(1.0, 2 * (steps - step) / steps + 0.05)  # decay over the second half
        params -= rate * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + 1e-8)
    tiles = np.arange(0, len(valid) - T - 1, T)
    loss = val_loss(layout, params, valid, tiles, B)
    elapsed = time.perf_counter() - started
    print(
        f"markov: validation {loss:.4f} nats, entropy rate {corpus.entropy_rate:.4f}, "
        f"{steps} steps in {elapsed:.1f} s"
    )
    assert corpus.entropy_rate - 0.03 < loss < corpus.entropy_rate + 0.05


# ---------------------------------------------------------------- layout and init


def test_layout_refuses_bad_shapes():
    for fields, where in [
        ({"width": 10, "heads": 4}, "objective.heads"),
        ({"layers": 0}, "objective.layers"),
        ({"layers": 2, "stages": 5}, "objective.layers"),
        ({"context": 0}, "objective.context"),
        ({"batch": 0}, "objective.batch_size"),
        ({"vocab": 1}, "objective.corpus"),
        ({"stages": 0}, "pipeline.stages"),
    ]:
        args = {**SMALL, "layers": 1, "stages": 1, **fields}
        with pytest.raises(InputError) as error:
            charlm_layout(**args)
        assert error.value.field == where


def test_matrices_and_init():
    layout = charlm_layout(vocab=11, width=16, heads=4, context=6, batch=3, layers=3, stages=4)
    D = 16
    shapes = [(D, D)] * 4 + [(4 * D, D), (D, 4 * D)]
    assert [tuple(r) for r in layout.matrices[:, 1:]] == shapes * 3
    names = {at: name for name, at, _ in layout.tensors()}
    first = layout.matrices[:, 0][:6]
    assert names[first[0]] == "block0.attn.w_qkv"
    assert first[1] - first[0] == first[2] - first[1] == D * D
    assert [names[a] for a in first[3:]] == [
        "block0.attn.w_o",
        "block0.mlp.w_fc",
        "block0.mlp.w_proj",
    ]
    params = charlm_init(layout, 1)
    for name, at, shape in layout.tensors():
        values = params[at : at + math.prod(shape)]
        if len(shape) == 2:
            assert 0.015 < values.std() < 0.025, name
        else:
            assert np.all(values == (1.0 if name.endswith(".g") else 0.0)), name
    assert sum(math.prod(s) for _, _, s in layout.tensors()) == layout.off[-1]


# ---------------------------------------------------------------- corpora


def test_shakespeare_ships_with_the_package():
    corpus = load_corpus("shakespeare", None, seed=0)
    assert len(corpus.alphabet) == 65 and len(corpus.tokens) == 1_115_394
    assert corpus.tokens.dtype == np.int64 and corpus.entropy_rate is None
    assert "".join(corpus.alphabet[t] for t in corpus.tokens[:14]) == "First Citizen:"


def test_markov_entropy_rate_matches_the_sampled_sequence():
    corpus = load_corpus("markov", None, seed=4, length=200_000, symbols=8)
    assert corpus.alphabet == "abcdefgh"
    assert corpus.entropy_rate < math.log(8) - 0.3
    pairs = np.zeros((8, 8))
    np.add.at(pairs, (corpus.tokens[:-1], corpus.tokens[1:]), 1)
    rows = pairs.sum(1, keepdims=True)
    seen = pairs > 0
    estimate = -np.sum(pairs[seen] * np.log((pairs / rows)[seen])) / pairs.sum()
    assert estimate == pytest.approx(corpus.entropy_rate, abs=0.02)
    again = load_corpus("markov", None, seed=4, length=200_000, symbols=8)
    np.testing.assert_array_equal(again.tokens, corpus.tokens)


def test_text_files_and_bad_paths(tmp_path):
    (tmp_path / "poem.txt").write_text("abba cab\n", encoding="utf-8")
    corpus = load_corpus("poem.txt", tmp_path, seed=0)
    assert corpus.alphabet == "\n abc" and corpus.tokens.tolist() == [2, 3, 3, 2, 1, 4, 2, 3, 0]
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "one.txt").write_text("aaaa", encoding="utf-8")
    (tmp_path / "packed.gz").write_bytes(gzip.compress(b"abc"))
    for bad in ("missing.txt", "latin1.txt", "one.txt", "packed.gz", "."):
        with pytest.raises(InputError) as error:
            load_corpus(bad, tmp_path, seed=0)
        assert error.value.field == "objective.corpus"


def test_split_and_windows():
    tokens = np.arange(100)
    train, valid = split(tokens, 0.1)
    assert train.tolist() == list(range(90)) and valid.tolist() == list(range(90, 100))
    starts = windows(100, 10, 1000, seed=3)
    assert starts.min() >= 0 and starts.max() == 89  # a window needs context + 1 tokens
    np.testing.assert_array_equal(starts, windows(100, 10, 1000, seed=3))
    with pytest.raises(InputError):
        windows(10, 10, 1, seed=0)
