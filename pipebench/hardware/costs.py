"""Per-stage seconds of a model split over a pipeline: from the roofline or a profile.

Stage s holds `split[s]` layers; the first also the embedding, the last the
head and the loss. Its F, I and W are the sums over its parts; its update
an AdamW step over its parameters. `comm` is one activation crossing a link
(the fp32 residual stream of one micro-batch over one direction of the
link, plus its latency): every hop is charged as the slowest one, across
nodes when the pipeline is longer than a node. `allreduce` is LocalSGD's
averaging: a ring all-reduce of the largest stage's fp32 parameters among
as many replicas as stages (LocalSGD's default), each stage at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipebench.errors import InputError
from pipebench.hardware.gpus import Hardware
from pipebench.hardware.model import ModelShape
from pipebench.hardware.profile import Profile
from pipebench.hardware.roofline import H200_FIT, RooflineFit, part_times, update_time
from pipebench.hardware.sizes import WIDE, check_split


@dataclass(frozen=True)
class ChunkCosts:
    """Seconds per stage (arrays of length S) and of the links.

    `backward` is the full backward; split-backward schedules run its
    `backward_weight` part (W) apart from the rest (I).
    """

    forward: np.ndarray
    backward: np.ndarray
    backward_weight: np.ndarray
    update: np.ndarray
    comm: float
    allreduce: float

    @property
    def backward_input(self) -> np.ndarray:
        return self.backward - self.backward_weight


def even_split(layers: int, stages: int) -> np.ndarray:
    """`layers` over `stages` evenly; `InputError` when they do not divide."""
    if layers % stages:
        raise InputError(
            "layers_per_stage",
            f"{layers} layers do not split evenly over {stages} stages; give layers_per_stage "
            f"(one count per stage, summing to {layers})",
        )
    return np.full(stages, layers // stages, dtype=np.int64)


def _links(model: ModelShape, hardware: Hardware, stages: int, stage_params: float) -> tuple:
    """(comm, allreduce) in seconds."""
    latency = hardware.link_latency_us * 1e-6
    hop = hardware.link_gbps if stages <= hardware.gpus_per_node else hardware.inter_node_gbps
    comm = model.tokens * model.hidden * WIDE / (hop * 1e9) + latency
    replicas = stages  # LocalSGD's default
    within = replicas * stages <= hardware.gpus_per_node
    bandwidth = (hardware.link_gbps if within else hardware.inter_node_gbps) * 1e9
    steps = replicas - 1
    allreduce = 2 * steps / replicas * 4.0 * stage_params / bandwidth + 2 * steps * latency
    return comm, allreduce


def _per_stage(split: np.ndarray, block, embed, head) -> np.ndarray:
    out = split * np.float64(block)
    out[0] += embed
    out[-1] += head
    return out


def analytic_costs(
    model: ModelShape,
    hardware: Hardware,
    precision: str,
    split: np.ndarray,
    fit: RooflineFit = H200_FIT,
) -> ChunkCosts:
    """Seconds per stage from the roofline."""
    split = check_split(model, split)
    times = {p: part_times(model, p, hardware, precision, fit) for p in ("block", "embed", "head")}
    params = _per_stage(
        split, model.part_params("block"), model.part_params("embed"), model.part_params("head")
    )
    forward, backward_input, backward_weight = (
        _per_stage(split, times["block"][k], times["embed"][k], times["head"][k]) for k in range(3)
    )
    comm, allreduce = _links(model, hardware, len(split), float(params.max()))
    return ChunkCosts(
        forward=forward,
        backward=backward_input + backward_weight,
        backward_weight=backward_weight,
        update=np.array([update_time(p, hardware, fit) for p in params]),
        comm=comm,
        allreduce=allreduce,
    )


def profile_costs(
    profile: Profile, model: ModelShape, hardware: Hardware, split: np.ndarray
) -> ChunkCosts:
    """Seconds per stage from measured rows: each the sum of its parts' rows (ms / 1000);
    I is the full backward less W."""
    split = check_split(model, split)
    rows = {p: profile.row(model, p) for p in ("block", "embed", "head")}

    def total(column: str) -> np.ndarray:
        ms = _per_stage(split, *(getattr(rows[p], column) for p in ("block", "embed", "head")))
        return ms / 1e3

    params = _per_stage(split, rows["block"].params, rows["embed"].params, rows["head"].params)
    comm, allreduce = _links(model, hardware, len(split), float(params.max()))
    return ChunkCosts(
        forward=total("forward_ms"),
        backward=total("backward_ms"),
        backward_weight=total("backward_weight_ms"),
        update=total("adamw_ms"),
        comm=comm,
        allreduce=allreduce,
    )
