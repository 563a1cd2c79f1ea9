"""GPUs by their public specifications: compute, memory, and the links between them.

`peak_tflops` is the dense (not 2:4-sparse) bf16 tensor rate, `hbm_gbps` the
memory bandwidth, `link_gbps` one direction of the GPU-to-GPU link inside a
node (NVLink: half the bidirectional figure vendors quote), `inter_node_gbps`
one GPU's network port between nodes. `link_latency_us` is not a datasheet
figure: a typical small-message point-to-point latency of NCCL/RCCL over the
link, taken the same for all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from pipebench.errors import InputError, did_you_mean


@dataclass(frozen=True)
class Hardware:
    """One GPU model and its links, as the roofline and the comm costs use them."""

    name: str
    peak_tflops: float
    hbm_gbps: float
    memory_gb: float
    link_gbps: float
    link_latency_us: float = 5.0
    inter_node_gbps: float = 50.0
    gpus_per_node: int = 8


GPUS: dict[str, Hardware] = {
    # NVIDIA H100 SXM5 datasheet: 989 TFLOPS bf16 dense (1979 with sparsity), 80 GB HBM3 at
    # 3.35 TB/s, NVLink 4 900 GB/s bidirectional; DGX H100: 8 GPUs, 400 Gb/s ConnectX-7 each.
    "h100": Hardware("h100", 989.4, 3350, 80, 450, inter_node_gbps=50),
    # NVIDIA H200 SXM datasheet: 989 TFLOPS bf16 dense, 141 GB HBM3e at 4.8 TB/s,
    # NVLink 900 GB/s; HGX H200 nodes of 8 with 400 Gb/s per GPU.
    "h200": Hardware("h200", 989.4, 4800, 141, 450, inter_node_gbps=50),
    # NVIDIA A100 80GB SXM datasheet: 312 TFLOPS bf16 dense, 2,039 GB/s HBM2e,
    # NVLink 3 600 GB/s bidirectional; DGX A100: 200 Gb/s HDR InfiniBand per GPU.
    "a100-80gb": Hardware("a100-80gb", 312, 2039, 80, 300, inter_node_gbps=25),
    # NVIDIA HGX B200 datasheet: 2.25 PFLOPS bf16 dense per GPU (4.5 sparse), 180 GB HBM3e at
    # 7.7 TB/s, NVLink 5 1.8 TB/s bidirectional; DGX B200: 400 Gb/s ConnectX-7 per GPU.
    "b200": Hardware("b200", 2250, 7700, 180, 900, inter_node_gbps=50),
    # AMD Instinct MI300X datasheet: 1307.4 TFLOPS bf16 dense, 192 GB HBM3 at 5.3 TB/s;
    # 7 Infinity Fabric links of 128 GB/s bidirectional each: 64 GB/s one way to a peer.
    "mi300x": Hardware("mi300x", 1307.4, 5300, 192, 64, inter_node_gbps=50),
    # NVIDIA L40S datasheet: 362 TFLOPS bf16 dense, 48 GB GDDR6 at 864 GB/s, no NVLink:
    # PCIe Gen4 x16 at 32 GB/s one way; 400 Gb/s ports between nodes assumed.
    "l40s": Hardware("l40s", 362.05, 864, 48, 32, inter_node_gbps=50),
}

NUMBERS = ("peak_tflops", "hbm_gbps", "memory_gb", "link_gbps", "inter_node_gbps")


def gpu_preset(name: str) -> Hardware:
    """A GPU by name; `InputError` listing the known ones."""
    if name not in GPUS:
        raise InputError(
            "hardware",
            f"unknown hardware {name!r}{did_you_mean(name, list(GPUS))}; known: {', '.join(GPUS)}",
        )
    return GPUS[name]


def custom_hardware(base: str | None, **values: float) -> Hardware:
    """A GPU from its numbers, starting from preset `base` (or none: every number given)."""
    known = [f.name for f in fields(Hardware) if f.name != "name"]
    start = gpu_preset(base) if base is not None else None
    if start is None:
        missing = [k for k in NUMBERS if k not in values]
        if missing:
            raise InputError(
                f"hardware.{missing[0]}",
                f"missing; give a `base` preset ({', '.join(GPUS)}) or every one of "
                f"{', '.join(NUMBERS)}",
            )
        start = Hardware("custom", *(values[k] for k in NUMBERS[:4]))
    for key, value in values.items():
        if key not in known:
            raise InputError(f"hardware.{key}", f"unknown; allowed: {', '.join(known)}")
        low_ok = value >= 0 if key == "link_latency_us" else value > 0
        if not (math.isfinite(value) and low_ok):
            raise InputError(f"hardware.{key}", f"must be a finite number > 0, got {value}")
    return replace(start, name=start.name if base is None else f"{base}*", **values)
