"""Token streams for the character-level language model.

Three sources: Tiny Shakespeare (shipped with the package, so runs need no
download), a seeded first-order Markov chain (its entropy rate is known
exactly, so a report can say how far a model is from the best possible loss),
or any UTF-8 text file. Characters become token ids in code-point order.
"""

from __future__ import annotations

import gzip
import math
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from pipebench.errors import InputError
from pipebench.jit import njit

MARKOV_CONCENTRATION = 0.3  # Dirichlet parameter of the transition rows: peaked, low entropy
_MARKOV_NAMES = string.ascii_lowercase + string.ascii_uppercase + string.digits


@dataclass(frozen=True, eq=False)
class Corpus:
    """tokens[i] indexes alphabet; entropy_rate (nats per symbol) is known only for markov."""

    tokens: np.ndarray
    alphabet: str
    entropy_rate: float | None
    name: str


def load_corpus(
    corpus: str, base_dir: Path | None, seed: int, length: int = 200_000, symbols: int = 16
) -> Corpus:
    """ "shakespeare", "markov" (`length` symbols over `symbols`, from `seed`) or a text file.

    A relative path is resolved against base_dir (the scenario's folder). Raises
    `InputError` on "objective.corpus" when the file cannot be used.
    """
    if corpus == "shakespeare":
        packed = resources.files("pipebench").joinpath("data/tinyshakespeare.txt.gz")
        return _from_text(gzip.decompress(packed.read_bytes()).decode("utf-8"), corpus)
    if corpus == "markov":
        return markov_corpus(seed, length, symbols)
    path = Path(corpus)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.exists() and not path.is_file():
        raise InputError(
            "objective.corpus", f"{str(path)!r} is not a regular file; give a UTF-8 text file"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError("objective.corpus", f"cannot read {str(path)!r}: {reason}") from None
    except UnicodeDecodeError as error:
        raise InputError(
            "objective.corpus", f"{str(path)!r} is not UTF-8 text (byte {error.start})"
        ) from None
    if len(set(text)) < 2:
        raise InputError(
            "objective.corpus", f"{str(path)!r} needs at least 2 distinct characters to model"
        )
    return _from_text(text, path.name)


def _from_text(text: str, name: str) -> Corpus:
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    present = np.unique(codes)
    tokens = np.searchsorted(present, codes).astype(np.int64)
    return Corpus(tokens, "".join(map(chr, present)), None, name)


def markov_corpus(seed: int, length: int, symbols: int) -> Corpus:
    """`length` symbols of a seeded chain with Dirichlet(0.3) transition rows.

    The chain starts from its stationary distribution pi, so it is stationary
    throughout, and its entropy rate sum_i pi_i H(P_i) is the best mean loss any
    next-symbol predictor can reach on it.
    """
    if not 2 <= symbols <= len(_MARKOV_NAMES):
        raise InputError("objective.symbols", f"must be in 2..{len(_MARKOV_NAMES)}, got {symbols}")
    if length < 2:
        raise InputError("objective.length", f"must be >= 2, got {length}")
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(symbols, MARKOV_CONCENTRATION), size=symbols)
    pi = stationary(P)
    tokens = _sample_chain(np.cumsum(P, axis=1), np.cumsum(pi), rng.random(length))
    logs = np.log(P, out=np.zeros_like(P), where=P > 0)
    rate = float(-(pi @ (P * logs).sum(axis=1)))
    return Corpus(tokens, _MARKOV_NAMES[:symbols], rate, f"markov{symbols}")


def stationary(P: np.ndarray) -> np.ndarray:
    """pi with pi P = pi and sum(pi) = 1, for an irreducible transition matrix P."""
    n = len(P)
    A = P.T - np.eye(n)
    A[-1] = 1.0  # replace one (redundant) balance equation by the normalisation
    b = np.zeros(n)
    b[-1] = 1.0
    return np.linalg.solve(A, b)


@njit(cache=True)
def _sample_chain(cum_rows, cum_start, u):
    """Inverse-CDF sampling: the first state from cum_start, then each next from its row."""
    out = np.empty(len(u), dtype=np.int64)
    n = cum_rows.shape[1]
    state = min(np.searchsorted(cum_start, u[0], side="right"), n - 1)
    out[0] = state
    for i in range(1, len(u)):
        state = min(np.searchsorted(cum_rows[state], u[i], side="right"), n - 1)
        out[i] = state
    return out


def split(tokens: np.ndarray, validation_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the last fraction of the stream is held out, never shuffled in."""
    if not 0.0 < validation_fraction < 1.0:
        raise InputError(
            "objective.validation_fraction", f"must be in (0, 1), got {validation_fraction}"
        )
    cut = len(tokens) - math.ceil(len(tokens) * validation_fraction)
    return tokens[:cut], tokens[cut:]


def windows(n_tokens: int, context: int, count: int, seed: int) -> np.ndarray:
    """`count` seeded window starts, uniform over all windows of context + 1 tokens."""
    if n_tokens < context + 1:
        raise InputError(
            "objective.context",
            f"windows of {context} + 1 tokens do not fit in {n_tokens} tokens",
        )
    return np.random.default_rng(seed).integers(0, n_tokens - context, size=count, dtype=np.int64)
