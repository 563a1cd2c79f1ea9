"""pipebench: benchmark pipeline-parallel training schedules on a simulated clock."""

__version__ = "0.1.0"
