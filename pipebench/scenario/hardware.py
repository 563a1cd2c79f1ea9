"""A model on a GPU instead of typed costs: the scenario's fields and the costs they give.

`pipeline.model` (a preset name, or its fields), `pipeline.hardware` (a GPU
preset, or its numbers over a `base`), `pipeline.profile` (measured costs:
`h200` or a CSV of `pipebench profile`) and `pipeline.layers_per_stage` turn
into the per-rank seconds the timeline takes (`CostModel`), so that nothing
below the scenario learns about models. The same function serves
`pipebench schedule --model ...`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipebench.errors import InputError
from pipebench.hardware.gpus import GPUS, Hardware, custom_hardware
from pipebench.hardware.model import MODELS, ModelShape, check_shape, model_preset
from pipebench.hardware.sizes import PRECISIONS, ChunkSizes, chunk_sizes, profile_chunk_sizes
from pipebench.scenario.base import NonNegFloat, PosFloat, PosInt, StrictModel, problem, unknown

if TYPE_CHECKING:  # a scenario without a model loads neither the costs nor the profiles
    import numpy as np

    from pipebench.hardware.costs import ChunkCosts
    from pipebench.timeline.costs import CostModel

# The costs a model and a GPU give; jitter, seed and straggler still apply to them.
MODEL_COSTS = ("forward", "backward", "comm", "update", "allreduce")


class ModelSpec(StrictModel):
    """A transformer: a preset by name, with any of its fields changed, or every field."""

    preset: str | None = None
    layers: PosInt | None = None
    hidden: PosInt | None = None
    heads: PosInt | None = None
    ffn: PosInt | None = None
    vocab: PosInt | None = None
    seq: PosInt | None = None
    micro_batch: PosInt | None = None
    swiglu: bool | None = None
    precision: Literal[tuple(PRECISIONS)] = "bf16"  # type: ignore[valid-type]

    @field_validator("preset")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        if name is not None and name not in MODELS:
            raise unknown("model", name, list(MODELS))
        return name

    def shape(self) -> ModelShape:
        """The shape; `InputError` naming the field that is missing or makes no transformer."""
        given = {
            f.name: getattr(self, f.name)
            for f in fields(ModelShape)
            if getattr(self, f.name) is not None
        }
        if self.preset is not None:
            return check_shape(model_preset(self.preset, **given))
        missing = [k for k in ("layers", "hidden", "heads", "ffn", "vocab") if k not in given]
        if missing:
            raise InputError(
                f"model.{missing[0]}", f"missing; give a preset ({', '.join(MODELS)}) or it"
            )
        return check_shape(ModelShape(**given))


class HardwareSpec(StrictModel):
    """A GPU: a preset's numbers changed (`base`), or every number given."""

    base: str | None = None
    peak_tflops: PosFloat | None = None
    hbm_gbps: PosFloat | None = None
    memory_gb: PosFloat | None = None
    link_gbps: PosFloat | None = None
    link_latency_us: NonNegFloat | None = None
    inter_node_gbps: PosFloat | None = None
    gpus_per_node: PosInt | None = None

    @field_validator("base")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        if name is not None and name not in GPUS:
            raise unknown("hardware", name, list(GPUS))
        return name

    def machine(self) -> Hardware:
        given = {k: v for k, v in self if k != "base" and v is not None}
        return custom_hardware(self.base, **given)


class MachineSpec(StrictModel):
    """The fields `pipeline` gains: a model, a GPU, a profile, a split of the layers."""

    model: ModelSpec | None = None
    hardware: HardwareSpec | None = None
    profile: Annotated[str, Field(min_length=1)] | None = None
    layers_per_stage: list[Annotated[int, Field(ge=1)]] | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _model_name(cls, value: Any) -> Any:
        return {"preset": value} if isinstance(value, str) else value

    @field_validator("hardware", mode="before")
    @classmethod
    def _hardware_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in GPUS:
                raise unknown("hardware", value, list(GPUS))
            return {"base": value}
        return value

    @model_validator(mode="after")
    def _with_model(self) -> MachineSpec:
        if self.model is None:
            for name in ("hardware", "profile", "layers_per_stage"):
                if getattr(self, name) is not None:
                    raise problem("needs pipeline.model (the model it is about)", name)
        elif self.hardware is None:
            raise problem(f"missing; the model runs on a GPU: one of {', '.join(GPUS)}", "hardware")
        return self


@dataclass(frozen=True)
class Machine:
    """A model on a GPU, split over the pipeline, and the costs and sizes that follow."""

    model: ModelShape
    hardware: Hardware
    precision: str
    split: np.ndarray  # layers per stage
    chunks: ChunkCosts  # seconds per stage
    sizes: ChunkSizes  # parameters and bytes per stage
    source: str  # "roofline" or the profile's name

    @property
    def tokens_per_microbatch(self) -> int:
        return self.model.tokens

    def mfu(self, tokens_per_second: float, gpus: int) -> float:
        """Model FLOPs utilisation: the model's training FLOPs per second over the GPUs' peak."""
        peak = self.hardware.peak_tflops * 1e12 * (0.5 if self.precision == "fp32" else 1.0)
        return tokens_per_second * self.model.flops_per_token() / (peak * gpus)

    def cost_model(
        self, jitter: float = 0.0, seed: int = 0, straggler: tuple[int, float] | None = None
    ) -> CostModel:
        from pipebench.timeline.costs import CostModel

        c = self.chunks
        return CostModel.build(
            len(self.split),
            forward=list(c.forward),
            backward=list(c.backward),
            weight_grad=list(c.backward_weight),
            comm=c.comm,
            update=float(c.update.max()),
            allreduce=c.allreduce,
            jitter=jitter,
            seed=seed,
            straggler=straggler,
        )


def build_machine(
    model: ModelShape,
    hardware: Hardware,
    stages: int,
    precision: str = "bf16",
    profile: str | None = None,
    layers_per_stage: list[int] | None = None,
    base: Path | None = None,
) -> Machine:
    """The costs and sizes of `model` on `hardware` over `stages` ranks; `InputError` naming
    the field at fault (`layers_per_stage`, `profile`, ...)."""
    import numpy as np

    from pipebench.hardware.costs import analytic_costs, even_split, profile_costs
    from pipebench.hardware.profile import load_profile

    if layers_per_stage is None:
        split = even_split(model.layers, stages)
    else:
        if len(layers_per_stage) != stages:
            raise InputError(
                "layers_per_stage",
                f"one count per stage: {stages} expected, got {len(layers_per_stage)}",
            )
        split = np.asarray(layers_per_stage, dtype=np.int64)
    if profile is None:
        chunks = analytic_costs(model, hardware, precision, split)
        sizes = chunk_sizes(model, split, precision)
        source = "roofline"
    else:
        measured = load_profile(profile, base)
        if measured.precision != precision:
            raise InputError(
                "profile",
                f"{measured.source} was measured in {measured.precision}, the model trains in "
                f"{precision}",
            )
        chunks = profile_costs(measured, model, hardware, split)
        sizes = profile_chunk_sizes(measured, model, split, precision)
        source = measured.source
    return Machine(model, hardware, precision, split, chunks, sizes, source)
