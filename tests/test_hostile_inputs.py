"""Hostile input never reaches a traceback: one line on stderr, exit 2, nothing written.

Each case builds its input in a fresh folder, runs the command line in
process with `--out` inside that folder, and checks the contract of the
README: exit status 2, exactly one line on stderr naming what is wrong, no
traceback, nothing on stdout, and the folder byte for byte as it was. Sizes
are chosen far beyond any machine (terabytes and more), so whether a case is
refused does not depend on the memory free when the test runs; no case
trains anything.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from test_scenario import BASE

from pipebench import experiment, limits
from pipebench.cli import main
from pipebench.tables import CURVE_COLUMNS, DELAY_COLUMNS, SUMMARY_COLUMNS, TIMELINE_COLUMNS
from pipebench.timeline import CostModel, RpdPlan, build_timeline, setup_schedule
from pipebench.timeline.budget import (
    _first_update_microbatches,
    first_update_time,
    planned_microbatches,
    run_bound,
    updates_by,
)

TB = 10**12


def scenario(tmp: Path, text: str = BASE, name: str = "s.yaml") -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def edited(old: str, new: str) -> Callable[[Path], str]:
    """A scenario: BASE with `old` replaced by `new` (which must be there)."""
    assert old in BASE, old

    def write(tmp: Path) -> str:
        return scenario(tmp, BASE.replace(old, new, 1))

    return write


def run(make: Callable[[Path], str], *args: str) -> Callable[[Path], list[str]]:
    """`pipebench run SCENARIO --out OUT -q ARGS`, OUT inside the case's folder."""
    return lambda tmp: ["run", make(tmp), "--out", str(tmp / "out"), "-q", *args]


def validate(make: Callable[[Path], str], *args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["validate", make(tmp), *args]


def sets(*overrides: str) -> Callable[[Path], list[str]]:
    """`pipebench run BASE --set ...` for each override."""
    args = [a for o in overrides for a in ("--set", o)]
    return run(scenario, *args)


def raw_file(content: bytes, name: str = "s.yaml") -> Callable[[Path], str]:
    def write(tmp: Path) -> str:
        (tmp / name).write_bytes(content)
        return str(tmp / name)

    return write


def alias_bomb(levels: int = 9) -> bytes:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


def fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "pipe.yaml")
    return str(tmp / "pipe.yaml")


def csv_objective(rows: str, kind: str = "quadratic", **extra: str) -> Callable[[Path], str]:
    """BASE on a CSV file with `rows` (header first), target column y."""

    def write(tmp: Path) -> str:
        (tmp / "data.csv").write_text(rows)
        fields = ", ".join(f"{k}: {v}" for k, v in extra.items())
        objective = f"{{kind: {kind}, variant: csv, path: data.csv, target: y, batch_size: 2"
        objective += f", {fields}}}" if fields else "}"
        text = BASE.replace("{kind: quadratic, examples: 40, dim: 8, batch_size: 4}", objective)
        return scenario(tmp, text)

    return write


def corpus(content: bytes | None, path: str = "corpus.txt") -> Callable[[Path], str]:
    def write(tmp: Path) -> str:
        if content is not None:
            (tmp / path).write_bytes(content)
        objective = f"{{kind: charlm, corpus: {path}}}"
        text = BASE.replace("{kind: quadratic, examples: 40, dim: 8, batch_size: 4}", objective)
        return scenario(tmp, text)

    return write


def _csv_row(columns: list[str], values: dict[str, str]) -> str:
    defaults = {"scenario": "tiny", "schedule": "pd", "label": "pd", "seed": "0", "kind": "F"}
    defaults |= {
        "selected": "True",
        "diverged": "False",
        "scenario_hash": "abc",
        "optimizer": "sgd",
    }
    return ",".join(values.get(c, defaults.get(c, "1")) for c in columns)


def summary(values: dict[str, str] | None = None, drop: str = "") -> str:
    columns = [c for c in SUMMARY_COLUMNS if c != drop]
    return ",".join(columns) + "\n" + _csv_row(columns, values or {}) + "\n"


def summary_file(text: str | bytes) -> Callable[[Path], str]:
    def write(tmp: Path) -> str:
        path = tmp / "summary.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)

    return write


def compare(*files: Callable[[Path], str]) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        paths = []
        for i, make in enumerate(files):
            folder = tmp / f"r{i}"
            folder.mkdir()
            paths.append(make(folder))
        return ["compare", *paths]

    return argv


