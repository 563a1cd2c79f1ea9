"""`python -m pipebench` runs the command line."""

from pipebench.cli import main

raise SystemExit(main())
