"""`pipebench compare`: schedules side by side, and baseline against candidate for CI.

The candidates are real results edited in known ways (a loss 10% higher, a
run that now diverges, a row gone), so every expected status and exit code
is known independently of the code under test.
"""

from __future__ import annotations

import io
import json
import math
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich import box
from rich.console import Console
from rich.table import Table
from test_run import GRID
from test_scenario import write

from pipebench import api
from pipebench.cli import main
from pipebench.compare import Threshold, _mean, _std
from pipebench.export import Rows, csv_text
from pipebench.report.compare_view import comparison_text
from pipebench.report.runview import TEXT_COLUMNS, rich_table
from pipebench.tables import read_table

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A real results folder: pd, 2bw, rpd, localsgd x 2 seeds x 3 lrs (one diverges)."""
    folder = tmp_path_factory.mktemp("base")
    exp = api.load_experiment(write(folder, GRID))
    api.run_scenario(exp, folder / "out", plots=False)
    return folder / "out"


def edited(base: Path, tmp_path: Path, edit) -> Path:
    """A copy of base's summary.csv after `edit(table)`."""
    table = read_table(base / "summary.csv", "BASE")
    table = edit(table) if edit is not None else table
    path = tmp_path / "candidate.csv"
    table.to_csv(path, index=False)
    return path


