"""`pipebench reproduce`: packaged scenarios, the verdict rules, and one reproduction end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipebench import api
from pipebench.cli import main
from pipebench.reproduce import (
    NOT,
    QUALITATIVE,
    REPRODUCTIONS,
    STAGES,
    WITHIN,
    findings,
    get_reproduction,
)
from pipebench.scenario import load_scenario


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
def test_every_reproduction_is_a_valid_packaged_scenario(name):
    repro = REPRODUCTIONS[name]
    assert repro.path().is_file()
    loaded = load_scenario(repro.path())
    if loaded.scenario.sweep:
        assert api.plan_sweep(repro.path()).cells
    else:
        assert api.load_experiment(repro.path()).runs > 0


def test_list_and_unknown_name(capsys):
    assert main(["reproduce", "--list", "--format", "csv"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == "reproduction,paper,figure,time"
    assert [line.split(",")[0] for line in listing[1:]] == list(REPRODUCTIONS)
    assert main(["reproduce", "scaling-vs-stage"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'scaling-vs-stages'" in err


def _summary(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    """A sweep summary with the selected runs only: (label, S, seed, final_loss)."""
    table = pd.DataFrame(rows, columns=["label", STAGES, "seed", "final_loss"])
    table["seed"] = table["seed"].astype("Int64")
    table["selected"] = True
    return table


def test_scaling_verdicts_follow_the_rules():
    notebook = {2: 10.78 / 13.12, 32: 16.10 / 1.552}  # the authors' printed ratios
    rows = []
    for S, pd_over_lsgd in ((2, [0.5, 0.7]), (32, [9.0, 12.0])):
        for seed, factor in enumerate(pd_over_lsgd):
            rows += [("pd", S, seed, factor), ("localsgd H=5", S, seed, 1.0)]
    rows += [(label, 4, 0, value) for label, value in (("pd", 0.5), ("localsgd H=5", 1.0))]
    out = {f.quantity.split(":")[0]: f for f in findings(get_reproduction("scaling-vs-stages"),
                                                         _summary(rows))}  # fmt: skip
    assert out["S=2"].verdict == WITHIN  # 0.82 lies in [0.5, 0.7] widened by 25%
    assert out["S=2"].paper.startswith(f"{notebook[2]:.3g}x")
    assert out["S=32"].verdict == WITHIN and out["S=32"].pipebench == "10.5x [9, 12]"
    assert out["S=4"].verdict == NOT  # PD still wins at S = 4
    assert out["crossover (LocalSGD starts to win), mean over seeds"].verdict == NOT


def test_a_claim_that_holds_outside_the_spread_is_qualitative():
    rows = [("pd", 64, 0, 3.0), ("localsgd H=5", 64, 0, 1.0)]
    rows += [(label, S, 0, v) for S in (2, 4) for label, v in (("pd", 1.0), ("localsgd H=5", 1.0))]
    out = findings(get_reproduction("scaling-vs-stages"), _summary(rows))
    s64 = next(f for f in out if f.quantity.startswith("S=64"))
    assert s64.verdict == QUALITATIVE  # LocalSGD wins by 3x; the paper says about 9-10x


def test_delays_reproduction_end_to_end(tmp_path):
    report = api.reproduce(["delays-vs-stages"], tmp_path, workers=1, plots=False)
    assert set(report.seconds) == {"delays-vs-stages"}
    table = pd.read_csv(tmp_path / "reproductions.csv")
    assert table.equals(report.findings.astype(table.dtypes.to_dict()))
    worst = table[table["quantity"].str.endswith("steady-state max delay")]
    stages = [int(q.split(":")[0][2:]) for q in worst["quantity"]]
    assert stages == [2**k for k in range(1, 8)]
    assert [int(v) for v in worst["pipebench"]] == [math.floor(S * S - S / 2) for S in stages]
    assert set(table["verdict"]) == {WITHIN}
    assert (tmp_path / "reproductions.md").read_text().count("| delays-vs-stages |") == 14
    means = table[table["quantity"].str.contains("mean delay")]["pipebench"].astype(float)
    assert np.all(np.abs(means - 1) < 0.1)


def _twobw_summary(final: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """Selected runs of the 2bw reproduction: label -> final loss of seeds 0 and 1."""
    return _summary(
        [(label, 8, seed, v) for label, vs in final.items() for seed, v in enumerate(vs)]
    )


def _twobw_final(adamw_2bw: float, adamw_ef: float, muon_2bw: float):
    return {
        "sync sgd": (1.0, 1.0), "2bw sgd": (1.2, 1.2), "2bw sgd ef": (1.1, 1.1),
        "sync adamw": (1.0, 2.0), "2bw adamw": (adamw_2bw, 2 * adamw_2bw),
        "2bw adamw ef": (adamw_ef, 2 * adamw_ef),
        "sync muon": (1.0, 1.0), "2bw muon": (muon_2bw, muon_2bw), "2bw muon ef": (1.0, 1.0),
    }  # fmt: skip


def test_twobw_claims_hold_on_a_summary_where_they_are_true():
    out = findings(
        get_reproduction("twobw-ef-optimizers"), _twobw_summary(_twobw_final(1.5, 1.1, 1.05))
    )
    assert [f.verdict for f in out] == [QUALITATIVE] * 3
    assert out[0].pipebench == "adamw 1.5x (sgd 1.2x, muon 1.05x)"
    assert out[1].pipebench == "0.8"  # (1.5 - 1.1)/(1.5 - 1) in both seeds
    assert out[2].pipebench == "muon 1.05x"


def test_twobw_verdicts_flip_when_the_claims_fail():
    # adamw hurt less than sgd, ef closes only 20% of its gap, muon hurt most
    out = findings(
        get_reproduction("twobw-ef-optimizers"), _twobw_summary(_twobw_final(1.1, 1.08, 1.3))
    )
    assert [f.verdict for f in out] == [NOT] * 3
    assert out[1].pipebench == "0.2"
