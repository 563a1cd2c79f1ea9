"""`python -m pipebench` runs the command line."""

from pipebench.cli import console

raise SystemExit(console())
