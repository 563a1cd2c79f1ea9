"""A model on a GPU: the roofline and the sizes against the shipped H200 measurements,
profiles, the split over stages, the scaling with the hardware, and the wiring."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipebench.cli import main
from pipebench.errors import InputError
from pipebench.hardware.costs import analytic_costs, even_split, profile_costs
from pipebench.hardware.gpus import GPUS, custom_hardware, gpu_preset
from pipebench.hardware.model import MODELS, ModelShape, model_preset
from pipebench.hardware.profile import load_profile, read_profile
from pipebench.hardware.roofline import H200_FIT, part_times
from pipebench.hardware.sizes import chunk_sizes, part_act_bytes, profile_chunk_sizes
from pipebench.scenario.hardware import build_machine
from pipebench.timeline import build_timeline
from pipebench.timeline.costs import CostModel

H200 = load_profile("h200")
MIN_TOKENS = 4096


def measured() -> list[tuple[ModelShape, str, object]]:
    """(shape, part, row) of every row of the shipped H200 table."""
    out = []
    for (part, h, heads, ffn, swiglu, vocab, seq, mb), row in H200.rows.items():
        shape = ModelShape(layers=1, hidden=h, heads=heads, ffn=ffn, vocab=vocab, seq=seq,
                           micro_batch=mb, swiglu=bool(swiglu))  # fmt: skip
        out.append((shape, part, row))
    return out


ROWS = measured()
BIG = [(s, p, r) for s, p, r in ROWS if s.tokens >= MIN_TOKENS]


def roofline_errors(part: str) -> np.ndarray:
    """|predicted / measured - 1| of forward, full backward and both together, per big row."""
    out = []
    for shape, p, row in BIG:
        if p != part:
            continue
        f, i, w = part_times(shape, part, GPUS["h200"], "bf16")
        out.append([
            f * 1e3 / row.forward_ms - 1,
            (i + w) * 1e3 / row.backward_ms - 1,
            (f + i + w) * 1e3 / (row.forward_ms + row.backward_ms) - 1,
        ])  # fmt: skip
    return np.abs(np.array(out))


def test_the_shipped_table_has_every_shape_of_the_presets():
    assert len(ROWS) == 144 and len(BIG) == 99
    names = {(s.hidden, s.ffn, s.vocab) for s, _, _ in ROWS}
    assert names == {(m.hidden, m.ffn, m.vocab) for m in MODELS.values()}


def test_parameter_counts_equal_the_measured_ones_for_every_row():
    for shape, part, row in ROWS:
        assert shape.part_params(part) == row.params, (shape, part)


def test_roofline_blocks_within_20_percent_of_the_h200(capsys):
    e = roofline_errors("block")
    assert len(e) == 33
    with capsys.disabled():
        print(f"\nblock F: median {np.median(e[:, 0]):.1%}, worst {e[:, 0].max():.1%}; "
              f"B: median {np.median(e[:, 1]):.1%}, worst {e[:, 1].max():.1%}")  # fmt: skip
    assert e[:, 0].max() < 0.20 and e[:, 1].max() < 0.20


def test_roofline_heads_within_35_percent_of_the_h200():
    e = roofline_errors("head")
    assert len(e) == 33 and e[:, 0].max() < 0.35 and e[:, 1].max() < 0.35


def test_roofline_embedding_within_35_percent_of_the_h200():
    """The embedding's backward, and its forward and backward together; its forward alone
    (0.08-0.8 ms) is launch noise in places: gpt2-small at 1024 x 8 takes 0.175 ms where
    gpt2-medium (wider) takes 0.092, which no time that grows with size can both meet."""
    e = roofline_errors("embed")
    assert len(e) == 33 and e[:, 1].max() < 0.35 and e[:, 2].max() < 0.35
    assert np.median(e[:, 0]) < 0.20


def test_block_activation_bytes_within_25_percent_of_saved_bytes():
    errors = [
        abs(part_act_bytes(shape, "block", "bf16") / row.saved_bytes - 1)
        for shape, part, row in BIG
        if part == "block"
    ]
    assert len(errors) == 33 and max(errors) < 0.25


def test_head_and_embedding_bytes_follow_the_measurements_too():
    for shape, part, row in BIG:
        if part != "block":
            assert part_act_bytes(shape, part, "bf16") == pytest.approx(row.saved_bytes, rel=0.1)


def test_chunk_sizes_put_the_embedding_first_and_the_head_last():
    m = model_preset("gpt2-medium", seq=1024, micro_batch=8)
    sizes = chunk_sizes(m, [3] * 8, "bf16")
    block = m.part_params("block")
    assert sizes.params.dtype == np.int64 and int(sizes.params.sum()) == m.params()
    assert sizes.params[0] == 3 * block + m.part_params("embed")
    assert sizes.params[-1] == 3 * block + m.part_params("head")
    assert np.all(sizes.params[1:-1] == 3 * block)
    # the stage memory table's parameter counts (h200_stage_memory.csv)
    assert (sizes.params[0], sizes.params[-1]) == (90300416, 89253888)
    assert sizes.send_bytes[-1] == 0 and np.all(sizes.send_bytes[:-1] == 8 * 1024 * 1024 * 4)
    assert np.all(sizes.w_bytes > 0) and np.all(sizes.act_bytes > sizes.send_bytes)


def test_profile_sizes_take_the_saved_bytes_of_the_rows():
    m = model_preset("llama3-8b", seq=2048, micro_batch=2)
    sizes = profile_chunk_sizes(H200, m, [4] * 8, "bf16")
    rows = {p: H200.row(m, p) for p in ("block", "embed", "head")}
    assert sizes.act_bytes[0] == 4 * rows["block"].saved_bytes + rows["embed"].saved_bytes
    assert sizes.act_bytes[-1] == 4 * rows["block"].saved_bytes + rows["head"].saved_bytes
    assert np.array_equal(sizes.params, chunk_sizes(m, [4] * 8, "bf16").params)


def test_profile_stage_costs_are_exactly_the_sums_of_its_rows():
    m = model_preset("gpt2-medium", seq=1024, micro_batch=8)
    split = np.array([4, 3, 3, 3, 3, 3, 3, 2])
    costs = profile_costs(H200, m, GPUS["h200"], split)
    block, embed, head = (H200.row(m, p) for p in ("block", "embed", "head"))
    for s, n in enumerate(split):
        extra = embed if s == 0 else head if s == len(split) - 1 else None
        for column, got in (("forward_ms", costs.forward), ("backward_ms", costs.backward),
                            ("backward_weight_ms", costs.backward_weight),
                            ("adamw_ms", costs.update)):  # fmt: skip
            want = n * getattr(block, column) + (getattr(extra, column) if extra else 0.0)
            assert got[s] == want / 1e3, (s, column)
    cost_model = build_machine(m, GPUS["h200"], 8, profile="h200",
                               layers_per_stage=list(split)).cost_model()  # fmt: skip
    assert np.array_equal(cost_model.forward, costs.forward)
    assert np.array_equal(cost_model.backward, costs.backward)
    assert np.array_equal(cost_model.weight_grad, costs.backward_weight)


def _faster(hw, k: float):
    return dataclasses.replace(
        hw, peak_tflops=hw.peak_tflops * k, hbm_gbps=hw.hbm_gbps * k, link_gbps=hw.link_gbps * k,
        inter_node_gbps=hw.inter_node_gbps * k, link_latency_us=hw.link_latency_us / k,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["gpt2-medium", "llama3-8b"])
def test_changing_only_the_hardware_scales_every_time_by_its_ratio(name):
    """A GPU k times faster in every rate (launch times aside, which the host sets) takes 1/k
    of every time; the schedule's whole clock follows."""
    fit = dataclasses.replace(H200_FIT, launch_forward_s=0.0, launch_backward_s=0.0,
                              launch_embed_s=0.0, launch_update_s=0.0)  # fmt: skip
    m = model_preset(name, seq=2048, micro_batch=4)
    k = 2.5
    slow = analytic_costs(m, GPUS["h100"], "bf16", even_split(m.layers, 8), fit)
    fast = analytic_costs(m, _faster(GPUS["h100"], k), "bf16", even_split(m.layers, 8), fit)
    for field in ("forward", "backward", "backward_weight", "update", "comm", "allreduce"):
        np.testing.assert_allclose(np.asarray(getattr(fast, field)) * k,
                                   getattr(slow, field), rtol=1e-12)  # fmt: skip
    spans = []
    for c in (slow, fast):
        costs = CostModel.build(8, forward=list(c.forward), backward=list(c.backward),
                                weight_grad=list(c.backward_weight), comm=c.comm)  # fmt: skip
        spans.append(build_timeline("zb-h1", costs, 64).makespan)
    assert spans[0] == pytest.approx(k * spans[1], rel=1e-12)