def compare(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out, err = capsys.readouterr()
    return code, out, err


def scale(label: str, column: str, factor: float):
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[table["label"] == label, column] *= factor
        return table

    return edit


def statuses(stdout: str) -> pd.Series:
    return pd.read_csv(io.StringIO(stdout), keep_default_na=False)["status"]


def judge_edit(base, tmp_path, capsys, edit, *args: str) -> tuple[int, pd.DataFrame]:
    """Exit status and CSV table of comparing base with an edited copy of itself."""
    cand = edited(base, tmp_path, edit)
    code, out, _ = compare(capsys, str(base), str(cand), *args, "--format", "csv")
    return code, pd.read_csv(io.StringIO(out), keep_default_na=False)


def finite_rows(table: pd.DataFrame, label: str) -> pd.DataFrame:
    mine = table[table["label"] == label]
    return mine[mine["final_loss_base"].astype(float) < math.inf]


def test_identical_results_are_unchanged_and_pass(base, capsys):
    code, out, err = compare(capsys, str(base), str(base / "summary.csv"), "--fail-on",
                             "final_loss:0", "--format", "csv")  # fmt: skip
    assert code == 0 and err == "pipebench compare: 24 unchanged; judged on final_loss:0: pass\n"
    assert set(statuses(out)) == {"unchanged"} and len(statuses(out)) == 4 * 2 * 3


def test_a_regression_past_the_threshold_fails(base, tmp_path, capsys):
    edit = scale("pd", "final_loss", 1.10)
    code, table = judge_edit(base, tmp_path, capsys, edit, "--fail-on", "final_loss:5%")
    assert code == 1
    finite = finite_rows(table, "pd")
    assert (finite["status"] == "worse").all() and (finite["crossed"] == "final_loss:5%").all()
    assert finite["final_loss_change"].astype(float).round(9).eq(0.1).all()
    assert set(table[table["label"] != "pd"]["status"]) == {"unchanged"}


def test_a_change_within_the_threshold_is_unchanged(base, tmp_path, capsys):
    edit = scale("pd", "final_loss", 1.03)
    code, table = judge_edit(base, tmp_path, capsys, edit, "--fail-on", "final_loss:5%")
    assert code == 0 and set(table["status"]) == {"unchanged"}


def test_an_improvement_is_better_and_passes(base, tmp_path, capsys):
    edit = scale("2bw", "final_loss", 0.5)
    code, table = judge_edit(base, tmp_path, capsys, edit, "--fail-on", "final_loss:5%")
    assert code == 0
    finite = finite_rows(table, "2bw")
    assert len(finite) > 0 and (finite["status"] == "better").all()


def test_absolute_thresholds_and_time_to_target(base, tmp_path, capsys):
    def later_by(delta: float):
        def edit(table: pd.DataFrame) -> pd.DataFrame:
            table["time_to_target"] = 10.0 + delta
            return table

        return edit

    (tmp_path / "b").mkdir()
    base_t = edited(base, tmp_path / "b", later_by(0.0))
    small = edited(base, tmp_path, later_by(0.01))
    assert compare(capsys, str(base_t), str(small), "--fail-on", "time_to_target:0.02")[0] == 0
    big = edited(base, tmp_path, later_by(0.03))
    assert compare(capsys, str(base_t), str(big), "--fail-on", "time_to_target:0.02")[0] == 1
    never = edited(base, tmp_path, later_by(math.nan))  # no longer reaches the target
    assert compare(capsys, str(base_t), str(never), "--fail-on", "time_to_target:1e9")[0] == 1


def test_a_run_that_now_diverges_is_worse_at_any_threshold(base, tmp_path, capsys):
    def diverge(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[(table["label"] == "pd") & (table["lr"] == 0.005), "diverged"] = True
        return table

    cand = edited(base, tmp_path, diverge)
    code, out, _ = compare(capsys, str(base), str(cand), "--fail-on", "final_loss:1000%",
                           "--format", "csv")  # fmt: skip
    assert code == 1 and (statuses(out) == "worse").sum() == 2  # two seeds


def test_new_and_missing_rows(base, tmp_path, capsys):
    def drop_2bw(table: pd.DataFrame) -> pd.DataFrame:
        return table[table["label"] != "2bw"]

    fewer = edited(base, tmp_path, drop_2bw)
    code, out, _ = compare(capsys, str(base), str(fewer), "--fail-on", "final_loss:1%",
                           "--format", "csv")  # fmt: skip
    found = statuses(out)
    assert code == 0 and (found == "missing").sum() == 6 and (found == "unchanged").sum() == 18
    code, out, _ = compare(capsys, str(fewer), str(base), "--format", "csv")
    assert code == 0 and (statuses(out) == "new").sum() == 6


def test_a_changed_scenario_is_not_comparable(base, tmp_path, capsys):
    other = tmp_path / "other"
    exp = api.load_experiment(write(tmp_path, GRID), ["pipeline.costs.forward=2"])
    api.run_scenario(exp, other, plots=False)
    # every run changed: nothing to match is bad input
    code, out, err = compare(capsys, str(base), str(other))
    assert code == 2 and out == "" and "nothing to match" in err and err.count("\n") == 1
    # a table holding an unchanged scenario and a changed one: only the changed rows are flagged
    renamed = api.load_experiment(write(tmp_path, GRID.replace("name: tiny", "name: twin")))
    api.run_scenario(renamed, tmp_path / "twin", plots=False)
    twin = read_table(tmp_path / "twin" / "summary.csv", "T")
    both = pd.concat([read_table(base / "summary.csv", "B"), twin])
    changed = twin.assign(scenario_hash="0123456789abcdef")
    both_changed = pd.concat([read_table(base / "summary.csv", "B"), changed])
    both.to_csv(tmp_path / "b.csv", index=False)
    both_changed.to_csv(tmp_path / "c.csv", index=False)
    code, out, _ = compare(capsys, str(tmp_path / "b.csv"), str(tmp_path / "c.csv"),
                           "--format", "csv")  # fmt: skip
    table = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert code == 0
    assert set(table[table["scenario"] == "twin"]["status"]) == {"not comparable"}
    assert set(table[table["scenario"] == "tiny"]["status"]) == {"unchanged"}


def test_markdown_is_a_well_formed_table(base, tmp_path, capsys):
    cand = edited(base, tmp_path, scale("pd", "final_loss", 1.10))
    for args in ([str(base), str(cand), "--fail-on", "final_loss:5%"], [str(base)]):
        _, out, _ = compare(capsys, *args, "--format", "markdown")
        lines = [line for line in out.splitlines() if line.startswith("|")]
        assert len(lines) >= 3 and all(line.endswith("|") for line in lines)
        cells = [line.replace("\\|", "").count("|") for line in lines]
        assert len(set(cells)) == 1  # header, separator and rows have the same columns
        assert set(lines[1].strip("|").split("|")) == {"---"}
        # the rows are contiguous: a renderer sees one table
        block = out[out.index(lines[0]) :].splitlines()[: len(lines)]
        assert block == lines


def test_changes_only_keeps_the_headline_counts(base, tmp_path, capsys):
    cand = edited(base, tmp_path, scale("pd", "final_loss", 1.10))
    args = [str(base), str(cand), "--fail-on", "final_loss:5%", "--changes-only"]
    code, out, _ = compare(capsys, *args, "--format", "markdown")
    assert code == 1 and "unchanged" in out.splitlines()[0]
    assert all("| unchanged |" not in line for line in out.splitlines())


def test_side_by_side_speedups_against_the_reference(base, capsys):
    code, out, _ = compare(capsys, str(base), "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["label"] for r in rows] == ["pd", "rpd", "localsgd", "2bw"]
    # no synchronous schedule in GRID: the first listed is the reference
    assert [r["reference"] for r in rows] == [True, False, False, False]
    summary = read_table(base / "summary.csv", "B")
    for r in rows:
        mine = summary[(summary["label"] == r["label"]) & summary["selected"]]
        mine = mine[mine["seed"].notna()]
        assert r["lr"] == mine["lr"].iloc[0] and r["runs"] == 2
        assert r["final_loss"] == pytest.approx(mine["final_loss"].mean())
        assert r["final_loss_std"] == pytest.approx(mine["final_loss"].std(ddof=1))
        assert r["max_delay"] == mine["max_delay"].max()
    code, out, _ = compare(capsys, str(base), "--reference", "2bw", "--format", "json")
    rows = {r["label"]: r for r in json.loads(out)}
    ref_time = rows["2bw"]["time_to_target"]
    for r in rows.values():
        if r["time_to_target"] is not None and ref_time is not None:
            assert r["speedup"] == pytest.approx(ref_time / r["time_to_target"])
    assert rows["2bw"]["reference"] and not rows["pd"]["reference"]


def test_a_synchronous_schedule_is_the_default_reference(tmp_path, capsys):
    text = GRID.replace("  - pd\n", "  - pd\n  - {name: 1f1b-flush, accumulate: 2}\n")
    exp = api.load_experiment(write(tmp_path, text))
    api.run_scenario(exp, tmp_path / "out", plots=False)
    code, out, _ = compare(capsys, str(tmp_path / "out"), "--format", "json")
    ref = [r["label"] for r in json.loads(out) if r["reference"]]
    assert code == 0 and ref == ["1f1b-flush"]


BAD = [
    (["BASE", "BASE", "--fail-on", "finalloss:5%"], "did you mean 'final_loss'"),
    (["BASE", "BASE", "--fail-on", "final_loss"], "METRIC:THRESHOLD"),
    (["BASE", "BASE", "--fail-on", "final_loss:-3"], "METRIC:THRESHOLD"),
    (["BASE", "BASE", "--fail-on", "final_loss:5%%"], "METRIC:THRESHOLD"),
    (["BASE", "--fail-on", "final_loss:5%"], "BASE CANDIDATE"),
    (["BASE", "BASE", "BASE"], "got 3"),
    (["BASE", "BASE", "--reference", "pd"], "--reference"),
    (["BASE", "--reference", "pdd"], "did you mean 'pd'"),
    (["BASE", "--format", "xml"], "--format"),
    (["MISSING"], "does not exist"),
    (["NOT_SUMMARY"], "not a pipebench table: no column"),
    (["BASE", "EMPTY"], "CANDIDATE"),
]


@pytest.mark.parametrize(("args", "words"), BAD)
def test_bad_input_is_one_line_and_exit_2(base, tmp_path, capsys, args, words):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty.csv").write_text("")
    paths = {
        "BASE": str(base),
        "MISSING": str(tmp_path / "nope"),
        "NOT_SUMMARY": str(tmp_path / "other.csv"),
        "EMPTY": str(tmp_path / "empty.csv"),
    }
    code, out, err = compare(capsys, *[paths.get(a, a) for a in args])
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("pipebench compare")
    assert words in err


@given(
    base=st.floats(-1e6, 1e6), cand=st.floats(-1e6, 1e6), value=st.floats(0, 1e3),
    relative=st.booleans(),
)  # fmt: skip
def test_judging_is_antisymmetric_and_zero_within_the_threshold(base, cand, value, relative):
    t = Threshold("final_loss", value, relative)
    verdict = t.judge(base, cand)
    tolerance = value * abs(base) if relative else value
    assert verdict == (1 if cand - base > tolerance else -1 if base - cand > tolerance else 0)
    if not relative:
        assert t.judge(cand, base) == -verdict


def test_thresholds_parse_as_documented():
    assert Threshold.parse("final_loss:5%") == Threshold("final_loss", 0.05, True)
    assert Threshold.parse("time_to_target:0.02") == Threshold("time_to_target", 0.02, False)
    assert Threshold.parse("auc:1e-3") == Threshold("auc", 1e-3, False)
    assert str(Threshold.parse("final_loss:5%")) == "final_loss:5%"
    assert Threshold("x", 0.0, False).judge(math.inf, math.inf) == 0
    assert Threshold("x", 1e9, False).judge(1.0, math.inf) == 1
    assert Threshold("x", 1e9, False).judge(math.inf, 1.0) == -1


def test_the_readme_ci_job_passes_against_the_committed_baseline(tmp_path, monkeypatch, capsys):
    """The pipebench steps of .github/workflows/benchmark.yml, as the README shows them.

    Fails when a change moves the quickstart's numbers: regenerate the
    baseline then (README, "pipebench in CI").
    """
    workflow = (ROOT / ".github" / "workflows" / "benchmark.yml").read_text()
    assert workflow in (ROOT / "README.md").read_text()
    steps = [s["run"] for s in yaml.safe_load(workflow)["jobs"]["benchmark"]["steps"] if "run" in s]
    commands = [shlex.split(s.split(">>")[0]) for s in steps if s.startswith("pipebench ")]
    assert [c[1] for c in commands] == ["run", "compare"]
    monkeypatch.chdir(ROOT)
    out = str(tmp_path / "candidate")
    for command in commands:
        args = [out if a == "results/candidate" else a for a in command[1:]]
        assert main(args) == 0, capsys.readouterr()


# --- without pandas: the same numbers and bytes as pandas gives ------------------------------

FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64) | st.just(math.nan)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(FLOATS, max_size=300))
def test_means_and_spreads_are_pandas_to_the_bit(values):
    # compare sums as NumPy does (pairwise, in blocks of 8 and 128): a seed's mean is pandas'
    series = pd.Series(values, dtype=float)
    for mine, theirs in ((_mean(values), series.mean()), (_std(values), series.std(ddof=1))):
        assert mine == theirs or (math.isnan(mine) and math.isnan(theirs))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=st.lists(
        st.tuples(FLOATS | st.just(math.inf), st.integers(-(2**62), 2**62), st.booleans(),
                  st.text(max_size=5) | st.just(math.nan)),
        min_size=1, max_size=20,
    )
)  # fmt: skip
def test_the_csv_writer_writes_what_pandas_writes(frame):
    table = pd.DataFrame(frame, columns=["x", "n", "flag", "label"])
    assert csv_text(table) == table.to_csv(index=False, lineterminator="\n")