def results_folder(drop_curve_column: str) -> Callable[[Path], list[str]]:
    """`pipebench plot` on a results folder whose curves.csv lacks a column."""

    def argv(tmp: Path) -> list[str]:
        folder = tmp / "results"
        folder.mkdir()
        (folder / "summary.csv").write_text(summary())
        for name, columns in (
            ("curves.csv", [c for c in CURVE_COLUMNS if c != drop_curve_column]),
            ("delays.csv", DELAY_COLUMNS),
            ("timeline.csv", TIMELINE_COLUMNS),
        ):
            (folder / name).write_text(",".join(columns) + "\n" + _csv_row(columns, {}) + "\n")
        return ["plot", str(folder)]

    return argv


MLP = "{kind: mlp, width: 10000000}"
QUAD = "{kind: quadratic, examples: 40, dim: 8, batch_size: 4}"

# (id, argv builder, words the error line must contain)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # ---- hostile YAML and files that are not scenarios
    ("yaml-alias-bomb", validate(raw_file(alias_bomb())), "aliases expand to more than"),
    ("yaml-recursive-alias", validate(raw_file(b"a: &s {k: *s}\n")), "recursive alias"),
    ("yaml-deep-nesting", validate(raw_file(b"[" * 5000 + b"]" * 5000)), "nested deeper than"),
    ("yaml-deep-mapping", validate(raw_file(b"{a: " * 3000 + b"1" + b"}" * 3000)), "nested"),
    ("yaml-binary", validate(raw_file(b"name: x\n\x00\x01\x02\xff")), "not a text file"),
    ("yaml-invalid-utf8", validate(raw_file(b"name: \xff\xfe tiny\n")), "is not UTF-8"),
    ("yaml-control-char", validate(raw_file(b"name: a\x01b\n")), "s.yaml:1: (yaml): not valid"),
    ("yaml-dev-urandom", validate(lambda tmp: "/dev/urandom"), "not a regular file"),
    ("yaml-fifo", validate(fifo), "not a regular file"),
    ("yaml-too-large", validate(raw_file(b"# padding\n" * 300_000)), "at most 1024 KiB"),
    ("yaml-directory", validate(lambda tmp: str(tmp)), "is a folder"),
    ("yaml-missing-file", run(lambda tmp: str(tmp / "nope.yaml")), "no such file"),
    ("yaml-empty-file", run(raw_file(b"")), "(top level): a scenario is a mapping"),
    ("yaml-a-list", run(raw_file(b"- pd\n- 2bw\n")), "a scenario is a mapping"),
    ("yaml-tabs", run(raw_file(b"name: x\npipeline:\n\tstages: 2\n")), "s.yaml:3: (yaml)"),
    ("yaml-duplicate-key", run(edited("name: tiny\n", "name: tiny\nname: two\n")), "duplicate"),
    ("yaml-syntax", run(edited("batch_size: 4}", "batch_size: 4")), "not valid YAML"),
    ("yaml-huge-integer", run(edited("dim: 8", "dim: " + "9" * 5000)), "5000 digits"),
    ("yaml-tagged-huge-integer", run(edited("dim: 8", 'dim: !!int "' + "9" * 5000 + '"')), "5000 digits"),
    ("yaml-python-tag", run(edited("dim: 8", "dim: !!python/object:os.system {}")), "not valid YAML"),
    # ---- odd --set paths and values
    ("set-unicode-digit", sets("schedules.²=pd"), "no item ² in a list of 2"),
    ("set-empty-key", sets("=3"), "--set: expected key.path=value"),
    ("set-empty-part", sets("pipeline..stages=3"), "empty part in the key path"),
    ("set-trailing-dot", sets("pipeline.stages.=3"), "empty part in the key path"),
    ("set-no-equals", sets("pipeline.stages"), "--set: expected key.path=value"),
    ("set-index-out-of-range", sets("schedules.9.name=pd"), "no item 9 in a list of 2"),
    ("set-negative-index", sets("schedules.-1.name=pd"), "no item -1 in a list of 2"),
    ("set-into-a-value", sets("pipeline.stages.x=1"), "pipeline.stages is a value"),
    ("set-deep-value", sets("name=" + "[" * 100 + "]" * 100), "nested deeper than"),
    ("set-500-digits", sets("objective.dim=" + "7" * 500), "a number of 500 digits"),
    ("set-1e400", sets("objective.dim=1e400"), "objective.dim (from --set): Input should be"),
    # ---- sizes validation lets through and memory does not (all well over 1 TB)
    ("size-quadratic-dim", sets(f"objective.dim={TB}"), "objective.dim (from --set)"),
    ("size-mlp-width", sets(f"objective={MLP}"), "objective.width (from --set)"),
    ("size-charlm-width", sets("objective={kind: charlm, width: 1000000}"), "objective.width"),
    ("size-seeds", run(scenario, "--seeds", str(TB)), "--seeds: the results of"),
    (
        "size-gpipe-accumulate",
        sets("budget={time: 100}", "schedules.0={name: gpipe, accumulate: 10000000000000}"),
        "schedules.0.accumulate (from --set): the operations of a trace",
    ),
    (
        "size-localsgd-replicas",
        sets("objective={kind: mlp, width: 10000}", "schedules.0={name: localsgd, replicas: 30000}"),
        "schedules.0.replicas (from --set)",
    ),
    (
        "size-rpd-delta",
        sets("objective={kind: mlp, width: 10000}", "budget={updates: 100000000}",
             "schedules.0={name: rpd, delta: 1000000000000}"),
        "schedules.0.delta (from --set)",
    ),
    ("size-time-budget", sets(f"budget={{time: {10 * TB}}}"), "budget.time (from --set)"),
    ("size-lr-grid", sets("optimizer.lr=1e-4..1e-1:100000000"), "stands for 100000000 values"),
    ("size-lr-powers", sets("optimizer.lr=2^-100000..2^-1"), "at most 1000"),
    ("size-record-points", sets("record.points=1000000", "seeds=[0,1,2,3,4,5,6,7,8,9]",
                                "optimizer.lr=1e-3..1e-1:100"), "record.points"),
    (
        "size-sweep-values",
        lambda tmp: ["sweep", scenario(tmp), "--out", str(tmp / "sw"), "-q",
                     "--grid", "objective.l2=1e-9..1e-1:2000"],
        "stands for 2000 values; at most 1000",
    ),
    (
        "size-sweep-product",
        lambda tmp: ["sweep", scenario(tmp), "--out", str(tmp / "sw"), "-q",
                     "--grid", "objective.l2=1e-9..1e-1:1000", "--grid", "objective.grad_noise=1e-9..1e-1:1000"],
        "1000 x 1000 = 1000000 cells; at most 10000",
    ),
    # ---- degenerate budgets and costs
    (
        "budget-before-first-update",
        sets("budget={time: 4}", "pipeline.stages=4", "schedules.1.accumulate=4"),
        "budget.time (from --set): 4 ends before 2bw makes its first update (at 11 with",
    ),
    ("budget-no-operation", sets("budget={time: 0.5}"), "0.5 ends before 2bw makes its first update (at 5 with these costs); give a time of at least 5"),
    (
        "costs-overflow",
        lambda tmp: ["schedule", "pd", "-S", "4", "-M", "8", "--forward", "1e308",
                     "--backward", "1e308", "--comm", "1e308"],
        "the simulated clock would overflow",
    ),
    (
        "costs-beyond-clock",
        lambda tmp: ["schedule", "pd", "-S", "4", "-M", "8", "--forward", "1e-300"],
        "too long to time operations of 1e-300",
    ),
    ("costs-overflow-scenario", sets("pipeline.costs.backward=1e307", "budget={microbatches: 100}"),
     "pipeline.costs.backward (from --set): the simulated clock would overflow"),
    # ---- data files
    ("csv-inf", run(csv_objective("a,b,y\n1,2,3\ninf,1,2\n3,4,5\n")), "'a' of data.csv holds inf"),
    ("csv-nan", run(csv_objective("a,b,y\n1,2,3\nnan,1,2\n3,4,5\n")), "missing values (the first on line 3)"),
    ("csv-empty", run(csv_objective("")), "cannot read"),
    ("csv-header-only", run(csv_objective("a,b,y\n")), "at least one row"),
    ("csv-text-cell", run(csv_objective("a,b,y\n1,x,3\n2,1,2\n")), "(line 2: 'x')"),
    ("csv-no-target", run(csv_objective("a,b,z\n1,2,3\n2,1,2\n")), "objective.target: no column"),
    ("csv-huge-values", run(csv_objective("a,b,y\n1e308,2,3\n-1e308,1,2\n3,4,5\n")), "too large"),
    ("csv-logistic-inf", run(csv_objective("a,y\n1,0\n-inf,1\n2,1\n", "logistic")), "holds -inf"),
    ("corpus-not-utf8", run(corpus(b"ab\xff\xfe" * 100)), "s.yaml:3: objective.corpus: "),
    ("corpus-device", run(corpus(None, "/dev/urandom")), "objective.corpus: '/dev/urandom' is not a regular"),
    ("corpus-missing", run(corpus(None, "nope.txt")), "objective.corpus: cannot read"),
    # ---- tables read back
    ("compare-abc", compare(summary_file(summary({"final_loss": "abc"}))), "holds 'abc' on line 2"),
    ("compare-nan", compare(summary_file(summary({"final_loss": "nan"}))), "holds 'nan' on line 2"),
    ("compare-1e400", compare(summary_file(summary({"final_loss": "1e400"}))), "holds '1e400'"),
    ("compare-bad-seed", compare(summary_file(summary({"seed": "1.5"}))), "column seed holds"),
    ("compare-bad-flag", compare(summary_file(summary({"diverged": "maybe"}))), "true, false"),
    ("compare-missing-column", compare(summary_file(summary(drop="final_loss"))), "no column final_loss"),
    ("compare-empty", compare(summary_file("")), "is not a pipebench table"),
    ("compare-binary", compare(summary_file(bytes(range(256)) * 8)), "is not a pipebench table"),
    (
        "compare-bad-candidate",
        compare(summary_file(summary()), summary_file(summary({"lr": "1e999"}))),
        "CANDIDATE:",
    ),
    ("plot-curves-missing-column", results_folder("loss"), "curves.csv' is not a pipebench table: no column loss"),
    # ---- wrong types, ranges, names
    ("type-stages-text", run(edited("stages: 2", "stages: two")), "pipeline.stages: Input should be"),
    ("negative-examples", run(edited("examples: 40", "examples: -5")), "objective.examples"),
    ("zero-batch", run(edited("batch_size: 4", "batch_size: 0")), "objective.batch_size"),
    ("unknown-key", run(edited("record:", "recrod:")), "did you mean 'record'?"),
    ("unknown-schedule", run(edited("  - pd", "  - pipedream")), "unknown schedule 'pipedream'"),
    ("option-of-another-schedule", sets("schedules.0.replicas=2"), "does not apply to pd"),
    ("optimizer-parameter", sets("optimizer.beta1=0.9"), "does not apply to sgd"),
    ("optimizer-momentum-range", sets("optimizer={name: sgd, lr: 0.1, momentum: 1.5}"), "momentum"),
    ("lr-grid-backwards", sets("optimizer.lr=2^-3..2^-9"), "expected a number, a comma list"),
    ("lr-repeats", sets("optimizer.lr=[0.1, 0.1]"), "learning rates repeat"),
    ("lr-overflow", sets("optimizer.lr=10^400"), "optimizer.lr"),
    ("sweep-section-seed", run(edited("record:", "sweep: {seed: [1, 2]}\nrecord:")), "cannot be swept"),
    ("bad-format", run(scenario, "--format", "xls"), "--format: one of"),
    ("zero-seeds", run(scenario, "--seeds", "0"), "--seeds: must be >= 1"),
    ("zero-workers", run(scenario, "--workers", "0"), "--workers: must be >= 1"),
    ("seeds-500-digits", run(scenario, "--seeds", "9" * 500), "--seeds"),
    ("2bw-group-too-small", sets("schedules.1.accumulate=1"), "2bw needs accumulate >= stages"),
    ("rpd-bad-delays", sets("schedules.0={name: rpd, delays: sometimes}"), "schedules.0.delays"),
    ("rpd-negative-delta", sets("schedules.0={name: rpd, delta: -1}"), "schedules.0.delta"),
    ("schedule-unknown", lambda tmp: ["schedule", "pipedream", "-S", "4", "-M", "8"], "unknown schedule"),
    ("schedule-zero-stages", lambda tmp: ["schedule", "pd", "-S", "0", "-M", "8"], "--stages: must be in"),
    ("schedule-straggler", lambda tmp: ["schedule", "pd", "-S", "4", "-M", "8", "--straggler", "9:2"], "--straggler"),
    ("schedule-costs-text", lambda tmp: ["schedule", "pd", "-S", "2", "-M", "8", "--forward", "1,x"], "--forward"),
    ("compare-three", compare(*[summary_file(summary())] * 3), "one results folder, or two"),
    ("sweep-grid-seed", lambda tmp: ["sweep", scenario(tmp), "--out", str(tmp / "sw"), "--grid", "seed=1,2"], "cannot be swept"),
    ("sweep-grid-no-equals", lambda tmp: ["sweep", scenario(tmp), "--out", str(tmp / "sw"), "--grid", "pipeline.stages"], "--grid: expected key.path=values"),
    ("sweep-bad-cell", lambda tmp: ["sweep", scenario(tmp), "--out", str(tmp / "sw"), "--grid", "pipeline.stages=1,4"], "(in the cell pipeline.stages=4)"),
]  # fmt: skip


