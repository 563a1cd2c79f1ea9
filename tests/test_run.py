"""`pipebench run`: files, formats, selection, divergence, determinism, Ctrl-C, no-JIT."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PACKAGE_HOME
from test_scenario import BASE, write

from pipebench.cli import main
from pipebench.tables import CURVE_COLUMNS, SUMMARY_COLUMNS

ROOT = Path(__file__).parent.parent
GRID = BASE.replace("lr: 0.01", "lr: [0.005, 0.02, 40.0]").replace(
    "  - pd\n", "  - pd\n  - rpd\n  - {name: localsgd, replicas: 2, local_steps: 2}\n"
)


def run(
    capsys, tmp_path: Path, text: str, *args: str, name: str = "out", plots: bool = False
) -> tuple[int, str, Path]:
    """`pipebench run` on `text`; without pictures unless `plots` (drawing takes seconds)."""
    out = tmp_path / name
    flags = [] if plots else ["--no-plots"]
    code = main(["run", str(write(tmp_path, text)), "--out", str(out), "--quiet", *flags, *args])
    stdout, stderr = capsys.readouterr()
    assert stderr == "", stderr
    return code, stdout, out


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PICTURES = ["delays.png", "gantt-2bw.png", "gantt-localsgd.png", "gantt-pd.png", "gantt-rpd.png",
            "loss_vs_time.png", "loss_vs_updates.png"]  # fmt: skip
TABLES = ["curves.csv", "delays.csv", "meta.json", "scenario.yaml", "summary.csv", "timeline.csv"]


def test_run_writes_results_and_prints_them(tmp_path, capsys):
    code, stdout, out = run(capsys, tmp_path, GRID, "--format", "csv", plots=True)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(TABLES + PICTURES)
    for name in PICTURES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    assert stdout == (out / "summary.csv").read_text()
    summary = pd.read_csv(io.StringIO(stdout))
    assert list(summary.columns) == SUMMARY_COLUMNS
    runs = summary[summary["seed"].notna()]
    assert len(runs) == 4 * 2 * 3 and len(summary) == len(runs) + 4 * 3
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns) == CURVE_COLUMNS
    assert (out / "scenario.yaml").read_text() == GRID
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seeds"] == [0, 1] and meta["runs"] == {"planned": 24, "completed": 24}
    assert meta["objective"]["f_star"] is not None and "numba" in meta


SYNCHRONOUS = BASE.replace("  - pd\n", "").replace(
    "  - {name: 2bw, accumulate: 2}\n",
    "".join(
        f"  - {{name: {name}, accumulate: 4{more}}}\n"
        for name, more in [("1f1b-flush", ""), ("zb-h1", ""), ("zb-h2", ""),
                           ("interleaved-1f1b", ", chunks: 2"), ("zbv", ""), ("dualpipev", "")]
    ),
)  # fmt: skip


def test_programs_run_end_to_end_as_minibatch_sgd(tmp_path, capsys):
    """A micro-batch budget gives every synchronous schedule of equal mini-batch the same
    steps of minibatch SGD; they differ in time and bubble. The staleness corrections
    change nothing there: every pass reads its chunk's current version (τ = 0)."""
    code, stdout, out = run(capsys, tmp_path, SYNCHRONOUS, "--format", "csv", plots=True)
    assert code == 0
    summary = pd.read_csv(io.StringIO(stdout))
    runs = summary[summary["seed"].notna()]
    assert len(runs) == 6 * 2
    for _, same in runs.groupby("seed"):
        assert np.allclose(same["final_loss"], same["final_loss"].iloc[0], rtol=1e-12, atol=0)
    flush = runs[runs["schedule"] == "1f1b-flush"]
    zero_bubble = runs[runs["schedule"] == "zb-h1"]
    assert (zero_bubble["sim_time"].to_numpy() < flush["sim_time"].to_numpy()).all()
    assert (out / "gantt-dualpipev.png").read_bytes().startswith(PNG_MAGIC)
    corrected = SYNCHRONOUS.replace(
        "{name: sgd, lr: 0.01}",
        "{name: sgd, lr: 0.01, predict: true, delay_compensation: 0.5, delay_lr: pipemare}",
    )
    code, _, again = run(capsys, tmp_path, corrected, name="corrected")
    assert code == 0
    assert (again / "curves.csv").read_bytes() == (out / "curves.csv").read_bytes()


