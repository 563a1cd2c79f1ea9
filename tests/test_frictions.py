"""What a new user meets first: the winner lines, lr-grid warnings, exact JSON, captions,
`compare --changes-only` on an unchanged run, `list`, `schedule --json` and `--help`.

Expected values come from the tables themselves (read back with the csv module
or plain pandas), from the README's defaults, or from the scenario's grid.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_scenario import write

from pipebench import api
from pipebench.cli import app, main
from pipebench.compare import REFERENCE_SCHEDULES
from pipebench.optim import SHARED_FIELDS
from pipebench.report.runview import print_summary
from pipebench.report.verdict import lr_edge_lines, winner_lines
from pipebench.tables import read_table
from pipebench.timeline import SCHEDULES

SCENARIO = """\
name: frictions
seeds: [0, 1]
objective: {kind: quadratic, examples: 40, dim: 8, batch_size: 4}
pipeline:
  stages: 2
  costs: {forward: 1, backward: 1}
budget: {time: 200}
record: {points: 20}
optimizer: {name: sgd, lr: [0.02, 0.05, 0.1, 40.0]}
target_loss: 0.02
schedules:
  - gpipe
  - {name: 1f1b-flush, accumulate: 2}
  - pd
  - {name: 2bw, accumulate: 2}
  - naive
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> api.RunReport:
    folder = tmp_path_factory.mktemp("frictions")
    exp = api.load_experiment(write(folder, SCENARIO))
    return api.run_scenario(exp, folder / "out", plots=False)


def selected_aggregates(summary: pd.DataFrame) -> pd.DataFrame:
    """Per schedule, its aggregate row (means over seeds) at the selected lr, by label."""
    rows = summary[summary["seed"].isna() & summary["selected"]]
    return rows.set_index("label")


def leaders(values: pd.Series, unit: str = "") -> str:
    """How the lines name the least of `values` by label: "a (1.5)", or "a, b (tied, 1.5)"."""
    best = values.min()
    labels = [label for label, v in values.items() if v == best]
    tied = "tied, " if len(labels) > 1 else ""
    return f"{', '.join(labels)} ({tied}{best:.4g}{unit})"


# ---------------------------------------------------------------- winners and lr edges


def test_the_winner_lines_name_the_best_schedules(results):
    summary = read_table(results.out_dir / "summary.csv", "S")
    chosen = selected_aggregates(summary)
    reached = chosen["time_to_target"].dropna()
    assert len(reached) >= 2, "schedules must reach the target"
    reference = "1f1b-flush"  # preferred over gpipe, which is listed first
    speedup = chosen.loc[reference, "time_to_target"] / reached.min()
    assert speedup > 1  # the scenario has an asynchronous schedule that is faster
    lines = winner_lines(summary, has_target=True)
    assert lines[0] == f"lowest final f − f*: {leaders(chosen['final_gap'])}"
    assert lines[1] == (
        f"fastest to target: {leaders(reached, ' time units')}, {speedup:.2f}x faster than "
        f"the synchronous reference {reference} ({chosen.loc[reference, 'time_to_target']:.4g})"
    )


def test_the_reference_order_and_a_scenario_without_a_target(results):
    summary = read_table(results.out_dir / "summary.csv", "S")
    assert set(REFERENCE_SCHEDULES) == {n for n, s in SCHEDULES.items() if s.synchronous}
    assert len(winner_lines(summary, has_target=False)) == 1
    no_flush = winner_lines(summary[summary["schedule"] != "1f1b-flush"], has_target=True)[1]
    assert "the synchronous reference gpipe" in no_flush
    asynchronous = summary[~summary["schedule"].isin(REFERENCE_SCHEDULES)]
    assert "no synchronous one" in winner_lines(asynchronous, has_target=True)[1]


def test_the_table_shows_the_caption_and_winners_and_warns_of_edges(results, tmp_path, capsys):
    summary = read_table(results.out_dir / "summary.csv", "S")
    print_summary(results, "table")
    out = capsys.readouterr().out
    for line in winner_lines(summary, True):
        assert line in out
    assert "f* = " in out and "warning" not in out  # every best lr is inside its grid
    # the same scenario without the two largest lrs: every schedule's best is now the top one
    narrow = ["--set", "optimizer.lr=[0.02, 0.05]", "--quiet", "--no-plots"]
    path = str(write(tmp_path, SCENARIO))
    assert main(["run", path, "--out", str(tmp_path / "narrow"), *narrow]) == 0
    out = capsys.readouterr().out
    labels = ["gpipe", "1f1b-flush", "pd", "2bw", "naive"]
    edges = ", ".join(f"{label} (highest, 0.05)" for label in labels)
    assert f"warning: selected lr at the edge of its grid for {edges}:" in out


