"""`pipebench sweep`: cells are ordinary runs; executors agree; the cache resumes and heals."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import PACKAGE_HOME

from pipebench.cli import main
from pipebench.report.sweep_plot import final_points
from pipebench.tables import CURVE_COLUMNS, SUMMARY_COLUMNS

# 6 cells of well under a second each; every cell has 3 schedules x 2 seeds x 2 lrs.
SCENARIO = """\
name: sweep-test
seeds: [0, 1]
objective: {kind: quadratic, variant: random, examples: 64, dim: 16, batch_size: 4}
pipeline:
  stages: 4
  costs: {forward: 1, backward: 1}
budget: {time: 60000}
record: {points: 20}
optimizer: {name: sgd, lr: [0.02, 0.05]}
target_loss: 1.0e-2
schedules: [gpipe, pd, {name: localsgd, local_steps: 2, label: "local, \\"H\\"=2"}]
sweep:
  pipeline.stages: [2, 4, 8]
"""
GRID = ["--grid", "pipeline.costs.comm=0,0.5"]
KEYS = ["pipeline.stages", "pipeline.costs.comm"]
CELLS = [(2, 0), (2, 0.5), (4, 0), (4, 0.5), (8, 0), (8, 0.5)]


def sweep(folder: Path, *args: str) -> tuple[int, str, str]:
    """`pipebench sweep` in this process; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sweep", str(folder / "s.yaml"), *GRID, "--quiet", "--no-plots", *args])
    return code, out.getvalue(), err.getvalue()


def scenario(folder: Path, text: str = SCENARIO) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s.yaml").write_text(text)
    return folder


def rows(text: str, drop: str = "wall_seconds") -> list[list[str]]:
    """A CSV's rows without the `drop` column (by default the one that measures this machine)."""
    table = list(csv.reader(io.StringIO(text)))
    if drop not in table[0]:
        return table
    i = table[0].index(drop)
    return [row[:i] + row[i + 1 :] for row in table]


def meta(out: Path) -> dict:
    return json.loads((out / "meta.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The sweep computed once with the local executor on 2 processes."""
    folder = scenario(tmp_path_factory.mktemp("reference"))
    code, stdout, err = sweep(folder, "--out", str(folder / "out"), "--workers", "2")
    assert code == 0 and err == "", err
    assert "6 of 6 cells (0 from the cache, 6 computed)" in stdout
    return folder / "out"


# ---------------------------------------------------------------- the combined tables


def test_combined_tables_have_a_column_per_key_and_every_cell(reference):
    summary = pd.read_csv(reference / "summary.csv")
    assert list(summary.columns) == KEYS + SUMMARY_COLUMNS
    assert list(pd.read_csv(reference / "curves.csv").columns) == KEYS + CURVE_COLUMNS
    cells = list(dict.fromkeys(zip(summary[KEYS[0]], summary[KEYS[1]], strict=True)))
    assert cells == CELLS  # grid order, the last key varying fastest
    assert (summary["stages"] == summary["pipeline.stages"]).all()
    per_cell = summary.groupby(KEYS).size()
    assert (per_cell == 3 * (2 * 2 + 2)).all()  # per schedule: 2 seeds x 2 lrs + 2 aggregates
    info = meta(reference)
    assert info["cells"] == {"planned": 6, "completed": 6, "cached": 0, "computed": 6,
                             "damaged": 0}  # fmt: skip
    assert info["sweep"] == {"pipeline.stages": [2, 4, 8], "pipeline.costs.comm": [0, 0.5]}


def test_each_cell_is_an_ordinary_run_with_its_values_set(reference, tmp_path):
    """The reduction: a cell's rows are those of `pipebench run --set key=value ...`."""
    out = tmp_path / "run"
    folder = scenario(tmp_path)
    args = ["--set", "pipeline.stages=4", "--set", "pipeline.costs.comm=0.5"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", str(folder / "s.yaml"), *args, "--out", str(out), "--quiet",
                     "--no-plots"]) == 0  # fmt: skip
    cell = next(
        c for c in meta(reference)["cell_list"] if c["values"] == {KEYS[0]: 4, KEYS[1]: 0.5}
    )
    entry = reference / "cells" / cell["key"]
    for name, drop in (("summary.csv", "wall_seconds"), ("curves.csv", "scenario")):
        alone = rows((out / name).read_text(), drop)
        assert rows((entry / name).read_text(), drop) == alone
        combined = rows((reference / name).read_text(), drop)
        assert [r[2:] for r in combined if r[:2] == ["4", "0.5"]] == alone[1:]
    assert (entry / "curves.csv").read_bytes() == (out / "curves.csv").read_bytes()
    # the cell's scenario.yaml is a scenario of its own that gives the same results
    again = tmp_path / "again"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", str(entry / "scenario.yaml"), "--out", str(again), "--quiet",
                     "--no-plots"]) == 0  # fmt: skip
    assert rows((again / "summary.csv").read_text()) == rows((out / "summary.csv").read_text())


