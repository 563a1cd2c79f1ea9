"""A transformer's shape, its presets, and what its parts hold and compute.

The shapes are those of the measurements shipped in `data/h200_layer_costs.csv`:
pre-LN blocks with LayerNorm (weight and bias), causal attention with a fused
QKV projection, a GELU MLP with biases (GPT-2 style) or a SwiGLU MLP without
biases (Llama style; `swiglu` chooses both), learned position embeddings, and an
untied vocabulary head after a final LayerNorm. A model is cut into three kinds
of parts: `block` (one layer), `embed` (token and position embedding) and `head`
(final norm, vocabulary projection and cross-entropy).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipebench.errors import InputError, did_you_mean

PARTS = ("block", "embed", "head")


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer and the micro-batch it is trained on."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    seq: int = 1024
    micro_batch: int = 1
    swiglu: bool = False

    @property
    def tokens(self) -> int:
        """Tokens in one micro-batch."""
        return self.seq * self.micro_batch

    @property
    def bias(self) -> bool:
        """GPT-style layers carry biases, Llama-style (SwiGLU) ones do not."""
        return not self.swiglu

    def part_params(self, part: str) -> int:
        """Parameters of one block, of the embedding, or of the head."""
        h, f = self.hidden, self.ffn
        if part == "embed":
            return self.vocab * h + self.seq * h
        if part == "head":
            return self.vocab * h + 2 * h
        attention = 4 * h * h + (4 * h if self.bias else 0)
        mlp = 3 * h * f if self.swiglu else 2 * h * f + (f + h if self.bias else 0)
        return attention + mlp + 4 * h  # two LayerNorms, weight and bias

    def params(self) -> int:
        """Parameters of the whole model."""
        return (
            self.layers * self.part_params("block")
            + self.part_params("embed")
            + self.part_params("head")
        )

    def matmul_params(self, part: str) -> int:
        """Weights that take part in a matrix product per token (no biases, norms, lookups)."""
        h, f = self.hidden, self.ffn
        if part == "embed":
            return 0
        if part == "head":
            return self.vocab * h
        return 4 * h * h + (3 if self.swiglu else 2) * h * f

    def forward_flops(self, part: str) -> float:
        """Floating-point operations of one micro-batch's forward through `part`.

        2 per weight per token for the matrix products; causal attention's two
        products (scores and their average) over half the seq x seq square.
        """
        T = self.tokens
        flops = 2.0 * T * self.matmul_params(part)
        if part == "block":
            flops += 2.0 * T * self.seq * self.hidden
        return flops

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward and backward, 3x the forward): 6N plus attention."""
        per_mb = self.layers * self.forward_flops("block") + self.forward_flops("head")
        return 3.0 * per_mb / self.tokens


# The shapes of the shipped measurements (GPT-2 as published; Llama's layer
# shapes with GPT-2's learned position embedding, as measured).
MODELS: dict[str, ModelShape] = {
    "gpt2-small": ModelShape(layers=12, hidden=768, heads=12, ffn=3072, vocab=50257),
    "gpt2-medium": ModelShape(layers=24, hidden=1024, heads=16, ffn=4096, vocab=50257),
    "gpt2-xl": ModelShape(layers=48, hidden=1600, heads=25, ffn=6400, vocab=50257),
    "llama2-7b": ModelShape(layers=32, hidden=4096, heads=32, ffn=11008, vocab=32000, swiglu=True),
    "llama3-8b": ModelShape(layers=32, hidden=4096, heads=32, ffn=14336, vocab=128256, swiglu=True),
}


def model_preset(name: str, **changes: int | bool) -> ModelShape:
    """A preset shape by name, with `changes` (seq, micro_batch, ...) applied."""
    if name not in MODELS:
        raise InputError(
            "model",
            f"unknown model {name!r}{did_you_mean(name, list(MODELS))}; known: {', '.join(MODELS)}",
        )
    return replace(MODELS[name], **changes)


def check_shape(model: ModelShape) -> ModelShape:
    """`model`, or an `InputError` naming the field that makes no transformer."""
    for field in ("layers", "hidden", "heads", "ffn", "vocab", "seq", "micro_batch"):
        value = getattr(model, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"model.{field}", f"must be a whole number >= 1, got {value!r}")
    if model.hidden % model.heads:
        raise InputError("model.heads", f"must divide hidden ({model.hidden}), got {model.heads}")
    return model
