"""The command-line contract: output on stdout, one-line errors with exit 2, files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PACKAGE_HOME

from pipebench.cli import main
from pipebench.timeline import SCHEDULES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_prints_chart_and_statistics(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, err = run(capsys, "schedule", "pd", "--stages", "4", "--microbatches", "8")
    assert code == 0 and err == ""
    rows = [line for line in out.splitlines() if line.startswith("stage ")]
    assert len(rows) == 4
    # Unit model: stage 0 runs F0..F3 back to back, stage 3 starts at t = 3.
    assert rows[0].split()[2:6] == ["F0", "F1", "F2", "F3"]
    assert rows[3].split()[2:5] == ["·", "·", "·"]
    assert "22" in out  # makespan 2(M + S - 1)


def test_json_output_is_one_object_with_the_documented_keys(capsys):
    code, out, _ = run(capsys, "schedule", "1f1b-flush", "-S", "4", "-M", "8", "--json")
    assert code == 0
    record = json.loads(out)
    for key in (
        "schedule",
        "stages",
        "microbatches",
        "makespan",
        "bubble_fraction",
        "max_delay",
        "steady_max_delay",
        "steady_mean_delay",
        "stage_max_drift",
        "stage_max_staleness",
        "peak_versions",
        "peak_activations",
    ):
        assert key in record
    assert record["makespan"] == 2 * 2 * (4 + 4 - 1)  # two mini-batches of 4
    assert record["bubble_fraction"] == pytest.approx(3 / 7)
    assert all(len(record[k]) == 4 for k in ("stage_max_drift", "peak_versions"))


def test_options_reach_the_schedule(capsys):
    code, out, _ = run(
        capsys, "schedule", "paci", "-S", "6", "-M", "40", "--accumulate", "2", "--json"
    )
    assert code == 0
    drift = json.loads(out)["stage_max_drift"]
    assert drift == [(6 - s - 1 + 1) // 2 for s in range(6)]  # ceil((S - s - 1) / a)


def test_png_is_written_whole(capsys, tmp_path):
    target = tmp_path / "chart.png"
    code, _, _ = run(capsys, "schedule", "localsgd", "-S", "3", "-M", "9", "--png", str(target))
    assert code == 0
    data = target.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]  # no temporary left


def test_many_stages_are_elided_and_fit_the_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "90")
    code, out, _ = run(capsys, "schedule", "pd", "-S", "40", "-M", "100")
    assert code == 0
    chart = out.split("\n\n")[0].splitlines()
    assert sum(line.startswith("stage ") for line in chart) == 16
    assert any("24 stages not shown" in line for line in chart)
    assert max(len(line) for line in chart) <= 90
    assert any("use --png for the whole run" in line for line in chart)


def test_rpd_says_it_runs_on_the_pd_clock(capsys):
    code, out, _ = run(capsys, "schedule", "rpd", "-S", "3", "-M", "6", "--delays", "max")
    assert code == 0
    assert "clock is that of pd" in out


def test_list_names_every_schedule(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in SCHEDULES:
        assert name in out


BAD = [
    (["schedule", "pdx", "-S", "4", "-M", "8"], "NAME"),
    (["schedule", "pd", "-S", "0", "-M", "8"], "--stages"),
    (["schedule", "pd", "-S", "4", "-M", "0"], "--microbatches"),
    (["schedule", "pd", "-S", "40000", "-M", "4"], "--stages"),
    (["schedule", "pd", "-S", "4", "-M", "3000000000"], "--microbatches"),
    (["schedule", "pd", "-S", "1000", "-M", "100000000"], "GiB"),
    (["schedule", "localsgd", "-S", "2", "-M", "4", "--replicas", "40000"], "--replicas"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--forward", "1,2"], "--forward"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--backward", "-1"], "--backward"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--forward", "0"], "--forward"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--comm", "nan"], "--comm"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--update", "inf"], "--update"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--allreduce", "-2"], "--allreduce"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--jitter", "1"], "--jitter"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--straggler", "7:2"], "--straggler"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--straggler", "1:0.5"], "--straggler"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--replicas", "2"], "--replicas"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--recompute"], "--recompute"),
    (["schedule", "2bw", "-S", "4", "-M", "8", "--accumulate", "3"], "--accumulate"),
    (["schedule", "gpipe", "-S", "4", "-M", "8", "--accumulate", "0"], "--accumulate"),
    (["schedule", "localsgd", "-S", "4", "-M", "8", "--local-steps", "0"], "--local-steps"),
    (["schedule", "rpd", "-S", "4", "-M", "8", "--delays", "bogus"], "--delays"),
    (["schedule", "rpd", "-S", "4", "-M", "8", "--delta", "-1"], "--delta"),
    (["schedule", "rpd", "-S", "4", "-M", "8", "--delta", "x"], "--delta"),
    (["schedule", "pd", "-S", "x", "-M", "8"], "--stages"),
    (["schedule", "pd", "-M", "8"], "--stages"),
    (["schedule", "pd", "-S", "4", "-M", "8", "--bogus"], "--bogus"),
    (["bogus"], "bogus"),
]


@pytest.mark.parametrize(("args", "names"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, names):
    target = tmp_path / "chart.png"
    code, out, err = run(capsys, *args, *(["--png", str(target)] if args[0] != "bogus" else []))
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.endswith("\n")
    assert names in err
    assert "Traceback" not in err
    assert not target.exists()


def test_missing_png_folder_is_bad_input(capsys, tmp_path):
    code, out, err = run(
        capsys, "schedule", "pd", "-S", "2", "-M", "2", "--png", str(tmp_path / "no" / "x.png")
    )
    assert (code, out) == (2, "")
    assert "--png" in err and "does not exist" in err


def _subprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipebench", *args],
        capture_output=True,
        text=True,
        cwd=PACKAGE_HOME,
    )


def test_module_entry_point_and_exit_status():
    done = _subprocess("schedule", "naive", "-S", "2", "-M", "3", "--json")
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["makespan"] == 2 * 2 * 3
    bad = _subprocess("schedule", "naive", "-S", "2", "-M", "3", "--accumulate", "2")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_no_arguments_shows_help():
    done = _subprocess()
    assert done.returncode == 0
    assert "schedule" in done.stdout and done.stderr == ""