def grid_summary(best: dict[str, float], lrs=(0.1, 0.2, 0.4)) -> pd.DataFrame:
    """Aggregate rows of a summary with `best[label]` the selected lr of each schedule."""
    rows = [
        {"label": label, "lr": lr, "seed": pd.NA, "selected": lr == pick}
        for label, pick in best.items()
        for lr in lrs
    ]
    return pd.DataFrame(rows)


def test_an_edge_warning_only_when_the_best_lr_is_at_an_end_of_its_grid():
    assert lr_edge_lines(grid_summary({"a": 0.2, "b": 0.2})) == []
    (line,) = lr_edge_lines(grid_summary({"a": 0.4, "b": 0.2, "c": 0.1}))
    assert "a (highest, 0.4)" in line and "c (lowest, 0.1)" in line and "b (" not in line
    assert "extend the grid" in line
    # one lr is no grid; no selection (every lr diverged) is no edge
    assert lr_edge_lines(grid_summary({"a": 0.1}, lrs=(0.1,))) == []
    assert lr_edge_lines(grid_summary({"a": 9.9})) == []


def test_the_quickstart_selects_no_lr_at_an_edge_of_its_grid():
    """The committed baseline is the quickstart's run: its selections are inside the grid."""
    root = Path(__file__).parent.parent
    summary = read_table(root / "benchmarks" / "baselines" / "quickstart" / "summary.csv", "B")
    assert lr_edge_lines(summary) == []
    quickstart = api.load_experiment(root / "benchmarks" / "scenarios" / "quickstart.yaml")
    assert sorted(set(summary["lr"])) == sorted(quickstart.entries[0].lrs)


# ---------------------------------------------------------------- json


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def assert_json_matches_csv(json_rows: list[dict], csv_text: str) -> None:
    """Every JSON value equals the CSV field read exactly: floats bit for bit, '' as null."""
    fields = csv_rows(csv_text)
    assert len(json_rows) == len(fields)
    for got, row in zip(json_rows, fields, strict=True):
        assert list(got) == list(row)
        for key, text in row.items():
            value = got[key]
            if text == "":
                assert value is None, key
            elif text in ("inf", "-inf"):
                assert value == text, key  # the documented marker
            elif isinstance(value, bool):
                assert str(value) == text, key
            elif isinstance(value, (int, float)):
                assert value == float(text), (key, value, text)  # exact, no rounding
            else:
                assert value == text, key


def test_run_json_keeps_every_bit_and_marks_infinities(results, capsys):
    print_summary(results, "json")
    rows = json.loads(capsys.readouterr().out)
    text = (results.out_dir / "summary.csv").read_text()
    assert_json_matches_csv(rows, text)
    assert any(r["auc"] == "inf" for r in rows)  # lr 40 diverges: its area is infinite
    floats = [r["final_loss"] for r in rows if isinstance(r["final_loss"], float)]
    assert any(len(repr(f)) > 17 for f in floats)  # more digits than the old 15