def snapshot(root: Path) -> dict[str, object]:
    """Every path under `root` with its bytes (files), or its kind (folders, pipes)."""
    tree: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            key = str(path.relative_to(root))
            tree[key] = path.read_bytes() if stat.S_ISREG(mode) else stat.S_IFMT(mode)
    return tree


@pytest.mark.parametrize("build,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path, capsys, monkeypatch, build, words
):
    monkeypatch.chdir(tmp_path)  # the default results/ folder would land here too
    argv = build(tmp_path)
    before = snapshot(tmp_path)
    code = main(argv)
    stdout, stderr = capsys.readouterr()
    assert code == 2, stderr
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert "Traceback" not in stderr
    assert words in stderr, stderr
    assert not re.search(r"\d{20}", stderr), "a number of many digits is printed whole"
    assert snapshot(tmp_path) == before


def test_there_are_enough_cases():
    assert len(CASES) >= 45
    assert len({c[0] for c in CASES}) == len(CASES)


# ---- the figures the refusals state


@pytest.mark.parametrize("stages", [1, 3, 5])
@pytest.mark.parametrize(
    "name,options",
    [("gpipe", {"accumulate": 3}), ("1f1b-flush", {}), ("naive", {}), ("pd", {}), ("rpd", {}),
     ("2bw", {"accumulate": 6}), ("paci", {"accumulate": 3}), ("localsgd", {"local_steps": 2})],
)  # fmt: skip
def test_the_minimum_time_budget_is_the_first_update_of_a_long_run(stages, name, options):
    costs = CostModel.build(
        stages, forward=[1 + 0.3 * s for s in range(stages)], backward=2.1, comm=0.4,
        update=0.2, allreduce=0.7, jitter=0.3, seed=3,
    )  # fmt: skip
    setup = setup_schedule(name, costs.stages, options)
    m = planned_microbatches(setup, costs, "time", 300.0)
    long_run = build_timeline(name, costs, m, **options)
    first = long_run.time[0] if isinstance(long_run, RpdPlan) else long_run.upd_time[0]
    assert first_update_time(setup, costs) == first
    # a budget the first update's whole run fits in needs no simulation; one below does
    m = _first_update_microbatches(setup, costs)
    bound = run_bound(costs, m, setup.recompute)
    assert first <= bound and updates_by(setup, costs, bound)
    assert not updates_by(setup, costs, math.nextafter(bound, 0.0))


