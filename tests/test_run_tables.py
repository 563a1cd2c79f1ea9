"""The tables behind the pictures: `delays.csv`, `timeline.csv`, and the first-rounds window."""

from __future__ import annotations

import numpy as np
import pytest
from test_run import GRID
from test_scenario import write

from pipebench import api
from pipebench.tables import read_table
from pipebench.timeline import CostModel, build_timeline
from pipebench.timeline.trace import FORWARD, KIND_NAMES
from pipebench.timeline.window import first_rounds_end, head


def unit(stages: int) -> CostModel:
    return CostModel.build(stages, forward=1.0, backward=1.0)


def stage0_forwards(trace) -> list[int]:
    return trace.mb[(trace.kind == FORWARD) & (trace.stage == 0)].tolist()


@pytest.mark.parametrize(("name", "options", "per_round"), [
    ("gpipe", {"accumulate": 3}, 3),
    ("1f1b-flush", {"accumulate": 5}, 5),
    ("localsgd", {"replicas": 2, "local_steps": 3}, 6),
    ("pd", {}, 4),  # stage 0 runs S forwards before its first backward and step
])  # fmt: skip
def test_the_chart_shows_the_first_two_rounds(name, options, per_round):
    trace = build_timeline(name, unit(4), 40, **options)
    shown = head(trace, first_rounds_end(trace))
    assert stage0_forwards(shown) == list(range(2 * per_round))


def test_head_is_a_copied_prefix():
    trace = build_timeline("2bw", unit(3), 12, accumulate=3)
    whole = head(trace, np.inf)
    for field in ("kind", "stage", "mb", "start", "end", "v_fwd", "v_bwd", "upd_op"):
        assert np.array_equal(getattr(whole, field), getattr(trace, field))
        assert not np.shares_memory(getattr(whole, field), getattr(trace, field))
    part = head(trace, np.inf, max_ops=10)
    assert part.n_ops == 10 and np.array_equal(part.start, trace.start[:10])
    assert (part.upd_op < 10).all() and part.n_updates == int((trace.upd_op < 10).sum())


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    exp = api.load_experiment(write(folder, GRID))
    api.run_scenario(exp, folder / "out", plots=False)
    return exp, folder / "out"


def test_delay_histograms_agree_with_the_summary(results):
    _, out = results
    summary = read_table(out / "summary.csv", "S")
    delays = read_table(out / "delays.csv", "D")
    runs = summary[summary["seed"].notna()]
    for (label, seed), hist in delays.groupby(["label", "seed"]):
        row = runs[(runs["label"] == label) & (runs["seed"] == seed)].iloc[0]
        n = hist["updates"].to_numpy()
        d = hist["delay"].to_numpy()
        assert n.sum() == row["updates"], label  # every block update, once
        assert d.max() == row["max_delay"]
        assert (d * n).sum() / n.sum() == pytest.approx(row["mean_delay"], rel=1e-12)
    assert set(delays["label"]) == set(runs["label"])


def test_timeline_table_is_the_start_of_each_timeline(results):
    exp, out = results
    table = read_table(out / "timeline.csv", "T")
    pd_rows = table[table["label"] == "pd"]
    trace = build_timeline("pd", exp.costs, int(exp.budget))  # budget: 20 micro-batches
    shown = head(trace, first_rounds_end(trace))
    assert list(pd_rows["kind"]) == [KIND_NAMES[k] for k in shown.kind]
    assert np.array_equal(pd_rows["start"].to_numpy(), shown.start)
    assert np.array_equal(pd_rows["stage"].to_numpy(), shown.stage)
    assert np.array_equal(pd_rows["mb"].to_numpy(), shown.mb)
    # rpd's chart is its pd clock
    rpd_rows = table[table["label"] == "rpd"].drop(columns=["schedule", "label"])
    assert rpd_rows.reset_index(drop=True).equals(
        pd_rows.drop(columns=["schedule", "label"]).reset_index(drop=True)
    )
