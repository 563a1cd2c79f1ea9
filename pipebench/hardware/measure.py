"""Measure a model's parts with PyTorch and write the profile CSV (`pipebench profile`).

Needs only torch and the standard library, so that it runs on a bare GPU machine:

    python -m pipebench.hardware.measure --model gpt2-medium --seq 1024 \\
        --micro-batch 1,2,4,8 --out my_gpu.csv

For each micro-batch size it builds one transformer block, the embedding and
the head (`model.py`'s shapes: pre-LN, fused QKV, causal SDPA, GELU or SwiGLU
MLP, untied head with an fp32 cross-entropy) with fp32 parameters, and times,
under bf16 autocast (or in fp32 with `--precision fp32`), the median of
`--reps` repetitions after `--warmup`:

- forward_ms: the forward pass;
- backward_input_ms: the backward with the part's weights frozen (the input
  gradient only: the I of split-backward schedules; 0 for the embedding, whose
  input is token ids);
- backward_ms: the full backward; backward_weight_ms is backward_ms less
  backward_input_ms (the W), at least 0: the two are timed apart, and on a
  busy machine the difference of two medians can come out below zero;
- adamw_ms: one AdamW step over the part's parameters (fused on CUDA);
- saved_bytes: what autograd saves for the backward, counted by a
  saved-tensor hook (distinct storages, the parameters themselves left out:
  autocast's bf16 copies of them count).

CUDA events time on a GPU; `time.perf_counter` on the CPU.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipebench.hardware.model import MODELS, ModelShape
from pipebench.hardware.profile import COLUMNS, PRECISION_NAMES


class Block(nn.Module):
    """One pre-LN transformer layer."""

    def __init__(self, m: ModelShape) -> None:
        super().__init__()
        h, f = m.hidden, m.ffn
        self.heads = m.heads
        self.swiglu = m.swiglu
        self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.qkv = nn.Linear(h, 3 * h, bias=m.bias)
        self.proj = nn.Linear(h, h, bias=m.bias)
        if m.swiglu:
            self.gate = nn.Linear(h, f, bias=False)
            self.up = nn.Linear(h, f, bias=False)
            self.down = nn.Linear(f, h, bias=False)
        else:
            self.fc = nn.Linear(h, f)
            self.out = nn.Linear(f, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, h = x.shape
        q, k, v = (
            t.view(B, T, self.heads, h // self.heads).transpose(1, 2)
            for t in self.qkv(self.ln1(x)).split(h, dim=-1)
        )
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, h))
        y = self.ln2(x)
        if self.swiglu:
            return x + self.down(F.silu(self.gate(y)) * self.up(y))
        return x + self.out(F.gelu(self.fc(y)))


class Embed(nn.Module):
    """Token and learned position embeddings."""

    def __init__(self, m: ModelShape) -> None:
        super().__init__()
        self.tokens = nn.Embedding(m.vocab, m.hidden)
        self.positions = nn.Embedding(m.seq, m.hidden)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        where = torch.arange(ids.shape[1], device=ids.device)
        return self.tokens(ids) + self.positions(where)


class Head(nn.Module):
    """Final norm, vocabulary projection, cross-entropy in fp32."""

    def __init__(self, m: ModelShape) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(m.hidden)
        self.proj = nn.Linear(m.hidden, m.vocab, bias=False)

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.proj(self.norm(x)).float()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


PARTS: dict[str, type[nn.Module]] = {"block": Block, "embed": Embed, "head": Head}


def _clock(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """A function timing one call in milliseconds on `device`."""
    if device.type == "cuda":

        def timed(run: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)

        return timed

    def wall(run: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        run()
        return (time.perf_counter() - t0) * 1e3

    return wall


def _median(timed, run: Callable[[], object], reps: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    return statistics.median(timed(run) for _ in range(reps))


def _saved_bytes(forward: Callable[[], object], params: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves during `forward`, parameters left out."""
    own = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(seen.values())


