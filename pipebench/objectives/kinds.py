"""Names of objective kinds that modules at every level of `objectives` read (no imports)."""

# The objectives whose stages are nonlinear layers (objectives/layered.py); the position
# of a kind is the code its kernels dispatch on.
LAYERED_KINDS = ("mlp", "charlm")

# The corpora charlm ships (objectives/corpus.py); any other `corpus:` is a text file.
BUILTIN_CORPORA = ("shakespeare", "markov")
