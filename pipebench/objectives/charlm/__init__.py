"""A tiny character-level transformer language model, split into pipeline stages.

The engine runs every stage's forward and backward separately, per micro-batch,
and under paci the backward multiplies by weights newer than the forward's
(docs/schedules.md). So each backward takes every weight from its `params` argument
and every activation (layer inputs, pre-activations, attention probabilities,
LayerNorm statistics) from what the forward saved; with the forward's params it
is the exact gradient. The kernels are hand-written numba over flat arrays so
they run without Python objects inside the engine's loops; every matrix
product is a BLAS call on contiguous 2-D views.

Model (GPT-2 style, pre-LayerNorm): token + learned position embedding;
`layers` blocks of x + attn(LN(x)), then x + mlp(LN(x)) with causal multi-head
self-attention and a tanh-GELU MLP of width 4D; final LayerNorm, a linear head
with bias and the mean cross-entropy over the B*T tokens, in nats. Linear
weights are stored (out, in) like torch, so q, k and v are contiguous row
blocks of one (3D, D) matrix.
"""

from pipebench.jit import njit

# Kernels use numpy's error model: Python's raises on a zero divisor, and that branch keeps
# LLVM from vectorising the elementwise loops.
kernel = njit(cache=True, error_model="numpy")
# A part of a kernel: numba types it into each caller instead of compiling it on its own.
# Every compiled kernel is linked into its callers and optimised and turned into machine
# code again at each level above it, so each level removed is paid once less
# (benchmarks/perf/README.md, "Issue 16, seventh round: charlm").
part = njit(cache=True, error_model="numpy", inline="always")