def measure_part(
    m: ModelShape, part: str, device: torch.device, precision: str, reps: int, warmup: int
) -> dict[str, float]:
    """The timings and saved bytes of one part for one shape (a row's measured columns)."""
    module = PARTS[part](m).to(device)
    params = list(module.parameters())
    B, T, h = m.micro_batch, m.seq, m.hidden
    ids = torch.randint(0, m.vocab, (B, T), device=device)
    x = torch.randn(B, T, h, device=device, requires_grad=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def forward() -> torch.Tensor:
        with autocast:
            if part == "embed":
                return module(ids)
            return module(x, ids) if part == "head" else module(x)

    def backward(out: torch.Tensor) -> None:
        out.backward(torch.ones_like(out))

    def set_trainable(flag: bool) -> None:
        for p in params:
            p.requires_grad_(flag)
            p.grad = None

    timed = _clock(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def backward_time() -> float:
        times = []
        for i in range(warmup + reps):
            out = forward()
            sync()
            t = timed(lambda out=out: backward(out))
            x.grad = None
            if i >= warmup:
                times.append(t)
        return statistics.median(times)

    fwd = _median(timed, forward, reps, warmup)
    set_trainable(False)
    bwd_input = 0.0 if part == "embed" else backward_time()
    set_trainable(True)
    bwd = backward_time()
    out = forward()
    backward(out)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(params, lr=1e-4, **fused)
    adamw = _median(timed, optimizer.step, reps, warmup)
    saved = _saved_bytes(forward, params)
    return {
        "params": sum(p.numel() for p in params),
        "forward_ms": fwd,
        "backward_input_ms": bwd_input,
        "backward_weight_ms": max(bwd - bwd_input, 0.0),
        "backward_ms": bwd,
        "adamw_ms": adamw,
        "saved_bytes": saved,
    }


def profile_rows(
    name: str,
    shape: ModelShape,
    micro_batches: list[int],
    device: torch.device,
    precision: str = "bf16",
    reps: int = 10,
    warmup: int = 3,
) -> list[dict[str, object]]:
    """One row per micro-batch size x part, in the columns of the profile CSV."""
    torch.manual_seed(0)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []
    for mb in micro_batches:
        m = replace(shape, micro_batch=mb)
        for part in PARTS:
            measured = measure_part(m, part, device, precision, reps, warmup)
            rows.append(
                {
                    "device": device_name,
                    "torch": torch.__version__,
                    "precision": PRECISION_NAMES[precision],
                    "model": name,
                    "part": part,
                    "hidden": m.hidden,
                    "heads": m.heads,
                    "ffn": m.ffn,
                    "swiglu": int(m.swiglu),
                    "layers": m.layers,
                    "vocab": m.vocab,
                    "seq": m.seq,
                    "micro_batch": mb,
                    **measured,
                    "reps": reps,
                }
            )
    return rows


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    """The rows in the shipped table's format (times to 6 significant digits)."""
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        out.writeheader()
        for row in rows:
            out.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


def parse_shape(args: argparse.Namespace) -> tuple[str, ModelShape]:
    """The model's name and shape from a preset and/or its fields."""
    fields = ("layers", "hidden", "heads", "ffn", "vocab")
    given = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    if args.model is not None:
        base = MODELS[args.model]
    elif len(given) == len(fields):
        base = ModelShape(**given)
    else:
        missing = [k for k in fields if k not in given]
        raise ValueError(f"give --model or every one of --{', --'.join(missing)}")
    shape = replace(base, **given, seq=args.seq, swiglu=args.swiglu or base.swiglu)
    if shape.hidden % shape.heads:
        raise ValueError(f"--heads {shape.heads} must divide --hidden {shape.hidden}")
    return args.model or "custom", shape


class _Parser(argparse.ArgumentParser):
    """Bad arguments in one line on stderr, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message}\n")


def argument_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=list(MODELS), help="a preset shape")
    for name in ("layers", "hidden", "heads", "ffn", "vocab"):
        p.add_argument(f"--{name}", type=int, help=f"the shape's {name} (over the preset's)")
    p.add_argument("--swiglu", action="store_true", help="SwiGLU MLP without biases")
    p.add_argument("--seq", type=int, default=1024, help="sequence length (1024)")
    p.add_argument("--micro-batch", default="1", help="sizes to measure, e.g. 1,2,4,8 (1)")
    p.add_argument("--precision", choices=list(PRECISION_NAMES), default="bf16")
    p.add_argument("--device", default=None, help="cuda or cpu (cuda when there is one)")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions (10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed repetitions first (3)")
    p.add_argument("--out", type=Path, required=True, help="the CSV to write")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m pipebench.hardware.measure") -> int:
    """Measure and write the CSV; bad arguments: one line on stderr and 2."""
    args = argument_parser(prog).parse_args(argv)
    try:
        name, shape = parse_shape(args)
        sizes = [int(x) for x in args.micro_batch.split(",")]
        numbers = [*sizes, args.reps, args.warmup + 1, shape.seq, shape.layers, shape.hidden,
                   shape.heads, shape.ffn, shape.vocab]  # fmt: skip
        if min(numbers) < 1:
            raise ValueError("sizes, --seq, --reps and the shape must be >= 1, --warmup >= 0")
        if args.out.is_dir() or not args.out.parent.is_dir():
            raise ValueError(f"--out {args.out}: a file in an existing folder")
        if args.device is not None and args.device not in ("cpu", "cuda"):
            raise ValueError(f"--device must be cpu or cuda, got {args.device!r}")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: this PyTorch sees no CUDA device")
    except ValueError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = profile_rows(name, shape, sizes, device, args.precision, args.reps, args.warmup)
    write_csv(rows, args.out)
    print(f"wrote {len(rows)} rows measured on {rows[0]['device']} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