def test_rows_are_joined_byte_for_byte_with_quoted_labels(reference):
    """The label `local, "H"=2` needs CSV quoting; each combined line is its cell's line."""
    summary = (reference / "summary.csv").read_text().splitlines()
    for cell in meta(reference)["cell_list"]:
        own = (reference / "cells" / cell["key"] / "summary.csv").read_text().splitlines()
        lead = ",".join(str(v) for v in cell["values"].values()) + ","
        assert [line[len(lead) :] for line in summary if line.startswith(lead)] == own[1:]
    assert any('"local, ""H""=2"' in line for line in summary)


def test_the_plot_shows_each_schedule_at_its_selected_lr(reference, tmp_path):
    from pipebench.api import plan_sweep
    from pipebench.report.sweep_plot import draw_sweep

    summary = pd.read_csv(reference / "summary.csv")
    summary["diverged"] = summary["diverged"].astype(bool)
    points = final_points(summary, KEYS)
    assert len(points) == 6 * 3
    for (stages, comm, label), point in points.set_index([*KEYS, "label"]).iterrows():
        mine = summary[(summary[KEYS[0]] == stages) & (summary[KEYS[1]] == comm)
                       & (summary["label"] == label) & summary["seed"].notna()]  # fmt: skip
        chosen = mine[mine["selected"]]
        assert chosen["lr"].nunique() == 1 and len(chosen) == 2
        assert point["value"] == pytest.approx(chosen["final_gap"].mean(), rel=1e-12)
    plan = plan_sweep(reference / "scenario.yaml", ["pipeline.costs.comm=0,0.5"])
    written = draw_sweep(tmp_path, summary, plan.keys, "loss")
    assert [p.name for p in written] == [
        "sweep-pipeline.stages.png",
        "sweep-pipeline.costs.comm.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


def test_a_cell_where_every_seed_diverged_has_no_value(tmp_path):
    """Best over the other key ignores diverged cells; all diverged at one x is marked."""
    from pipebench.report.sweep_plot import sweep_png

    nan = float("nan")
    cells = [(2, 0.1, 0.5, False), (2, 0.2, 0.3, False), (4, 0.1, nan, True),
             (4, 0.2, 0.2, False), (8, 0.1, nan, True), (8, 0.2, nan, True)]  # fmt: skip
    rows = []
    for stages, lr, gap, diverged in cells:
        for seed in (0, 1):
            rows.append({"pipeline.stages": stages, "optimizer.lr": lr, "label": "pd",
                         "seed": seed, "lr": lr, "selected": True, "diverged": diverged,
                         "final_gap": gap + seed * 0.1, "final_loss": 1.0,
                         "scenario": "s"})  # fmt: skip
    summary = pd.DataFrame(rows)
    points = final_points(summary, ["pipeline.stages", "optimizer.lr"])
    values = points.set_index(["pipeline.stages", "optimizer.lr"])["value"]
    assert values[(2, 0.1)] == pytest.approx(0.55) and values[(4, 0.2)] == pytest.approx(0.25)
    assert values[[(4, 0.1), (8, 0.1), (8, 0.2)]].isna().all()
    sweep_png(
        points,
        "pipeline.stages",
        ["pipeline.stages", "optimizer.lr"],
        "s",
        tmp_path / "a.png",
        "loss",
    )
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------- executors


def test_a_dask_cluster_gives_the_same_tables(reference, tmp_path):
    """A LocalCluster of 2 worker processes on loopback, reached by its address."""
    distributed = pytest.importorskip("distributed")
    folder = scenario(tmp_path)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=50,
    ) as cluster:  # fmt: skip
        code, _, err = sweep(folder, "--out", str(tmp_path / "out"), "--scheduler",
                             cluster.scheduler_address)  # fmt: skip
    assert code == 0, err
    assert meta(tmp_path / "out")["executor"] == "dask"
    assert meta(tmp_path / "out")["cells"]["computed"] == 6
    for name in ("summary.csv", "curves.csv"):
        assert rows((tmp_path / "out" / name).read_text()) == rows((reference / name).read_text())
    assert (tmp_path / "out" / "curves.csv").read_bytes() == (reference / "curves.csv").read_bytes()


