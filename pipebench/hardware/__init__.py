"""A real model on real hardware: shapes, GPUs, measured profiles, and what they cost.

A leaf package (NumPy and the standard library only): the scenario turns a
model, a GPU and a split of the layers into the per-rank costs the timeline
takes, and the memory model reads the chunk sizes from here.
"""