def test_model_flops_per_token_is_6n_plus_attention():
    m = model_preset("gpt2-medium", seq=1024)
    n = m.layers * m.matmul_params("block") + m.vocab * m.hidden
    assert m.flops_per_token() == pytest.approx(6 * n + 6 * m.layers * m.seq * m.hidden)


def test_even_split_and_layers_per_stage_are_checked():
    assert list(even_split(24, 8)) == [3] * 8
    with pytest.raises(InputError, match="do not split evenly"):
        even_split(24, 7)
    m = model_preset("gpt2-medium")
    with pytest.raises(InputError, match="sum to 23"):
        chunk_sizes(m, [3] * 7 + [2], "bf16")
    with pytest.raises(InputError, match="one count per stage"):
        build_machine(m, GPUS["h200"], 8, layers_per_stage=[12, 12])


def test_a_neutral_weight_grad_gives_the_same_trace_bit_for_bit():
    base = CostModel.build(4, forward=[1, 2, 1, 3], backward=[2, 3, 2, 4])
    given = CostModel.build(4, forward=[1, 2, 1, 3], backward=[2, 3, 2, 4],
                            weight_grad=[1, 1.5, 1, 2])  # fmt: skip
    a, b = build_timeline("zb-h1", base, 16), build_timeline("zb-h1", given, 16)
    assert np.array_equal(a.start, b.start) and np.array_equal(a.end, b.end)
    other = CostModel.build(4, forward=[1, 2, 1, 3], backward=[2, 3, 2, 4],
                            weight_grad=[0.5, 0.5, 0.5, 0.5])  # fmt: skip
    assert not np.array_equal(build_timeline("zb-h1", other, 16).end, a.end)