def test_a_summary_reads_back_as_pandas_read_it():
    # the committed baseline's summary: floats to the last bit, counts as integers
    path = ROOT / "benchmarks" / "baselines" / "quickstart" / "summary.csv"
    table = read_table(path, "B")
    raw = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for column in ("final_loss", "time_to_target", "auc", "lr", "max_delay"):
        pd.testing.assert_series_equal(table[column], raw[column], check_exact=True)
    assert str(table["seed"].dtype) == "Int64" and table["diverged"].dtype == bool


BROKEN = {  # what pandas' reader said of each fault, as main printed it
    "ragged.csv": (
        "a,b\n1,2\n3,4,5\n",
        "Error tokenizing data. C error: Expected 2 fields in line...",
    ),
    "quote.csv": ('a,b\n"1,2\n', "Error tokenizing data. C error: EOF inside string startin..."),
    "latin1.csv": (
        b"a,b\n1,x\xe9y\n",
        "'utf-8' codec can't decode byte 0xe9 in position 1: inval...",
    ),
    "blank.csv": ("\n \n", "No columns to parse from file"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_an_unreadable_summary_is_named_in_one_line(tmp_path, capsys, name):
    text, words = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, out, err = compare(capsys, str(path))
    assert code == 2 and out == ""
    assert err == f"pipebench compare: RESULTS: {str(path)!r} is not a pipebench table: {words}\n"


def test_python_users_get_dataframes(base, tmp_path):
    cand = edited(base, tmp_path, scale("pd", "final_loss", 1.10))
    comparison = api.compare_runs(base, cand, ["final_loss:5%"])
    table = comparison.table
    assert isinstance(table, pd.DataFrame) and comparison.failed
    assert list(table.columns[:6]) == ["scenario", "schedule", "label", "seed", "lr", "status"]
    assert set(table.loc[table["label"] == "pd", "status"]) <= {"worse", "unchanged"}
    assert table["seed"].dtype == "int64" and table["final_loss_base"].dtype == float
    side = api.compare_schedules(base)
    assert isinstance(side, pd.DataFrame) and list(side["label"]) == [
        "pd",
        "rpd",
        "localsgd",
        "2bw",
    ]


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("width", [40, 100, 1000])
def test_a_table_draws_as_rich_draws_it_row_by_row(base, tmp_path, terminal, width):
    # print_table hands rich whole columns (one cell each, a line per row): the same text
    # as a row per row, on a terminal (colours, narrow: cut cells) and in a file
    cand = edited(base, tmp_path, scale("pd", "final_loss", 1.10))
    comparison = api.compare_runs(base, cand, ["final_loss:5%", "time_to_target:0.02"])
    text = comparison_text(comparison, comparison.rows)
    odd = ("[bold]open", "a [italic]b", "", "→ ±", "unchanged", "1 → 2", "[b]x[/b]", "")
    text = Rows(text.columns, [*text.rows, odd[: len(text.columns)]])

    def drawn(table_of) -> str:
        console = Console(
            width=width, force_terminal=terminal, color_system="truecolor" if terminal else None,
            file=io.StringIO(),
        )  # fmt: skip
        console.print(table_of(console))
        return console.file.getvalue()

    def row_by_row(console: Console) -> Table:
        table = Table(title="t", caption="c", box=box.SIMPLE_HEAD, pad_edge=False,
                      collapse_padding=True)  # fmt: skip
        for column in text.columns:
            justify = "left" if column in TEXT_COLUMNS else "right"
            table.add_column(column, justify=justify, no_wrap=True)
        for row in text.rows:
            table.add_row(*map(str, row))
        return table

    assert drawn(lambda console: rich_table(text, "t", "c", console)) == drawn(row_by_row)
