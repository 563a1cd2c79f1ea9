"""The charlm objective: a character-level transformer on a corpus, split into stages.

The corpus is one token stream: its first part trains (a minibatch is a set
of windows of context + 1 tokens, drawn like examples), its last part
(`validation` of it) is held out, and the recorded loss is the mean
cross-entropy over a fixed, evenly spaced set of validation windows. On the
Markov corpus the entropy rate is the lowest loss any model can reach, and
it is reported as f*.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipebench.errors import InputError
from pipebench.objectives.charlm.layout import charlm_init, charlm_layout
from pipebench.objectives.corpus import load_corpus, split
from pipebench.objectives.layered import Layered
from pipebench.objectives.sketch import SAMPLING_CODES


def build_charlm(spec, stages: int, corpus_file: Path | None) -> Layered:
    """The objective a `CharlmSpec` describes; `corpus_file` is its text file, resolved."""
    name = spec.corpus if corpus_file is None else str(corpus_file)
    corpus = load_corpus(name, None, spec.seed, spec.length, spec.symbols)
    train, held_out = split(corpus.tokens, spec.validation)
    T = spec.context
    if len(train) <= T + spec.batch_size or len(held_out) <= T:
        raise InputError(
            "context",
            f"windows of {T} + 1 tokens need a longer corpus: {len(train)} training and "
            f"{len(held_out)} validation tokens",
        )
    layers = spec.layers if spec.layers is not None else max(1, stages - 2)
    layout = charlm_layout(
        len(corpus.alphabet), spec.width, spec.heads, T, spec.batch_size, layers, stages
    )
    last_start = len(corpus.tokens) - T - 1
    count = min(spec.eval_windows, last_start - len(train) + 1)
    eval_rows = np.linspace(len(train), last_start, count).astype(np.int64)
    outputs = np.ones((len(layout.matrices), 1), dtype=np.int64)  # stored (out, in)
    rate = corpus.entropy_rate
    what = (
        f"char transformer on {corpus.name} ({len(corpus.alphabet)} symbols, "
        f"{len(train)} training tokens), {layers} layers x {spec.width}, context {T}"
    )
    return Layered(
        kind="charlm",
        description=what + (f", entropy rate {rate:.4f} nats" if rate is not None else ""),
        spec=layout.spec,
        off=layout.off,
        act_size=layout.act_size,
        saved_size=layout.saved_size,
        matrices=np.hstack([layout.matrices, outputs]),
        init=charlm_init(layout, spec.seed),
        data_f=np.zeros((0, 0)),
        data_t=np.zeros((0, 0)),
        data_i=corpus.tokens,
        examples=len(train) - T,  # training windows: starts whose targets stay in train
        eval_rows=eval_rows,
        sampling=SAMPLING_CODES[spec.sampling],
        batch_size=spec.batch_size,
        f_star=rate,
    )