def test_divergence_is_a_row_and_never_selected(tmp_path, capsys):
    code, stdout, _ = run(capsys, tmp_path, GRID, "--format", "csv")
    assert code == 0
    summary = pd.read_csv(io.StringIO(stdout))
    wild = summary[summary["lr"] == 40.0]
    assert wild["diverged"].all() and wild["diverged_at"].notna().all()
    assert (wild["diverged_at"] <= wild["sim_time"]).all()
    calm = summary[summary["lr"] < 1]
    assert not calm["diverged"].any() and calm["diverged_at"].isna().all()
    chosen = summary[summary["selected"] & summary["seed"].isna()]
    assert len(chosen) == 4 and (chosen["lr"] < 1).all()


@pytest.mark.parametrize(
    "select,column", [("final", "final_loss"), ("best", "best_loss"), ("auc", "auc")]
)
def test_selection_picks_the_best_mean_over_seeds(tmp_path, capsys, select, column):
    text = BASE.replace("lr: 0.01", f"lr: {{grid: [0.002, 0.01, 0.05], select: {select}}}")
    _, stdout, _ = run(capsys, tmp_path, text, "--format", "csv")
    summary = pd.read_csv(io.StringIO(stdout))
    for _, group in summary[summary["seed"].isna()].groupby("label"):
        assert group.loc[group[column].idxmin(), "selected"]
        assert group["selected"].sum() == 1


def test_same_scenario_same_bytes_whatever_the_workers(tmp_path, capsys):
    outs = [run(capsys, tmp_path, GRID, "--workers", w, name=f"o{w}")[2] for w in ("1", "2", "2")]
    curves = {(o / "curves.csv").read_bytes() for o in outs}
    assert len(curves) == 1
    tables = [pd.read_csv(o / "summary.csv").drop(columns=["wall_seconds"]) for o in outs]
    texts = {t.to_csv(index=False) for t in tables}
    assert len(texts) == 1


def test_formats(tmp_path, capsys):
    code, stdout, _ = run(capsys, tmp_path, GRID, "--format", "json")
    rows = json.loads(stdout)
    assert code == 0 and len(rows) == 36 and set(rows[0]) == set(SUMMARY_COLUMNS)
    _, stdout, _ = run(capsys, tmp_path, GRID, "--format", "markdown")
    assert "f* = " in stdout  # the caption (tests/test_frictions.py checks the rest)
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 4
    assert lines[1].startswith("|---") and all(
        line.count("|") == lines[0].count("|") for line in lines
    )
    _, stdout, _ = run(capsys, tmp_path, GRID)
    assert "localsgd" in stdout and "f* =" in stdout


def test_seeds_option_and_overrides_reach_the_results(tmp_path, capsys):
    _, stdout, out = run(
        capsys, tmp_path, BASE, "--seeds", "3", "--set", "pipeline.stages=4",
        "--set", "schedules.1.accumulate=4", "--format", "csv",
    )  # fmt: skip
    summary = pd.read_csv(io.StringIO(stdout))
    assert sorted(summary["seed"].dropna().unique()) == [0, 1, 2]
    assert (summary["stages"] == 4).all()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["overrides"] == ["pipeline.stages=4", "schedules.1.accumulate=4"]


def test_budget_and_target_columns(tmp_path, capsys):
    text = BASE.replace("{microbatches: 20}", "{time: 100}") + "target_loss: 1.0e9\n"
    _, stdout, _ = run(capsys, tmp_path, text, "--format", "csv")
    summary = pd.read_csv(io.StringIO(stdout))
    assert (summary["sim_time"] == 100).all()
    assert (summary["time_to_target"] == 0).all()  # the initial loss is below the target
    pd_row = summary[(summary["schedule"] == "pd") & (summary["seed"] == 0)].iloc[0]
    assert pd_row["updates"] == 2 * pd_row["microbatches"] or pd_row["updates"] > 0


def test_progress_off_a_terminal_is_plain_lines_and_quiet_is_silent(tmp_path, capsys):
    """stderr here is not a terminal: a line at the first timeline, maybe more, and a last one."""
    path = write(tmp_path, BASE)
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--no-plots"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("pipebench run: timelines 1 of 2, runs 0 of 4 done, ")
    assert lines[-1].startswith("pipebench run: timelines 2 of 2, runs 4 of 4 done, ")
    assert all(re.fullmatch(r"pipebench run: timelines \d of 2, runs \d of 4 done, \d+ s", line)
               for line in lines)  # fmt: skip
    code, _, _ = run(capsys, tmp_path, BASE)  # --quiet: asserts that stderr is empty
    assert code == 0