def _table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.csv"
    path.write_text(text)
    return path


def test_profile_files_that_are_not_profiles_are_refused(tmp_path):
    header = (Path(__file__).parents[1] / "pipebench/hardware/data/h200_layer_costs.csv"
              ).read_text().splitlines()  # fmt: skip
    good = "\n".join(header[:4]) + "\n"
    read_profile(good, "ok")
    for text, message in [
        ("a,b\n1,2\n", "no column"),
        (header[0] + "\n", "no rows"),
        (good.replace(",0.4075,", ",-1,"), "forward_ms must be a number"),
        (good.replace(",0.4075,", ",x,"), "forward_ms must be a number"),
        (good.replace(",block,", ",tail,"), "part 'tail'"),
        (header[0] + "\n" + header[1] + ",9\n", "fields expected"),
    ]:
        with pytest.raises(InputError, match=message):
            read_profile(text, "bad")
    with pytest.raises(InputError, match="cannot read"):
        load_profile(str(tmp_path / "missing.csv"))
    with pytest.raises(InputError, match="no block row"):
        H200.row(model_preset("gpt2-medium", seq=999), "block")


def test_hardware_presets_are_complete_and_unknown_ones_refused():
    for hw in GPUS.values():
        assert min(hw.peak_tflops, hw.hbm_gbps, hw.memory_gb, hw.link_gbps) > 0
    with pytest.raises(InputError, match="did you mean 'h100'"):
        gpu_preset("h10")