def test_the_dask_executor_starts_its_own_cluster(reference, tmp_path):
    """Without --scheduler: a LocalCluster of --workers processes (here for the last 2 cells)."""
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    for cell in meta(reference)["cell_list"][4:]:
        shutil.rmtree(out / "cells" / cell["key"])
    code, _, err = sweep(scenario(tmp_path), "--out", str(out), "--executor", "dask",
                         "--workers", "2")  # fmt: skip
    assert code == 0, err
    assert [c["source"] for c in meta(out)["cell_list"]] == ["cached"] * 4 + ["computed"] * 2
    for name in ("summary.csv", "curves.csv"):
        assert rows((out / name).read_text()) == rows((reference / name).read_text())


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    dask = pytest.importorskip("dask")
    folder = scenario(tmp_path)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, out, err = sweep(folder, "--out", str(tmp_path / "out"), "--scheduler",
                               "tcp://127.0.0.1:9")  # fmt: skip
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--scheduler: cannot reach 'tcp://127.0.0.1:9'" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the cache


def test_a_second_sweep_computes_nothing(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*")}
    code, stdout, _ = sweep(scenario(tmp_path), "--out", str(out), "--format", "csv")
    assert code == 0
    assert meta(out)["cells"]["cached"] == 6 and meta(out)["cells"]["computed"] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*")} == before
    assert stdout == (out / "summary.csv").read_text()
    assert rows(stdout) == rows((reference / "summary.csv").read_text())


def test_progress_off_a_terminal_is_plain_lines(reference, tmp_path):
    """stderr here is not a terminal: a note on the cache, then progress as lines."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["sweep", str(scenario(tmp_path) / "s.yaml"), *GRID, "--out", str(out)])
    lines = err.getvalue().splitlines()
    assert code == 0
    assert lines[0] == "pipebench sweep: 6 cells: 6 in the cache, 0 to compute"
    assert re.fullmatch(r"pipebench sweep: cells 6 of 6 done, \d+ s", lines[-1]), lines


@pytest.mark.parametrize("damage", ["truncate", "edit", "no manifest", "empty folder"])
def test_a_damaged_cache_entry_is_computed_again(reference, tmp_path, damage):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    scenario(tmp_path)
    key = meta(reference)["cell_list"][3]["key"]
    entry = out / "cells" / key
    if damage == "truncate":
        data = (entry / "curves.csv").read_bytes()
        (entry / "curves.csv").write_bytes(data[: len(data) // 2])
    elif damage == "edit":
        text = (entry / "summary.csv").read_text()
        (entry / "summary.csv").write_text(text.replace("gpipe", "gpipf", 1))
    elif damage == "no manifest":
        (entry / "manifest.json").unlink()
    else:
        shutil.rmtree(entry)
        entry.mkdir()
    code, _, _ = sweep(tmp_path, "--out", str(out), "--workers", "1")
    assert code == 0
    info = meta(out)
    assert info["cells"] == {"planned": 6, "completed": 6, "cached": 5, "computed": 1,
                             "damaged": 1}  # fmt: skip
    assert [c["source"] for c in info["cell_list"]] == ["cached"] * 3 + ["computed"] + [
        "cached"
    ] * 2
    for name in ("summary.csv", "curves.csv"):
        assert rows((out / name).read_text()) == rows((reference / name).read_text())


def test_ctrl_c_keeps_finished_cells_and_a_rerun_computes_only_the_rest(reference, tmp_path):
    """A real SIGINT to a sweep in a subprocess; then the same command again."""
    folder = scenario(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipebench", "sweep", str(folder / "s.yaml"), *GRID,
               "--out", str(out), "--workers", "1", "--quiet", "--no-plots"]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=PACKAGE_HOME
    )
    cells = out / "cells"
    deadline = time.monotonic() + 600  # hang guards, far above a cold start on a busy machine
    while not (cells.is_dir() and any(not p.name.startswith(".") for p in cells.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr
    first = meta(out)
    assert first["interrupted"] is True
    done = {c["key"] for c in first["cell_list"] if c["source"] == "computed"}
    assert 1 <= len(done) < 6
    assert len(pd.read_csv(out / "summary.csv")) == len(done) * 18  # the finished cells
    assert not [p for p in cells.iterdir() if p.name.startswith(".")]  # no partial entry left
    stamps = {p: p.stat().st_mtime_ns for p in cells.rglob("*")}

    rerun = subprocess.run(command, capture_output=True, timeout=300, cwd=PACKAGE_HOME)
    assert rerun.returncode == 0, rerun.stderr
    second = meta(out)
    computed = {c["key"] for c in second["cell_list"] if c["source"] == "computed"}
    cached = {c["key"] for c in second["cell_list"] if c["source"] == "cached"}
    assert cached == done and not computed & done and len(computed) == 6 - len(done)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # untouched
    for name in ("summary.csv", "curves.csv"):
        assert rows((out / name).read_text()) == rows((reference / name).read_text())


def test_cache_keys_follow_the_resolved_scenario_and_the_version(tmp_path):
    from pipebench.scenario import load_scenario
    from pipebench.sweep.cache import cell_key

    path = scenario(tmp_path) / "s.yaml"
    base = load_scenario(path, swept=(("pipeline.stages", 4),))
    same = load_scenario(path, ["pipeline.stages=4"], swept=(("pipeline.costs.forward", 1.0),))
    other = load_scenario(path, swept=(("pipeline.stages", 4), ("pipeline.costs.comm", 0.5)))
    key = cell_key(base.resolved([0, 1]), base.data_digest(), "1.0")
    assert cell_key(same.resolved([0, 1]), same.data_digest(), "1.0") == key  # a default, spelt out
    assert cell_key(other.resolved([0, 1]), other.data_digest(), "1.0") != key
    assert cell_key(base.resolved([0]), base.data_digest(), "1.0") != key
    assert cell_key(base.resolved([0, 1]), base.data_digest(), "1.1") != key


def test_partial_entries_of_dead_sweeps_are_removed(tmp_path):
    from pipebench.sweep.cache import CellCache

    cache = CellCache(tmp_path, "1.0")
    entry = {"summary.csv": "a,b\n1,2\n", "curves.csv": "c\n3\n"}  # the tables a sweep needs
    cache.store("abc", entry)
    assert cache.load("abc") == entry
    assert CellCache(tmp_path, "2.0").load("abc") is None  # another version's entry
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (tmp_path / f".partial-abc-{dead}-x").mkdir()
    (tmp_path / f".partial-abd-{os.getpid()}-y").mkdir()  # a live sweep is writing it
    assert cache.clear_partials() == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [
        f".partial-abd-{os.getpid()}-y"
    ]


# ---------------------------------------------------------------- grids and bad input


def test_grid_values_and_their_order():
    from pipebench.grid import Axis, grid_cells, merge_axes, parse_grid

    assert parse_grid("pipeline.stages=2^1..2^4").values == (2, 4, 8, 16)
    assert parse_grid("optimizer.lr=1e-3,0.01").values == (0.001, 0.01)
    assert parse_grid("optimizer.lr=1e-3..1e-1:3").values == pytest.approx((1e-3, 1e-2, 1e-1))
    assert parse_grid("optimizer.name=sgd,adamw").values == ("sgd", "adamw")
    assert parse_grid("schedules.1.recompute=true,false").values == (True, False)
    a, b, c = Axis("a", (1, 2)), Axis("b", ("x", "y", "z")), Axis("a", (5,))
    cells = grid_cells([a, b])
    assert len(cells) == 6 and cells[1] == (("a", 1), ("b", "y")) and cells[3][0] == ("a", 2)
    assert merge_axes([a, b], [c]) == [c, b]  # replaced in place
    assert merge_axes([b], [a]) == [b, a]


BAD = [
    (["--grid", "pipeline.stages"], "--grid: expected key.path=values"),
    (["--grid", "pipeline.stages=2,2"], "--grid: values repeat"),
    (["--grid", "seeds=1,2"], "--grid: seeds cannot be swept"),
    (["--grid", "pipeline.stages=0,2"], "pipeline.stages (swept): "),
    (["--grid", "pipeline.stagse=2,4"], "did you mean 'stages'"),
    (["--grid", "budget.time.x=1,2"], "--grid: budget.time.x=1: budget.time is a value"),
    (["--grid", "schedules.7.name=pd"], "--grid: schedules.7.name=pd: no item 7 in a list of 3"),
    (["--executor", "ray"], "--executor: one of local, dask, got 'ray'"),
    (["--executor", "local", "--scheduler", "tcp://x:1"], "--scheduler: a Dask scheduler"),
    (["--workers", "0"], "--workers: must be >= 1"),
    (["--format", "xml"], "--format: one of table"),
]


@pytest.mark.parametrize(("args", "expected"), BAD)
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, args, expected):
    folder = scenario(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = sweep(folder, "--out", str(out), *args)
    assert code == 2 and stdout == "" and err.count("\n") == 1, err
    assert err.startswith("pipebench sweep: ") and expected in err, err
    assert not out.exists()


def test_a_cell_that_breaks_a_rule_is_named(tmp_path):
    """2bw needs groups of at least S micro-batches: only the S = 8 cell breaks that."""
    text = SCENARIO.replace("schedules: [gpipe,", "schedules: [{name: 2bw, accumulate: 4},")
    folder = scenario(tmp_path, text)
    code, _, err = sweep(folder, "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    assert (
        "schedules.0.accumulate" in err
        and "(in the cell pipeline.stages=8, pipeline.costs.comm=0)" in err
    )
    assert not (tmp_path / "out").exists()


def test_a_bad_sweep_section_names_its_line(tmp_path, capsys):
    text = SCENARIO.replace("pipeline.stages: [2, 4, 8]", "pipeline.stages: '2^1..3^2'")
    folder = scenario(tmp_path, text)
    assert main(["validate", str(folder / "s.yaml")]) == 2
    err = capsys.readouterr().err
    assert "s.yaml:13: sweep.pipeline.stages: expected values such as" in err
    assert (
        main(
            [
                "sweep",
                str(
                    scenario(
                        tmp_path, SCENARIO.replace("sweep:\n  pipeline.stages: [2, 4, 8]\n", "")
                    )
                    / "s.yaml"
                ),
            ]
        )
        == 2
    )
    assert "--grid: nothing to sweep" in capsys.readouterr().err


def test_validate_counts_the_cells_and_run_ignores_the_sweep(tmp_path, capsys):
    from pipebench.scenario import load_scenario

    folder = scenario(tmp_path)
    assert main(["validate", str(folder / "s.yaml")]) == 0
    line = capsys.readouterr().out
    assert line.endswith("; sweep of pipeline.stages: 3 cells, 36 runs\n"), line
    plain = scenario(
        tmp_path / "plain", SCENARIO.replace("sweep:\n  pipeline.stages: [2, 4, 8]\n", "")
    )
    assert (
        load_scenario(folder / "s.yaml").content_hash()
        == load_scenario(plain / "s.yaml").content_hash()
    )


def test_progress_callbacks_count_cells(reference, tmp_path):
    """The bar starts at the cached cells and advances once per computed cell."""
    from pipebench import api
    from pipebench.report.sweep_view import cache_note

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    for cell in meta(reference)["cell_list"][:2]:
        shutil.rmtree(out / "cells" / cell["key"])
    plan = api.plan_sweep(scenario(tmp_path) / "s.yaml", ["pipeline.costs.comm=0,0.5"])
    started, done = [], []
    report = api.sweep(plan, out, "local", 1, on_start=lambda *a: started.append(a),
                       on_done=lambda: done.append(1), plots=False)  # fmt: skip
    assert started == [(6, 4, 0)] and len(done) == 2 and report.completed == 6
    assert cache_note(6, 4, 0) == "6 cells: 4 in the cache, 2 to compute"