def test_plot_redraws_the_same_pictures_from_the_tables(tmp_path, capsys):
    _, _, out = run(capsys, tmp_path, GRID, plots=True)
    drawn = {name: (out / name).read_bytes() for name in PICTURES}
    for name in PICTURES:
        (out / name).unlink()
    assert main(["plot", str(out)]) == 0
    listed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in listed) == sorted(PICTURES)
    assert {name: (out / name).read_bytes() for name in PICTURES} == drawn


def test_plot_refuses_a_folder_without_results(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "summary.csv" in err


def _subprocess(args: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipebench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=PACKAGE_HOME,
        **kwargs,
    )


LONG = (  # 160 runs of about a second each: far from done when the test interrupts it
    BASE.replace("{microbatches: 20}", "{microbatches: 20000}")
    .replace("lr: 0.01", "lr: '1e-4..1e-2:40'")
    .replace("examples: 40, dim: 8, batch_size: 4", "examples: 2000, dim: 256, batch_size: 16")
)


def assert_interrupted_folder(out: Path, stderr: str) -> int:
    """The folder of an interrupted run is complete and agrees with itself; returns its runs."""
    assert sorted(p.name for p in out.iterdir()) == TABLES
    meta = json.loads((out / "meta.json").read_text())
    completed = meta["runs"]["completed"]
    assert meta["interrupted"] is True and meta["runs"]["planned"] == 160 and completed < 160
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary[summary["seed"].notna()]) == completed
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves.groupby(["label", "seed", "lr"])) == completed
    assert f"interrupted: {completed} of 160 runs finished, written to {out}" in stderr
    assert "Traceback" not in stderr
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    return completed


def test_ctrl_c_while_the_scenario_is_read_writes_an_empty_result(tmp_path, capsys, monkeypatch):
    """Ctrl-C before the first run (here: while the scenario loads) still writes a folder."""
    from pipebench import api

    load = api.load_experiment

    def load_then_ctrl_c(*args, **kwargs):
        exp = load(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # handled before this returns (the main thread)
        return exp

    monkeypatch.setattr(api, "load_experiment", load_then_ctrl_c)
    out = tmp_path / "out"
    code = main(["run", str(write(tmp_path, LONG)), "--out", str(out), "--quiet", "--no-plots"])
    _, stderr = capsys.readouterr()
    assert code == 130
    assert assert_interrupted_folder(out, stderr) == 0
    assert stderr.count("\n") == 1


def _run_until(tmp_path: Path, finished: int) -> tuple[subprocess.Popen, str]:
    """Start a long run; SIGINT once a progress line reports `finished` runs or more."""
    out = tmp_path / "out"
    args = ["run", str(write(tmp_path, LONG)), "--out", str(out), "--workers", "1", "--no-plots"]
    proc = _subprocess(args, text=True)
    seen = []
    for line in proc.stderr:  # stderr is a pipe: progress comes as lines
        seen.append(line)
        match = re.search(r"runs (\d+) of 160", line)
        if match and int(match.group(1)) >= finished:
            break
    else:
        raise AssertionError(f"no progress line with {finished} runs: {seen}")
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=600)  # a hang guard: a cold cache under load is slow
    assert proc.returncode == 130, "".join(seen) + rest
    return proc, "".join(seen) + rest


@pytest.mark.parametrize("finished", [0, 1], ids=["at-the-first-progress-line", "after-a-run"])
def test_ctrl_c_writes_the_completed_runs_and_exits_130(tmp_path, finished):
    """A real SIGINT, sent when the progress on stderr says how far the run got (no sleeping)."""
    _, stderr = _run_until(tmp_path, finished)
    assert assert_interrupted_folder(tmp_path / "out", stderr) >= finished


def test_no_jit_mode_gives_the_same_results(tmp_path):
    small = BASE.replace("  - pd\n", "  - pd\n  - rpd\n  - localsgd\n  - zbv\n").replace(
        "seeds: [0, 1]", "seed: 0"
    )
    path = write(tmp_path, small)
    outs = {}
    for flag in ("0", "1"):
        outs[flag] = tmp_path / f"jit{flag}"
        proc = _subprocess(["run", str(path), "--out", str(outs[flag]), "--quiet"],
                           env={"NUMBA_DISABLE_JIT": flag})  # fmt: skip
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
    assert (outs["0"] / "curves.csv").read_bytes() == (outs["1"] / "curves.csv").read_bytes()