def test_hardware_from_its_numbers_or_over_a_preset():
    numbers = {"peak_tflops": 100.0, "hbm_gbps": 1000.0, "memory_gb": 40.0, "link_gbps": 50.0,
               "inter_node_gbps": 10.0}  # fmt: skip
    own = custom_hardware(None, **numbers)
    assert (own.peak_tflops, own.link_latency_us, own.gpus_per_node) == (100.0, 5.0, 8)
    slower = custom_hardware("h100", link_gbps=25.0)
    assert slower == dataclasses.replace(GPUS["h100"], name="h100*", link_gbps=25.0)
    with pytest.raises(InputError, match="missing") as error:
        custom_hardware(None, peak_tflops=1.0, hbm_gbps=1.0, memory_gb=1.0)
    assert error.value.field == "hardware.link_gbps"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_with_a_model_reports_seconds_tokens_and_mfu(capsys):
    args = ["schedule", "1f1b-flush", "-S", "8", "-M", "32", "--model", "gpt2-medium",
            "--hardware", "h200", "--seq", "1024", "--micro-batch", "8", "--json"]  # fmt: skip
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and err == ""
    record = json.loads(out)
    tokens = 32 * 8 * 1024
    assert record["tokens_per_second"] == pytest.approx(tokens / record["makespan"])
    m = model_preset("gpt2-medium", seq=1024, micro_batch=8)
    assert record["mfu"] == pytest.approx(
        record["tokens_per_second"] * m.flops_per_token() / (8 * 989.4e12)
    )
    # the last stage holds GPT-2's vocabulary head: it sets the pace
    assert 0 < record["mfu"] < 0.5 and record["makespan"] > 1.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "gpt2-mediu", "--hardware", "h200"], "--model: unknown model"),
        (["--model", "gpt2-medium", "--hardware", "h300"], "--hardware: unknown hardware"),
        (["--model", "gpt2-medium"], "--hardware: missing"),
        (["--model", "gpt2-medium", "--hardware", "h200", "--forward", "2"], "--forward: comes"),
        (["--model", "gpt2-medium", "--hardware", "h200", "-S", "7"], "do not split evenly"),
        (
            ["--model", "gpt2-medium", "--hardware", "h200", "--layers-per-stage", "1,x"],
            "whole numbers",
        ),
        (
            ["--model", "gpt2-medium", "--hardware", "h200", "--profile", "nope.csv"],
            "--profile: cannot read",
        ),
        (
            ["--model", "gpt2-medium", "--hardware", "h200", "--profile", "h200", "--seq", "999"],
            "--profile: h200 has no block row",
        ),
        (["--seq", "1024"], "--seq: needs --model"),
    ],
)
def test_schedule_model_errors_are_one_line_and_exit_2(capsys, extra, message):
    code, out, err = run_cli(capsys, "schedule", "zb-h1", "-S", "8", "-M", "16", *extra)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert message in err


SCENARIO = """\
name: gpt2m
objective: {{kind: quadratic, dim: 8}}
pipeline:
  stages: 4
{pipeline}
budget: {{microbatches: 64}}
optimizer: {{name: sgd, lr: 0.01}}
schedules: [1f1b-flush, pd]
"""
MODEL = "  model: {preset: gpt2-medium, seq: 1024, micro_batch: 4}\n  hardware: h100\n"


def _scenario(tmp_path: Path, pipeline: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(pipeline=pipeline))
    return path


