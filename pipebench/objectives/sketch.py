"""What a block-linear objective's spec alone says: its sampling codes and, for drawn
data, its shape and line (`Sketch`). No NumPy: `validate` checks a random objective
from here without making its data; the builders (quadratic.py, logistic.py) read
their line and shape from the same sketch."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_SHUFFLE = 0  # a fixed partition into batches, visited in a shuffled order each epoch
SAMPLE_UNIFORM = 1  # each example drawn uniformly, with replacement
SAMPLE_FULL = 2  # every example, every time: exact gradients
SAMPLE_SEQUENTIAL = 3  # consecutive rows cut into batches, visited in order: draw m -> batch m % nb
SAMPLE_BATCH = 4  # one batch of that same partition drawn uniformly, with replacement

# A scenario's `sampling:` value -> its code (SAMPLE_FULL is the diagonal quadratic's own).
SAMPLING_CODES = {
    "shuffle": SAMPLE_SHUFFLE,
    "uniform": SAMPLE_UNIFORM,
    "sequential": SAMPLE_SEQUENTIAL,
    "batch": SAMPLE_BATCH,
}


@dataclass(frozen=True)
class Sketch:
    """What the checks and `validate`'s line read of a block-linear objective, where its
    spec alone says it (random data): `validate` makes none of the data."""

    description: str
    examples: int
    dim: int
    sampling: int

    @classmethod
    def drawn(cls, spec, name: str, detail: str = "") -> Sketch:
        """A variant of drawn data: `spec`'s examples x dim, 600 x 512 unless given."""
        n, d = spec.examples or 600, spec.dim or 512
        return cls(f"{name}, {n} examples x {d}{detail}", n, d, SAMPLING_CODES[spec.sampling])


def quadratic(spec) -> Sketch | None:
    """The random variant's shape and line, from its spec (None for the other variants)."""
    return Sketch.drawn(spec, "random least squares") if spec.variant == "random" else None


def logistic(spec) -> Sketch | None:
    """The synthetic variant's shape and line, from its spec (None for a file's data)."""
    if spec.variant != "synthetic":
        return None
    return Sketch.drawn(spec, "synthetic logistic regression", f", l2 {spec.l2:g}")


# By objective kind: its sketch from its spec (the layered kinds have none).
SKETCHES = {"quadratic": quadratic, "logistic": logistic}
