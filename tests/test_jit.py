"""pipebench.jit: kernels declared without numba, made by numba's `njit` when one first runs.

Each check runs in a new process: in the test process some other test has
already made the kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys

DECLARED = """
import sys
from pipebench import experiment  # the objectives, optimizers, timeline, memory
from pipebench.engine import replay
from pipebench.hashrng import uniform01
from pipebench.jit import Kernel
from pipebench.timeline import simulate
from pipebench.timeline.interpret import interpreted

print(type(simulate._simulate).__name__, type(replay._replay_trace).__name__)
python = [interpreted(uniform01)(3, 1, 4, b) for b in range(100)]  # its callees' Python too
print(uniform01.signatures, "numba" in sys.modules)
print(python == [uniform01(3, 1, 4, b) for b in range(100)], "numba" in sys.modules)
"""


def test_importing_the_kernel_modules_loads_no_numba():
    out = subprocess.run([sys.executable, "-c", DECLARED], capture_output=True, text=True)
    assert out.stdout.splitlines() == ["Kernel Kernel", "[] False", "True True"], out.stderr[-2000:]


MADE = """
import sys
import numba
from pipebench import hashrng
from pipebench.jit import Kernel, njit
from pipebench.timeline import simulate

declared = simulate.jitter_factor
assert "numba" in sys.modules and isinstance(declared, Kernel)  # numba imported, none made
python = [declared.py_func(0.25, s, 0, 3, m) for s in range(4) for m in range(50)]
compiled = [declared(0.25, s, 0, 3, m) for s in range(4) for m in range(50)]  # makes them all
made = simulate.jitter_factor
print(python == compiled, type(made).__name__, getattr(made, "py_func", made) is declared.py_func)
# the callee `jitter_factor` compiled against, imported with `from ... import`: numba's
print(simulate.uniform01 is hashrng.uniform01, type(hashrng.uniform01).__name__)
print(len(declared.signatures), declared(0.0, 1, 0, 1, 1))  # the old name: numba's

@njit(cache=False)
def twice(x):
    return 2 * x

print(type(twice).__name__, twice(21))
"""


def run_made(**env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"} | env
    out = subprocess.run([sys.executable, "-c", MADE], capture_output=True, text=True, env=environ)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.splitlines()


def test_a_kernel_made_on_first_call_gives_its_python_s_numbers_and_callers_resolve_it():
    assert run_made() == [
        "True CPUDispatcher True",  # numba's kernel of the same function: same cache file
        "True CPUDispatcher",
        "1 1.0",
        "CPUDispatcher 42",  # declared after: numba's from the start
    ]


def test_numba_disable_jit_runs_the_plain_functions_as_numba_s_njit_does():
    assert run_made(NUMBA_DISABLE_JIT="1") == [
        "True function True",
        "True function",
        "0 1.0",
        "function 42",
    ]


PROTOCOLS = """
import copy, sys
from pipebench.hashrng import mix32
twin = copy.copy(mix32)
print(twin.py_func is mix32.py_func, hasattr(mix32, "__setstate__"), "numba" in sys.modules)
"""


def test_python_s_protocols_make_no_kernel():
    out = subprocess.run([sys.executable, "-c", PROTOCOLS], capture_output=True, text=True)
    assert out.stdout.split() == ["True", "False", "False"], out.stderr[-2000:]
