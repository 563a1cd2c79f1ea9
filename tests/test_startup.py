"""Start-up: the quick commands load only what they need (modules, not timings)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from pipebench.cli import main
sys.argv = ["pipebench", *sys.argv[1:]]
try:
    main()
finally:
    print("LOADED=" + ",".join(m for m in ("numba", "pandas", "matplotlib") if m in sys.modules))
"""


def loaded(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("LOADED=")][-1]
    return set(filter(None, line.removeprefix("LOADED=").split(",")))


def test_importing_the_cli_loads_neither_numba_nor_pandas():
    code = "import sys, pipebench.cli; print(sorted({'numba', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["list"], ["schedule", "--help"]])
def test_help_and_list_load_no_heavy_module(args):
    assert loaded(*args) == set()


def test_compare_loads_pandas_but_not_numba(tmp_path):
    (tmp_path / "summary.csv").write_text("schedule,label\n")  # read, then refused or shown
    assert "numba" not in loaded("compare", str(tmp_path))
