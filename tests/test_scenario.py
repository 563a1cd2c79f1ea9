"""Scenario files: what is accepted, and one clear line for everything that is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipebench.cli import main
from pipebench.errors import ScenarioError
from pipebench.scenario import load_scenario, lr_values

BASE = """\
name: tiny
seeds: [0, 1]
objective: {kind: quadratic, examples: 40, dim: 8, batch_size: 4}
pipeline:
  stages: 2
  costs: {forward: 1, backward: 1}
budget: {microbatches: 20}
record: {points: 10}
optimizer: {name: sgd, lr: 0.01}
schedules:
  - pd
  - {name: 2bw, accumulate: 2}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# (what is wrong, edit of BASE as (old, new), extra CLI args, words the error must contain)
BAD = [  # one case per line reads best: E501 is off for this file
    ("yaml syntax", ("batch_size: 4}", "batch_size: 4"), [], "s.yaml:4: (yaml): not valid YAML: expected ',' or '}', but got ':' (while parsing a flow mapping opened on line 3)"),
    ("duplicate key", ("  stages: 2\n", "  stages: 2\n  stages: 3\n"), [], "s.yaml:6: pipeline.stages: duplicate key"),
    ("unknown key", ("budget:", "budgte:"), [], "s.yaml:7: budgte: unknown key 'budgte' (did you mean 'budget'?)"),
    ("unknown nested key", ("accumulate: 2", "acumulate: 2"), [], "s.yaml:12: schedules.1.acumulate: unknown key 'acumulate' (did you mean 'accumulate'?)"),
    ("wrong type", ("stages: 2", "stages: two"), [], "s.yaml:5: pipeline.stages: Input should be a valid integer"),
    ("out of range", ("stages: 2", "stages: 0"), [], "pipeline.stages: Input should be greater than or equal to 1"),
    ("bool for int", ("examples: 40", "examples: true"), [], "objective.examples: Input should be a valid integer"),
    ("unknown schedule", ("  - pd", "  - pdd"), [], "s.yaml:11: schedules.0.name: unknown schedule 'pdd' (did you mean 'pd'?)"),
    ("unknown objective", ("kind: quadratic", "kind: quadratik"), [], "objective.kind: unknown objective kind 'quadratik' (did you mean 'quadratic'?)"),
    ("unknown optimizer", ("name: sgd", "name: sgdd"), [], "optimizer.name: unknown optimizer 'sgdd'"),
    ("2bw group too small", ("accumulate: 2", "accumulate: 1"), [], "s.yaml:12: schedules.1.accumulate: 2bw needs accumulate >= stages (2), got 1"),
    ("option of another schedule", ("  - pd", "  - {name: pd, replicas: 2}"), [], "schedules.0.replicas: does not apply to pd (it applies to: localsgd)"),
    ("empty schedule list", ("schedules:\n  - pd\n  - {name: 2bw, accumulate: 2}\n", "schedules: []\n"), [], "schedules: List should have at least 1 item"),
    ("missing budget", ("budget: {microbatches: 20}\n", ""), [], "budget: missing"),
    ("two budgets", ("{microbatches: 20}", "{microbatches: 20, time: 5}"), [], "s.yaml:7: budget: give exactly one of time, microbatches, updates (got time, microbatches)"),
    ("missing data file", ("{kind: quadratic, examples: 40, dim: 8, batch_size: 4}", "{kind: logistic, variant: csv, path: nowhere.csv, target: y}"), [], "objective.path: no such file"),
    ("bad grid string", ("lr: 0.01", "lr: {grid: '2^-3..2^-9'}"), [], "optimizer.lr: expected a number, a comma list"),
    ("negative lr", ("lr: 0.01", "lr: -0.01"), [], "optimizer.lr"),
    ("optimizer parameter elsewhere", ("name: sgd", "name: sgd, beta1: 0.9"), [], "optimizer.beta1: does not apply to sgd (only to: adamw, muon)"),
    ("field of another variant", ("batch_size: 4}", "batch_size: 4, mu: 0.1}"), [], "objective.mu: does not apply to variant random (only to: tridiagonal)"),
    ("cost list of wrong length", ("forward: 1,", "forward: [1, 1, 1],"), [], "pipeline.costs.forward: a list of 3 costs for 2 stages"),
    ("jitter out of range", ("backward: 1}", "backward: 1, jitter: 1.5}"), [], "pipeline.costs.jitter: Input should be less than 1"),
    ("too few parameters", ("dim: 8", "dim: 1"), [], "objective.dim: 1 parameters cannot be split over 2 stages"),
    ("batch larger than data", ("batch_size: 4", "batch_size: 400"), [], "objective.batch_size: must be <= the 40 examples"),
    ("duplicate labels", ("  - pd\n", "  - pd\n  - pd\n"), [], "schedules.1.label: label 'pd' is used twice"),
    ("seed and seeds", ("seeds: [0, 1]", "seeds: [0, 1]\nseed: 3"), [], "seed: give seeds or seed, not both"),
    ("not a mapping", (BASE, "- just\n- a list\n"), [], "(top level): a scenario is a mapping"),
    ("budget too large for memory", ("{microbatches: 20}", "{time: 1.0e+12}"), [], "s.yaml:7: budget.time: the operations of a trace of S=2, M=1000000000002 need about"),
    ("negative seed", ("seeds: [0, 1]", "seeds: [0, -1]"), [], "s.yaml:2: seeds.1: Input should be greater than or equal to 0"),
    ("bad --set value", ("", ""), ["--set", "pipeline.stages=zero"], "pipeline.stages (from --set): Input should be a valid integer"),
    ("bad --set path", ("", ""), ["--set", "schedules.7.name=pd"], "--set: schedules.7.name=pd: no item 7 in a list of 2"),
    ("--set without =", ("", ""), ["--set", "pipeline.stages"], "--set: expected key.path=value"),
    ("bad --seeds", ("", ""), ["--seeds", "0"], "--seeds: must be >= 1"),
    ("bad --format", ("", ""), ["--format", "xls"], "--format: one of table, csv, json, markdown"),
]  # fmt: skip