def test_compare_json_writes_never_reached_as_inf(results, tmp_path, capsys):
    code = main(["compare", str(results.out_dir), str(results.out_dir), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    never = [r for r in rows if r["time_to_target_base"] == "inf"]
    assert never and all(r["time_to_target_candidate"] == "inf" for r in never)
    assert all(r["time_to_target_change"] is None for r in never)  # no value: null
    csv_summary = read_table(results.out_dir / "summary.csv", "S")
    runs = csv_summary[csv_summary["seed"].notna()]
    assert [r["final_loss_base"] for r in rows if r["final_loss_base"] != "inf"] == [
        v for v, d in zip(runs["final_loss"], runs["diverged"], strict=True) if not d
    ]


def test_sweep_json_is_the_combined_csv_exactly(tmp_path, capsys):
    path = write(tmp_path, SCENARIO.replace("seeds: [0, 1]", "seeds: [0]"))
    out = str(tmp_path / "sw")
    args = ["--grid", "pipeline.costs.comm=0,0.5", "--workers", "1", "--out", out]
    code = main(["sweep", str(path), *args, "--quiet", "--no-plots", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert_json_matches_csv(rows, (tmp_path / "sw" / "summary.csv").read_text())


# ---------------------------------------------------------------- markdown captions


def test_markdown_keeps_the_caption_and_the_winners(results, capsys):
    print_summary(results, "markdown")
    out = capsys.readouterr().out
    assert out.startswith(f"**{results.experiment.name}: ")
    assert "f* = " in out and "target: simulated time to reach target_loss" in out
    summary = read_table(results.out_dir / "summary.csv", "S")
    for line in winner_lines(summary, True) + lr_edge_lines(summary):
        assert f"- {line}" in out.splitlines()
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 5  # header, separator, one row per schedule


# ---------------------------------------------------------------- compare --changes-only


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "markdown"])
def test_changes_only_with_nothing_changed_is_a_verdict_and_an_empty_table(results, capsys, fmt):
    base = str(results.out_dir)
    code = main(["compare", base, base, "--fail-on", "final_loss:1e-6", "--changes-only",
                 "--format", fmt])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    verdict = re.compile(r"\d+ unchanged; judged on final_loss:1e-06: pass")
    if fmt == "csv":
        assert pd.read_csv(io.StringIO(out)).empty
        assert out.splitlines()[0].startswith("scenario,schedule,label,seed,lr,status,")
        assert verdict.search(err) and err.count("\n") == 1
    elif fmt == "json":
        assert json.loads(out) == [] and verdict.search(err)
    elif fmt == "markdown":
        lines = out.splitlines()
        assert verdict.search(lines[0]) and err == ""
        table = [line for line in lines if line.startswith("|")]
        assert len(table) == 2 and table[0].startswith("| scenario | schedule |")
        assert table[0].count("|") == table[1].count("|") and set(table[1][1:-1].split("|")) == {
            "---"
        }
    else:
        assert verdict.search(out) and "scenario" in out and "status" in out and err == ""


# ---------------------------------------------------------------- list, schedule --json, --help


def test_list_shows_the_options_every_optimizer_takes(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in SHARED_FIELDS:
        assert re.search(rf"\b{name}=", out), name
    assert "warmup=0" in out and "cosine=False" in out and "ef=False" in out


PER_STAGE = {"inflight": "per-stage"}  # the 1F1B-rule schedules' default


@pytest.mark.parametrize(("args", "expected"), [
    (["2bw", "-S", "4"], {"accumulate": 4} | PER_STAGE),  # README: 2bw's group defaults to S
    (["gpipe", "-S", "3"], {"accumulate": 3}),
    (["paci", "-S", "4"], {"accumulate": 1, "recompute": False} | PER_STAGE),
    (["paci", "-S", "4", "--recompute"], {"accumulate": 1, "recompute": True} | PER_STAGE),
    (["localsgd", "-S", "4", "--local-steps", "2"],
     {"replicas": 4, "local_steps": 2, "fragments": 1} | PER_STAGE),
    (["rpd", "-S", "4"], {"delta": 14, "delays": "uniform", "sampling": "objective"}),
    (["pd", "-S", "4", "--inflight", "input"], {"inflight": "input"}),
])  # fmt: skip
def test_schedule_json_shows_every_option_used(capsys, args, expected):
    assert main(["schedule", *args, "-M", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["options"] == expected


COMMANDS = ["", "schedule", "run", "compare", "sweep", "plot", "validate", "list"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_type_beside_flags(command, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("COLUMNS", "120")
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0 and "--help" in result.output
    assert "<bool>" not in result.output and "list[str]" not in result.output
    flags = [
        line for line in result.output.splitlines() if re.search(r"--(help|quiet|json)\b", line)
    ]
    assert flags and all("<" not in line for line in flags)


# ---------------------------------------------------------------- pictures


def synthetic_curves(gaps: dict[str, list[float]], seeds=(0, 1), f_star: float = 1.0):
    """A summary and curves.csv with one selected lr per schedule and the given f - f*."""
    summary, curves = [], []
    for label, gap in gaps.items():
        for seed in seeds:
            summary.append({"scenario": "s", "label": label, "seed": seed, "lr": 0.1,
                            "selected": True, "diverged": False})  # fmt: skip
            for t, g in enumerate(gap):
                g = g * (1 + 0.1 * seed) if g > 0 else g
                curves.append({"label": label, "seed": seed, "lr": 0.1, "sim_time": float(t),
                               "updates": t, "loss": f_star + g, "gap": g})  # fmt: skip
    return pd.DataFrame(summary), pd.DataFrame(curves)


def schedule_lines(ax) -> dict[str, object]:
    return {line.get_label().split(" (")[0]: line for line in ax.lines if "(lr" in line.get_label()}


def test_loss_plot_styles_and_the_rounding_floor():
    from pipebench.report.plots import ROUNDING_EPSILONS, curves_figure, plt

    same = [9.0, 1.0, 1e-3, 1e-6]
    summary, curves = synthetic_curves({"a": same, "b": same, "c": [9.0, 1e-3, 0.0, -1e-16]})
    fig = curves_figure(summary, curves, "sim_time", "held-out loss, nats/char")
    ax = fig.axes[0]
    lines = schedule_lines(ax)
    styles = {(line.get_linestyle(), line.get_marker()) for line in lines.values()}
    assert len(lines) == 3 and len(styles) == 3  # equal curves a and b look different
    floor = ROUNDING_EPSILONS * np.finfo(float).eps * (1.0 + 9.0 * 1.1)  # largest initial loss
    drawn = lines["c"].get_ydata()
    assert np.isfinite(drawn).all() and drawn.min() == pytest.approx(floor, rel=1e-12)
    assert np.array_equal(lines["a"].get_ydata(), lines["b"].get_ydata())
    assert any(
        np.allclose(line.get_ydata(), floor) for line in ax.lines if line not in lines.values()
    )
    assert "rounding floor" in ax.get_title() and ax.get_ylim()[0] < floor
    assert "held-out loss, nats/char" in ax.get_ylabel()
    plt.close(fig)
    fig = curves_figure(*synthetic_curves({"a": same}), "updates", "loss")
    assert "rounding floor" not in fig.axes[0].get_title()  # nothing was that small
    plt.close(fig)


def test_a_results_folder_names_its_loss_for_the_axis(results, tmp_path):
    from pipebench.objectives import LOSS_LABELS, loss_label
    from pipebench.scenario import OBJECTIVE_KINDS

    assert set(LOSS_LABELS) == set(OBJECTIVE_KINDS)
    meta = json.loads((results.out_dir / "meta.json").read_text())
    assert meta["objective"]["kind"] == "quadratic"
    meta["objective"]["kind"] = "charlm"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert loss_label(api.objective_kind(tmp_path / "meta.json")) == "held-out loss, nats/char"
    assert loss_label(api.objective_kind(tmp_path / "absent.json")) == "loss"


def test_the_sweep_plot_shows_the_spread_over_seeds():
    from pipebench.report.sweep_plot import final_points, plt, sweep_figure

    rows = []
    for stages in (2, 4, 8):
        for seed, noise in enumerate((0.0, 0.5, 0.2)):
            for label in ("pd", "2bw"):
                gap = stages * (1 if label == "pd" else 3) * (1 + noise)
                rows.append({"pipeline.stages": stages, "label": label, "seed": seed, "lr": 0.1,
                             "selected": True, "diverged": False, "final_gap": gap,
                             "final_loss": 1 + gap, "scenario": "s"})  # fmt: skip
    summary = pd.DataFrame(rows)
    points = final_points(summary, ["pipeline.stages"])
    fig = sweep_figure(points, "pipeline.stages", ["pipeline.stages"], "s", "loss")
    bars = [c for c in fig.axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 2
    for container, label in zip(bars, ("pd", "2bw"), strict=True):
        (segments,) = [lc.get_segments() for lc in container.lines[2]]
        mine = summary[summary["label"] == label].groupby("pipeline.stages")["final_gap"]
        assert [s[0][1] for s in segments] == pytest.approx(list(mine.min()), rel=1e-12)
        assert [s[1][1] for s in segments] == pytest.approx(list(mine.max()), rel=1e-12)
    assert "bars min–max" in fig.axes[0].get_title()
    plt.close(fig)