def test_a_program_is_always_simulated_for_its_first_update():
    costs = CostModel.build(4, forward=1.0, backward=2.0)
    setup = setup_schedule("zbv", 4, {})
    assert not updates_by(setup, costs, 1e300)


def test_validate_accepts_the_minimum_it_states(tmp_path, capsys):
    path = scenario(tmp_path)
    short = ["--set", "budget={time: 2.5}", "--set", "pipeline.costs.comm=0.25"]
    assert main(["validate", path, *short]) == 2
    minimum = re.search(r"at least ([0-9.]+)$", capsys.readouterr().err.strip()).group(1)
    enough = ["--set", f"budget={{time: {minimum}}}", "--set", "pipeline.costs.comm=0.25"]
    assert main(["validate", path, *enough]) == 0
    # 2bw (accumulate 2) steps last: on stage 1, F0 at 1.25 (after F0 of stage 0 and the
    # link), B0, F1, B1, so its step ends at 1.25 + 4 (pd's, after B0, at 3.25)
    assert minimum == "5.25"


def test_memory_is_compared_with_what_is_available(tmp_path, capsys, monkeypatch):
    path = scenario(tmp_path)
    monkeypatch.setattr(experiment, "available_memory", lambda: 10**4)
    assert main(["validate", path]) == 2
    err = capsys.readouterr().err
    assert "this machine has 9.77 KiB of memory available" in err, err
    monkeypatch.setattr(experiment, "available_memory", lambda: None)  # unknown: no check
    assert main(["validate", path]) == 0


def test_the_output_limit_counts_runs_times_points(tmp_path, capsys):
    # 2 seeds x 2 schedules: the points that make the tables just fit, then just not
    path = scenario(tmp_path)
    row = limits.CURVE_ROW_BYTES + limits.row_text_bytes("tiny", ["pd", "2bw"])
    points = limits.MAX_OUTPUT_BYTES // (4 * row)
    assert main(["validate", path, "--set", f"record.points={points - 10}"]) == 0
    assert main(["validate", path, "--set", f"record.points={points + 10}"]) == 2
    assert "record.points (from --set): 4 runs x" in capsys.readouterr().err
