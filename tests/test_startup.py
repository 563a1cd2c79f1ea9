"""Start-up: the quick commands load only what they need (modules, not timings)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipebench.cli import app, console, main
from pipebench.engine.compiling import cold_families

ROOT = Path(__file__).parent.parent
PROBE = """
import sys
from pipebench.cli import main
sys.argv = ["pipebench", *sys.argv[1:]]
try:
    main()
finally:
    print("LOADED=" + ",".join(m for m in {watched!r} if m in sys.modules))
"""
# numba.np.arraymath and scipy.linalg: both loaded by numba's first dispatch
HEAVY = (
    "numba",
    "pandas",
    "matplotlib",
    "numpy",
    "pydantic",
    "yaml",
    "rich",
    "numba.np.arraymath",
    "scipy.linalg",
)


def loaded(*args: str, watched: tuple[str, ...] = HEAVY) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(watched=watched), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("LOADED=")][-1]
    return set(filter(None, line.removeprefix("LOADED=").split(",")))


def test_importing_the_cli_loads_neither_numba_nor_pandas():
    code = "import sys, pipebench.cli; print(sorted({'numba', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list"], ["schedule", "--help"], ["validate", "--help"], ["list", "--help"]],
)
def test_help_and_list_load_no_heavy_module(args):
    # No pydantic: typer coerces a flag left at None through it (cli._PlainFlags); no
    # rich: the help and the listing are plain text; no NumPy: the schedules' modules
    # load it where they build rules, programs and traces.
    assert loaded(*args) == set()


def test_the_command_list_shows_each_first_paragraph_whole(capsys):
    import typer

    assert main(["--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    for command in typer.main.get_command(app).commands.values():
        first = " ".join(command.help.split("\n\n")[0].split())
        assert f"{command.name} {first}" in shown


def test_validate_does_not_load_pandas(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nobjective: {kind: quadratic, examples: 20, dim: 8, batch_size: 2}\n"
        "pipeline: {stages: 2}\nbudget: {microbatches: 4}\noptimizer: {name: sgd, lr: 0.01}\n"
        "schedules: [pd]\n"
    )
    assert "pandas" not in loaded("validate", str(scenario))


def test_validate_of_a_time_budget_calls_no_compiled_kernel(tmp_path):
    # Each schedule's first update is timed by the kernels' Python (timeline/interpret.py):
    # numba's first dispatch in a process initialises its CPU target, about a second; and
    # the kernels are declared without numba until one runs (pipebench/jit.py).
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nobjective: {kind: quadratic, examples: 20, dim: 8, batch_size: 2}\n"
        "pipeline: {stages: 4, costs: {forward: 1, backward: 2, jitter: 0.1}}\n"
        "budget: {time: 50}\noptimizer: {name: sgd, lr: 0.01}\n"
        "schedules: [pd, rpd, gpipe, localsgd, zb-h1, zbv]\n"
    )
    assert not {"numba", "scipy.linalg"} & loaded("validate", str(scenario))


def test_validate_of_a_quadratic_loads_no_layered_model_nor_hardware_costs():
    # The objective's builder is imported by kind (objectives.build_objective); the memory
    # profile (experiment.chunk_bytes) and a model's costs (scenario.hardware.build_machine)
    # where they are used.
    quickstart = str(ROOT / "benchmarks" / "scenarios" / "quickstart.yaml")
    watched = (
        "pipebench.objectives.mlp",
        "pipebench.objectives.layered",
        "pipebench.objectives.charlm",
        "pipebench.hardware.costs",
        "pipebench.hardware.profile",
        "pipebench.timeline.memory",
        "pipebench.engine.blas",  # nothing built: no BLAS threads to pin (experiment._made)
        "pipebench.objectives.quadratic",  # sketched, not built (objectives.sketch)
        "pipebench.objectives.sketch",  # loaded: the probe sees what validate loads
    )
    assert loaded("validate", quickstart, watched=watched) == {"pipebench.objectives.sketch"}


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["objective.kind=logistic", "objective.variant=synthetic"],
        ["pipeline.costs.forward=[1,2,1,1,1,1,1,3]", "pipeline.costs.comm=0.5"],
        ["pipeline.costs.straggler={stage: 2, factor: 1.5}", "optimizer.lr=1e-3..1e-1:4"],
    ],
)
def test_validate_of_drawn_data_on_rules_loads_no_numpy(sets):
    # The cost model holds tuples, the rules' caps too; a drawn objective is sketched from
    # its spec; an lr range 'a..b:n' is the one spelling that loads NumPy (geomspace). A
    # budget that a first update may outlast loads it too: the simulation makes arrays.
    quickstart = str(ROOT / "benchmarks" / "scenarios" / "quickstart.yaml")
    args = [x for s in sets for x in ("--set", s)]
    expected = {"pydantic", "yaml"} | ({"numpy"} if "optimizer.lr=1e-3..1e-1:4" in sets else set())
    assert loaded("validate", quickstart, *args) == expected


def test_validate_of_a_budget_past_every_first_update_simulates_nothing():
    # The quickstart's 3000 outlasts each first update's whole run (budget.updates_by):
    # no timeline is simulated, not even by the kernels' Python.
    quickstart = str(ROOT / "benchmarks" / "scenarios" / "quickstart.yaml")
    watched = (
        "pipebench.timeline.simulate",
        "pipebench.timeline.interpret",
        "pipebench.timeline.budget",  # checked: the probe sees what validate loads
    )
    assert loaded("validate", quickstart, watched=watched) == {"pipebench.timeline.budget"}


def test_the_program_returns_main_s_status_and_skips_the_exit_collections(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["pipebench", "validate", str(ROOT / "no.yaml")])
    try:
        assert console() == 2  # main's status, for sys.exit
        assert gc.get_freeze_count() > 0  # the interpreter's exit does not scan them
    finally:
        gc.unfreeze()
    assert capsys.readouterr().err.count("\n") == 1


def test_the_program_and_main_print_the_same(tmp_path):
    # `python -m pipebench` and the installed `pipebench` run `console`
    quickstart = str(ROOT / "benchmarks" / "scenarios" / "quickstart.yaml")
    for args in (["validate", quickstart], ["list"], ["validate", str(tmp_path / "no.yaml")]):
        program = [sys.executable, "-m", "pipebench", *args]
        direct = [sys.executable, "-c", f"import sys, pipebench.cli as c; sys.exit(c.main({args}))"]
        outputs = [subprocess.run(c, capture_output=True, text=True) for c in (program, direct)]
        assert len({(o.returncode, o.stdout, o.stderr) for o in outputs}) == 1, args


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "markdown"])
def test_compare_loads_neither_pandas_nor_numpy(fmt):
    # Summaries are read with the csv module and judged in plain Python (compare.py);
    # typer coerces paths and text without pydantic (cli._PlainValue); rich draws tables.
    base = str(ROOT / "benchmarks" / "baselines" / "quickstart")
    for args in ([base], [base, base, "--fail-on", "final_loss:5%", "--changes-only"]):
        found = loaded("compare", *args, "--format", fmt)
        assert found == ({"rich"} if fmt == "table" else set()), args


def test_a_bad_summary_is_refused_without_pandas(tmp_path):
    (tmp_path / "summary.csv").write_text("schedule,label\n")
    assert loaded("compare", str(tmp_path)) == set()


NOTICE = """
from pipebench.engine.compiling import compile_notice
print(compile_notice("quadratic"))
print(compile_notice("charlm"))
"""


def test_an_empty_numba_cache_is_announced_per_kernel_family(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run(
        [sys.executable, "-c", NOTICE], capture_output=True, text=True, check=True, env=env
    )
    block_linear, charlm = out.stdout.splitlines()
    assert block_linear.startswith("compiling the timeline and block-linear kernels (first run")
    assert charlm.startswith("compiling the timeline and charlm kernels (first run")
    assert list(tmp_path.rglob("*.nb[ic]")) == []  # looking compiled nothing


def test_no_notice_once_the_kernels_are_cached(tmp_path, capsys):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nobjective: {kind: quadratic, examples: 20, dim: 8, batch_size: 2}\n"
        "pipeline: {stages: 2}\nbudget: {microbatches: 4}\noptimizer: {name: sgd, lr: 0.01}\n"
        "schedules: [pd, rpd]\n"
    )
    assert main(["run", str(scenario), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    assert cold_families("quadratic") == []
    assert capsys.readouterr().err.count("compiling") <= 1  # said before the run, if at all