def test_a_run_with_a_model_is_in_seconds_with_tokens_per_second_and_mfu(tmp_path, capsys):
    path = _scenario(tmp_path, MODEL)
    code, _, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "o"), "--no-plots",
                           "--quiet", "--format", "csv")  # fmt: skip
    assert code == 0, err
    import pandas as pd

    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert list(summary.columns[-4:]) == ["tokens_per_second", "mfu", "peak_memory_gb", "oom"]
    machine = build_machine(model_preset("gpt2-medium", seq=1024, micro_batch=4), GPUS["h100"], 4)
    for _, row in summary.iterrows():
        tps = row["microbatches"] * 4 * 1024 / row["sim_time"]
        assert row["tokens_per_second"] == pytest.approx(tps)
        assert row["mfu"] == pytest.approx(machine.mfu(tps, 4))
    # seconds of the model's clock: 64 micro-batches of 4k tokens on four H100s
    assert 0.05 < summary["sim_time"].max() < 10


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("  model: gpt2-mediu\n  hardware: h100\n", "pipeline.model: unknown model"),
        ("  model: gpt2-medium\n  hardware: h300\n", "pipeline.hardware: unknown hardware"),
        ("  model: gpt2-medium\n", "pipeline.hardware: missing"),
        ("  hardware: h100\n", "pipeline.hardware: needs pipeline.model"),
        (MODEL + "  costs: {forward: 2}\n", "pipeline.costs.forward: comes from"),
        (MODEL + "  layers_per_stage: [6, 6, 6]\n", "pipeline.layers_per_stage: one count"),
        (MODEL + "  layers_per_stage: [6, 6, 6, 5]\n", "pipeline.layers_per_stage: the counts"),
        ("  model: {preset: gpt2-medium, layers: 23}\n  hardware: h100\n", "split evenly"),
        (MODEL + "  profile: missing.csv\n", "pipeline.profile: cannot read"),
        ("  model: {preset: gpt2-medium, heads: 7}\n  hardware: h100\n", "must divide hidden"),
        ("  model: {preset: gpt2-medium, precision: fp8}\n  hardware: h100\n", "precision"),
        ("  model: gpt2-medium\n  hardware: {base: h100, link_gbps: -1}\n", "link_gbps"),
    ],
)
def test_scenario_model_errors_name_the_field_and_exit_2(tmp_path, capsys, pipeline, message):
    path = _scenario(tmp_path, pipeline)
    out_dir = tmp_path / "o"
    code, _, err = run_cli(capsys, "run", str(path), "--out", str(out_dir), "--no-plots")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err and not out_dir.exists()


def test_profile_measures_a_tiny_model_on_the_cpu_and_a_run_reads_it_back(tmp_path, capsys):
    pytest.importorskip("torch")
    csv_path = tmp_path / "tiny.csv"
    code, _, err = run_cli(
        capsys, "profile", "--layers", "2", "--hidden", "32", "--heads", "2", "--ffn", "64",
        "--vocab", "128", "--seq", "16", "--micro-batch", "1,2", "--reps", "2", "--warmup", "1",
        "--device", "cpu", "--out", str(csv_path),
    )  # fmt: skip
    assert code == 0, err
    profile = load_profile(str(csv_path))
    shape = ModelShape(layers=2, hidden=32, heads=2, ffn=64, vocab=128, seq=16, micro_batch=2)
    assert len(profile.rows) == 6
    for part in ("block", "embed", "head"):
        row = profile.row(shape, part)
        assert row.params == shape.part_params(part)
        # each time is written to 6 significant digits, so the difference of two written
        # times can be off from the written difference by the rounding of the larger one
        assert row.backward_weight_ms == pytest.approx(
            max(row.backward_ms - row.backward_input_ms, 0.0), abs=2e-5 * row.backward_ms
        )
    # what autograd saves for a block, counted by the hook, is what sizes.py says within 25%
    assert profile.row(shape, "block").saved_bytes == pytest.approx(
        part_act_bytes(shape, "block", "bf16"), rel=0.25
    )
    pipeline = (
        "  model: {layers: 2, hidden: 32, heads: 2, ffn: 64, vocab: 128, seq: 16, "
        f"micro_batch: 2}}\n  hardware: h200\n  profile: {csv_path.name}\n"
    )
    path = tmp_path / "s.yaml"  # beside the CSV: the profile is found relative to it
    path.write_text(SCENARIO.replace("stages: 4", "stages: 2").format(pipeline=pipeline))
    code, _, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "o"), "--no-plots",
                           "--quiet", "--format", "csv")  # fmt: skip
    assert code == 0, err
    machine = build_machine(shape, GPUS["h200"], 2, profile=str(csv_path),
                            layers_per_stage=[1, 1])  # fmt: skip
    block, embed = profile.row(shape, "block"), profile.row(shape, "embed")
    assert machine.chunks.forward[0] == (block.forward_ms + embed.forward_ms) / 1e3
    assert math.isfinite(sum(machine.cost_model().backward))