@pytest.mark.parametrize("what,edit,args,words", BAD, ids=[b[0] for b in BAD])
def test_bad_scenarios_fail_with_one_line_and_write_nothing(
    tmp_path, capsys, what, edit, args, words
):
    old, new = edit
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out), "--quiet", *args])
    stdout, stderr = capsys.readouterr()
    assert code == 2, stderr
    assert stdout == ""
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert stderr.startswith("pipebench run: ")
    assert words in stderr, stderr
    assert not out.exists()


def test_validate_accepts_the_base_scenario(tmp_path, capsys):
    code = main(["validate", str(write(tmp_path, BASE))])
    stdout, stderr = capsys.readouterr()
    assert code == 0 and stderr == ""
    assert "valid: 2 schedules, 2 seeds" in stdout and "= 4 runs" in stdout


def test_validate_reports_errors_like_run(tmp_path, capsys):
    code = main(["validate", str(write(tmp_path, BASE.replace("pd", "pdd")))])
    assert code == 2
    assert capsys.readouterr().err.startswith("pipebench validate: ")


def test_the_shipped_scenarios_are_valid(capsys):
    for path in sorted(Path(__file__).parent.parent.glob("benchmarks/scenarios/*.yaml")):
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    "spec,values",
    [
        (0.1, [0.1]),
        ([0.1, 0.2], [0.1, 0.2]),
        ("2^-3..2^-1", [0.125, 0.25, 0.5]),
        ("1e-3..1e-1:3", [1e-3, 1e-2, 1e-1]),
        ("0.5,0.25", [0.5, 0.25]),
    ],
)
def test_learning_rate_forms(spec, values):
    assert lr_values(spec) == pytest.approx(values, rel=1e-12)


def test_accepted_forms_and_overrides(tmp_path):
    text = BASE.replace("lr: 0.01", "lr: {grid: '2^-8..2^-6', select: auc}")
    text = text.replace("seeds: [0, 1]", "seed: 5").replace(
        "  - pd\n", "  - {name: pd, lr: 1e-3, label: fast}\n"
    )
    loaded = load_scenario(
        write(tmp_path, text), ["pipeline.costs.comm=0.5", "schedules.1.accumulate=4"]
    )
    s = loaded.scenario
    assert s.seed_list == [5]
    assert s.pipeline.costs.comm == 0.5 and s.schedules[1].accumulate == 4
    assert s.schedules[0].label == "fast" and s.schedules[0].lr == 1e-3  # 1e-3 read as a number
    assert lr_values(s.optimizer.lr) == [2**-8, 2**-7, 2**-6]


def test_the_hash_ignores_seeds_but_not_settings(tmp_path):
    path = write(tmp_path, BASE)
    base = load_scenario(path).content_hash()
    assert load_scenario(path, ["seeds=[4]"]).content_hash() == base
    assert load_scenario(path, ["optimizer.lr=0.02"]).content_hash() != base


def test_error_lines_point_at_the_field(tmp_path):
    path = write(tmp_path, BASE.replace("points: 10", "points: 0"))
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    assert error.value.where.endswith("s.yaml:8") and error.value.field == "record.points"
