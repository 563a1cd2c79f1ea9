"""Sweeps over scenario values: grids and ranges of values."""
