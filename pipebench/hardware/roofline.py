"""How long a part of the model takes on a GPU: a roofline with a size-dependent efficiency.

Every pass (F, I = input gradient, W = weight gradient) of a part costs

    launch + products / (peak x eta(products)) + traffic / hbm

- `products`: the FLOPs of its matrix products (2 per weight per token, and
  causal attention's two products over half the seq x seq square; its backward
  2.5 times that, all in I). They run at `eta(x) = eta_max x / (x + half)` of
  the GPU's dense bf16 peak (half that in fp32): small products cannot fill the
  GPU. A product over a dimension that is not a multiple of 8 (GPT-2's
  vocabulary of 50257) misses the tensor cores' fast path: `misaligned` of that.
- `traffic`: the bytes of the memory-bound kernels at the GPU's HBM bandwidth:
  norms, activations and residual adds (per token, in units of values touched:
  8h + ffn for a GELU block, 8h + 2.5 ffn for SwiGLU), the fp32 -> bf16 weight
  casts of autocast (6 bytes per parameter in F), the fp32 weight gradients'
  accumulation (8 per parameter in W), the loss over the logits (per logit),
  the embedding's gather and its scatter-add backward.
- `launch`: kernel launches and the host's bookkeeping, a fixed time per pass.

The coefficients in `H200_FIT` were fitted to the shipped measurements
(`data/h200_layer_costs.csv`) by `benchmarks/roofline_fit.py`, which prints
them and the errors; docs/hardware.md gives the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipebench.hardware.gpus import Hardware
from pipebench.hardware.model import ModelShape

PASSES = ("forward", "backward_input", "backward_weight")
ALIGN = 8  # tensor cores take bf16 matrix dimensions in multiples of 8


@dataclass(frozen=True)
class RooflineFit:
    """The fitted coefficients of the roofline (see the module's docstring)."""

    eta_max: float  # best fraction of peak a matrix product reaches
    half_flops: float  # product size (FLOPs) at which it reaches half of that
    misaligned: float  # rate of a product with a dimension not a multiple of 8, vs aligned
    launch_forward_s: float  # fixed time of a forward pass of a part
    launch_backward_s: float  # of an I or a W pass
    block_forward_bytes: float  # traffic per value touched per token by a block's forward
    block_backward_bytes: float  # the same for its I
    loss_bytes: float  # traffic per logit of the head's loss, forward and I each
    launch_embed_s: float  # fixed time of the embedding's forward (a lookup and an add)
    embed_forward_bytes: float  # per token x hidden of the embedding's gather
    embed_weight_bytes: float  # per token x hidden of its scatter-add backward
    position_weight_bytes: float  # per position x hidden of the position table's backward
    adamw_bytes: float  # traffic per parameter of one AdamW step (fp32 state)
    launch_update_s: float  # fixed time of a step


# Fitted by benchmarks/roofline_fit.py on the rows with micro_batch x seq >= 4096.
H200_FIT = RooflineFit(
    eta_max=0.737,
    half_flops=146000000000.0,
    misaligned=0.224,
    launch_forward_s=8.99e-05,
    launch_backward_s=0.000192,
    block_forward_bytes=5.77,
    block_backward_bytes=10.9,
    loss_bytes=41.5,
    launch_embed_s=8.18e-05,
    embed_forward_bytes=21.3,
    embed_weight_bytes=44.4,
    position_weight_bytes=65.9,
    adamw_bytes=39.6,
    launch_update_s=0.00012,
)


def _product_time(flops: float, rate: float, fit: RooflineFit) -> float:
    """Seconds of matrix products of `flops` at a peak `rate` (FLOP/s), size-dependent."""
    if flops <= 0:
        return 0.0
    return (flops + fit.half_flops) / (rate * fit.eta_max)


def part_times(
    model: ModelShape, part: str, hardware: Hardware, precision: str, fit: RooflineFit = H200_FIT
) -> tuple[float, float, float]:
    """Seconds of one micro-batch's F, I and W through one `part` of `model` on `hardware`."""
    T, h, f, V = model.tokens, model.hidden, model.ffn, model.vocab
    peak = hardware.peak_tflops * 1e12 * (0.5 if precision == "fp32" else 1.0)
    hbm = hardware.hbm_gbps * 1e9
    params = model.part_params(part)
    fwd, bwd = fit.launch_forward_s, fit.launch_backward_s
    if part == "embed":
        gather = fit.embed_forward_bytes * T * h / hbm
        scatter = (fit.embed_weight_bytes * T * h + fit.position_weight_bytes * model.seq * h) / hbm
        return fit.launch_embed_s + gather, 0.0, bwd + scatter + 8.0 * params / hbm
    if part == "head":
        aligned = V % ALIGN == 0 and h % ALIGN == 0
        rate = peak * (1.0 if aligned else fit.misaligned)
        product = _product_time(model.forward_flops("head"), rate, fit)
        loss = fit.loss_bytes * T * V / hbm
        return (
            fwd + product + loss + 6.0 * params / hbm,
            bwd + product + loss,
            bwd + product + 8.0 * params / hbm,
        )
    weights = 2.0 * T * model.matmul_params("block")
    attention = model.forward_flops("block") - weights
    touched = T * (8 * h + (2.5 if model.swiglu else 1.0) * f)
    return (
        fwd + _product_time(weights + attention, peak, fit)
        + (fit.block_forward_bytes * touched + 6.0 * params) / hbm,
        bwd + _product_time(weights + 2.5 * attention, peak, fit)
        + fit.block_backward_bytes * touched / hbm,
        bwd + _product_time(weights, peak, fit) + 8.0 * params / hbm,
    )  # fmt: skip


def update_time(params: float, hardware: Hardware, fit: RooflineFit = H200_FIT) -> float:
    """Seconds of one AdamW step over `params` fp32 parameters (memory-bound)."""
    return fit.launch_update_s + fit.adamw_bytes * params / (hardware.hbm_gbps * 1e9)
