"""The `pipebench` command line: parses, calls `pipebench.api`, renders.

Results go to stdout; anything else (notes, errors) to stderr. Every bad
argument ends in one line on stderr and exit status 2, never a traceback.

No `from __future__ import annotations` here: typer reads every command's
annotations each time it builds the command group (every invocation, twice per
command), and as strings it compiled and evaluated them each time (15 ms of
every command's start); as objects they are made once, at import.
"""

import dataclasses
import gc
import inspect
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

# Commands import what they need (pipebench.api: numba, pandas; rich for their
# output) when they run, so that --help and list start fast.
from pipebench import __version__, interrupts
from pipebench.errors import InputError, ScenarioError, shorten_numbers
from pipebench.outfolder import check_file, check_folder, os_error_text

try:  # typer >= 0.26 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer
    from click.exceptions import ClickException
try:  # typer >= 0.29 coerces every value through a pydantic TypeAdapter
    from typer._coercion import RuntimeParam
except ImportError:  # pragma: no cover - older typer: click's own types
    RuntimeParam = None

EXIT_REGRESSION = 1
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _PlainFlags:
    """Help that shows no value type beside a flag (typer >= 0.26 prints `<bool>` there),
    and a `--help` flag that is False when not given."""

    def get_params(self, ctx: object) -> list:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            plain = _plain_value(param)
            if plain is not None:
                param._runtime_param = plain
        return params

    def get_help_option(self, ctx: object) -> object:
        # typer (0.29) coerces a flag's value through pydantic unless it is a bool: a
        # `--help` left at None would load pydantic in every command (a tenth of a second).
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


def _plain_value(param: object) -> object | None:
    """For a text or path parameter without checks, a coercion that needs no pydantic
    (importing it, a tenth of a second, was a third of `compare`); else None.

    typer's coercion is private: should its shape change, typer's own is kept."""
    try:
        kind = param.type_descriptor
        if RuntimeParam is None or param._runtime_param is not None:
            return None
        info, annotation = kind.parameter_info, kind.annotation
        if typing.get_origin(annotation) is list:
            (annotation,) = typing.get_args(annotation)
        checks = (
            info.exists,
            info.resolve_path,
            info.writable,
            not info.file_okay,
            not info.dir_okay,
        )
        if kind.file_annotation is not None or annotation not in (str, Path) or any(checks):
            return None
        return _PlainValue(info, kind.annotation)
    except (AttributeError, TypeError, ValueError):
        return None


if RuntimeParam is not None:

    @dataclasses.dataclass(frozen=True)
    class _PlainValue(RuntimeParam):
        """A text or path value (or a list of them) as typer's pydantic adapter gives it."""

        def _coerce_value(self, value: object, param: object, ctx: object) -> object:
            item = str if str in (self.annotation, *typing.get_args(self.annotation)) else Path
            return [item(v) for v in value] if isinstance(value, (list, tuple)) else item(value)


class Command(_PlainFlags, typer.core.TyperCommand):
    """Every `pipebench` command."""

    def get_short_help_str(self, limit: int = 45) -> str:
        """The command's first paragraph whole in `pipebench --help`, wrapped, not cut
        at `limit` with '...'."""
        return " ".join((self.help or "").split("\n\n")[0].split())


class Group(_PlainFlags, typer.core.TyperGroup):
    """`pipebench` itself."""


app = typer.Typer(
    cls=Group,
    name="pipebench",
    help="Benchmark pipeline-parallel training schedules on a simulated clock.",
    add_completion=False,
    no_args_is_help=True,
    # Plain help: typer's rich help imports a Markdown parser, a third of `--help`'s time.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"pipebench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Benchmark pipeline-parallel training schedules on a simulated clock."""


def _costs(option: str, text: str) -> float | list[float]:
    """`1.5` or `1,2,1.5` (one per stage) into a number or a list."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(
            option, f"a number or comma-separated numbers (one per stage), got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _straggler(text: str) -> tuple[int, float]:
    stage, _, factor = text.partition(":")
    try:
        return int(stage), float(factor)
    except ValueError:
        raise InputError("straggler", f"STAGE:FACTOR such as 3:1.5, got {text!r}") from None


def _with_option_flags(before: str) -> Callable[[Callable], Callable]:
    """Give a command one flag per schedule option (`timeline.options.OPTIONS`), in front of
    its parameter `before`; the command receives the flags given in `**options`."""

    def decorate(command: Callable) -> Callable:
        from pipebench.timeline.options import COUNT, FLAG, OPTIONS

        flags = []
        for option in OPTIONS.values():
            if not option.flag:
                continue
            names = [f"--{option.spelled}"] if option.spelled else []
            info = typer.Option(*names, help=option.help)
            kind, default = (int if option.kind == COUNT else str) | None, None
            if option.kind == FLAG:  # --recompute alone, no --no-recompute
                info = typer.Option(f"--{option.name}", help=option.help)
                kind, default = bool, False
            flags.append(
                inspect.Parameter(
                    option.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default,
                    annotation=Annotated[kind, info],
                )
            )
        params = list(inspect.signature(command, eval_str=True).parameters.values())
        params = [p for p in params if p.kind != inspect.Parameter.VAR_KEYWORD]
        at = [p.name for p in params].index(before)
        params[at:at] = flags
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return command

    return decorate


@app.command(cls=Command)
@_with_option_flags(before="json_out")
def schedule(
    name: Annotated[str, typer.Argument(help="Schedule name (see `pipebench list`).")],
    stages: Annotated[int, typer.Option("--stages", "-S", help="Pipeline stages S.")],
    microbatches: Annotated[int, typer.Option("--microbatches", "-M", help="Micro-batches M.")],
    forward: Annotated[
        str, typer.Option(help="Forward time: a number, or one per stage (1,1,2,1).")
    ] = "1",
    backward: Annotated[str, typer.Option(help="Backward time: a number or one per stage.")] = "1",
    comm: Annotated[float, typer.Option(help="Link latency between stages.")] = 0.0,
    update: Annotated[float, typer.Option(help="Optimizer step time.")] = 0.0,
    allreduce: Annotated[float, typer.Option(help="LocalSGD averaging time.")] = 0.0,
    jitter: Annotated[
        float, typer.Option(help="Multiply each F/B time by a seeded factor in [1-j, 1+j].")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of jitter and of rpd's draws.")] = 0,
    straggler: Annotated[
        str | None, typer.Option(help="Slow one stage: STAGE:FACTOR, e.g. 3:1.5.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Costs in seconds from this model (gpt2-medium, llama3-8b, ...)."),
    ] = None,
    hardware: Annotated[
        str | None, typer.Option(help="GPU the model runs on (h100, h200, ...); with --model.")
    ] = None,
    seq: Annotated[int | None, typer.Option(help="Sequence length of the model.")] = None,
    micro_batch: Annotated[int | None, typer.Option(help="Sequences per micro-batch.")] = None,
    precision: Annotated[str, typer.Option(help="bf16 (autocast, fp32 weights) or fp32.")] = "bf16",
    profile: Annotated[
        str | None, typer.Option(help="Measured costs: h200 or a CSV of `pipebench profile`.")
    ] = None,
    layers_per_stage: Annotated[
        str | None, typer.Option(help="The model's layers per stage: 3,4,4,...; default even.")
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(help="Optimizer whose state the memory counts (default adamw); with --model."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    png: Annotated[Path | None, typer.Option(help="Also draw the Gantt chart to this PNG.")] = None,
    memory_png: Annotated[
        Path | None,
        typer.Option(help="Also draw the memory of each rank over time to this PNG; with --model."),
    ] = None,
    chrome_trace: Annotated[
        Path | None,
        typer.Option(help="Also write Chrome trace JSON (opens in Perfetto) to this file."),
    ] = None,
    torch_csv: Annotated[
        Path | None,
        typer.Option(help="Also write per-rank actions (0F3 ...) as PyTorch pipelining reads."),
    ] = None,
    **options: object,  # a flag per schedule option: see `_with_option_flags`
) -> None:
    """Simulate one schedule without training: Gantt chart and timeline statistics."""
    from pipebench import api
    from pipebench.export import write_files
    from pipebench.timeline import CostModel
    from pipebench.timeline.options import OPTIONS

    options = {
        name: OPTIONS[name].parse(value) if isinstance(value, str) else value
        for name, value in options.items()
        if value is not None and value is not False  # a flag not given
    }
    _check_exports({"png": png, "memory_png": memory_png, "chrome_trace": chrome_trace,
                    "torch_csv": torch_csv})  # fmt: skip
    typed = {"forward": forward != "1", "backward": backward != "1", "comm": comm != 0.0,
             "update": update != 0.0, "allreduce": allreduce != 0.0}  # fmt: skip
    machine = _machine(
        stages, model, hardware, seq, micro_batch, precision, profile, layers_per_stage, typed
    )
    if machine is None and (optimizer, memory_png) != (None, None):
        raise InputError(
            "optimizer" if optimizer else "memory_png",
            "needs --model (the model whose bytes it counts)",
        )
    slow = None if straggler is None else _straggler(straggler)
    if machine is not None:
        costs = machine.cost_model(jitter=jitter, seed=seed, straggler=slow)
    else:
        costs = CostModel.build(
            stages,
            forward=_costs("forward", forward),
            backward=_costs("backward", backward),
            comm=comm,
            update=update,
            allreduce=allreduce,
            jitter=jitter,
            seed=seed,
            straggler=slow,
        )
    timeline, stats = api.schedule_timeline(name, costs, microbatches, **options)
    memory = None
    if machine is not None:
        memory = api.schedule_memory(
            timeline, machine, optimizer or "adamw", memory_png is not None
        )
    # rpd is not a timeline: its pictures are those of the pd clock it runs on.
    trace = timeline.clock
    exports = {}
    if torch_csv is not None and not timeline.is_timeline:
        raise InputError(
            "torch_csv",
            f"{name} is an iteration plan, not a pipeline order; "
            f"export {trace.schedule} for its clock",
        )
    if torch_csv is not None:
        from pipebench.report.torch_schedule import torch_csv_text

        exports[torch_csv] = torch_csv_text(trace)  # refuses several replicas: before any write
    if chrome_trace is not None:
        from pipebench.report.chrome_trace import chrome_trace_json

        exports[chrome_trace] = chrome_trace_json(trace)
    for path, text in exports.items():
        write_files(path.parent, {path.name: text})
    if png is not None:
        from pipebench.report.plots import gantt_png

        gantt_png(trace, png, unit="cost units" if machine is None else "seconds")
    if memory_png is not None:
        from pipebench.report.memory_plot import memory_png as draw_memory

        title = f"{trace.schedule}: {model} on {machine.hardware.name}, bytes per rank"
        capacity = machine.hardware.memory_gb * 1e9
        draw_memory(memory, trace.ranks, title, memory_png, capacity, unit="seconds")
    speed = {} if machine is None else _speed(machine, stats, trace.replicas)
    if memory is not None:
        speed["peak_memory_bytes"] = [round(float(b)) for b in memory.peak]
    if json_out:
        import json

        record = stats.as_dict() | {"options": api.schedule_options(name, stages, options)}
        print(json.dumps(record | speed, allow_nan=False))
        return
    from rich.console import Console

    from pipebench.report.gantt import gantt_text
    from pipebench.report.stats_view import rank_table, stage_table, summary_table

    out = Console()
    if not timeline.is_timeline:
        out.print(
            f"{name} is not a timeline; its clock is that of {trace.schedule} with S={stages}:",
            style="dim",
        )
    out.print(gantt_text(trace, width=out.width))
    if machine is not None:
        out.print(
            f"{model} on {machine.hardware.name} ({machine.source}), layers per stage "
            f"{','.join(map(str, machine.split))}; clock in seconds: "
            f"{speed['tokens_per_second']:,.0f} tokens/s, MFU {speed['mfu']:.1%}"
        )
    out.print(summary_table(stats))
    out.print(stage_table(stats))
    if stats.ranks != stats.stages or any(stats.rank_peak_pending_w or ()):
        out.print(rank_table(stats))  # chunks share ranks, or W's wait apart from their I
    if memory is not None:
        from pipebench.report.stats_view import memory_table

        out.print(memory_table(memory, machine.hardware.memory_gb * 1e9))


def _machine(
    stages: int,
    model: str | None,
    hardware: str | None,
    seq: int | None,
    micro_batch: int | None,
    precision: str,
    profile: str | None,
    layers_per_stage: str | None,
    typed: dict[str, bool],
):
    """`schedule`'s model on a GPU, or None when --model is not given."""
    from pipebench.hardware.gpus import gpu_preset
    from pipebench.hardware.model import check_shape, model_preset
    from pipebench.hardware.sizes import compute_bytes
    from pipebench.scenario.hardware import build_machine

    given = {"hardware": hardware, "seq": seq, "micro_batch": micro_batch, "profile": profile,
             "layers_per_stage": layers_per_stage,
             "precision": None if precision == "bf16" else precision}  # fmt: skip
    if model is None:
        needs = [k for k, v in given.items() if v is not None]
        if needs:
            raise InputError(needs[0], "needs --model (the model it is about)")
        return None
    clash = [k for k, v in typed.items() if v]
    if clash:
        raise InputError(clash[0], "comes from --model and --hardware; give one or the other")
    if hardware is None:
        raise InputError("hardware", "missing; --model runs on a GPU: give --hardware")
    compute_bytes(precision)
    sizes = {k: v for k, v in (("seq", seq), ("micro_batch", micro_batch)) if v is not None}
    split = None
    if layers_per_stage is not None:
        try:
            split = [int(x) for x in layers_per_stage.split(",")]
        except ValueError:
            raise InputError(
                "layers_per_stage", f"whole numbers separated by commas, got {layers_per_stage!r}"
            ) from None
    shape = model_preset(model, **sizes)
    if any(v < 1 for v in sizes.values()):
        raise InputError(next(k for k, v in sizes.items() if v < 1), "must be >= 1")
    return build_machine(
        check_shape(shape), gpu_preset(hardware), stages, precision, profile, split
    )


def _speed(machine, stats, replicas: int) -> dict[str, float]:
    """Tokens per second of the schedule's clock, and the MFU that makes on its GPUs."""
    tokens_per_second = stats.microbatches * machine.tokens_per_microbatch / stats.makespan
    gpus = len(machine.split) * replicas
    return {"tokens_per_second": tokens_per_second, "mfu": machine.mfu(tokens_per_second, gpus)}


def _check_exports(files: dict[str, Path | None]) -> None:
    """Each export goes to exactly the path given: a file, a PNG's named .png, no path twice."""
    seen: dict[str, str] = {}
    for option, path in files.items():
        if path is None:
            continue
        check_file(path, option)
        if option in ("png", "memory_png") and path.suffix.lower() != ".png":
            raise InputError(option, f"a file name ending in .png, got {str(path)!r}")
        other = seen.setdefault(os.path.realpath(path), option)
        if other != option:
            raise InputError(
                option, f"{str(path)!r} is also given to {_option_name(other)}; one file each"
            )


FORMATS = ("table", "csv", "json", "markdown")
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a scenario field: key.path=value (repeatable).",
    ),
]
FormatOption = Annotated[
    str, typer.Option("--format", help="Summary on stdout: table, csv, json or markdown.")
]
SeedsOption = Annotated[int | None, typer.Option(help="Use seeds 0 .. N-1 instead.")]
WorkersOption = Annotated[
    int | None, typer.Option(help="Runs in parallel (default: the number of cores).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
NoPlotsOption = Annotated[
    bool, typer.Option("--no-plots", help="Write the tables only (`pipebench plot` draws).")
]


def _check_common(fmt: str, seeds: int | None, workers: int | None, **folders: Path | None) -> None:
    """The options `run` and `sweep` share: one error line for the first bad one."""
    if fmt not in FORMATS:
        raise InputError("format", f"one of {', '.join(FORMATS)}, got {fmt!r}")
    if seeds is not None and seeds < 1:
        raise InputError("seeds", f"must be >= 1, got {seeds}")
    if workers is not None and workers < 1:
        raise InputError("workers", f"must be >= 1, got {workers}")
    for option, path in folders.items():
        if path is not None:
            check_folder(path, option)


def _compile_notice(objective_kind: str, quiet: bool) -> None:
    """Say on stderr that the first run after installation compiles (unless --quiet)."""
    from pipebench.engine.compiling import compile_notice

    note = None if quiet else compile_notice(objective_kind)
    if note:
        print(note, file=sys.stderr, flush=True)


@app.command(cls=Command)
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out: Annotated[
        Path | None, typer.Option(help="Results folder (default results/<scenario name>).")
    ] = None,
    fmt: FormatOption = "table",
    overrides: SetOption = None,
    seeds: SeedsOption = None,
    workers: WorkersOption = None,
    quiet: QuietOption = False,
    no_plots: NoPlotsOption = False,
) -> int:
    """Train every schedule x seed x learning rate of a scenario; write and print the results."""
    from pipebench import api
    from pipebench.report.runview import oom_warnings, print_summary, progress_bar

    _check_common(fmt, seeds, workers, out=out)
    with interrupts.deferred():  # Ctrl-C from here on ends in a written results folder
        exp = api.load_experiment(scenario, overrides or [], seeds)
        workers = min(workers or os.cpu_count() or 1, exp.runs)
        _compile_notice(exp.loaded.scenario.objective.kind, quiet)
        with progress_bar(exp, quiet) as (on_prepared, on_done):
            report = api.run_scenario(exp, out, workers, on_prepared, on_done, plots=not no_plots)
        interrupted = report.interrupted or interrupts.noted()
    print_summary(report, fmt)
    if exp.machine is not None:
        hardware = exp.machine.hardware
        for line in oom_warnings(report.summary, hardware.name, hardware.memory_gb):
            print(line, file=sys.stderr)
    if interrupted:
        finished = len(report.summary[report.summary["seed"].notna()])
        print(
            f"pipebench run: interrupted: {finished} of {exp.runs} runs finished, "
            f"written to {report.out_dir}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


@app.command(cls=Command)
def compare(
    results: Annotated[
        list[Path],
        typer.Argument(
            help="A results folder or summary.csv; or two: BASE CANDIDATE.", show_default=False
        ),
    ],
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            metavar="METRIC:THRESHOLD",
            help="With BASE CANDIDATE: exit 1 if METRIC got worse by more than THRESHOLD "
            "(N% or an absolute number), e.g. final_loss:5% (repeatable).",
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="With one RESULTS: the schedule speedups are measured against."),
    ] = None,
    changes_only: Annotated[
        bool,
        typer.Option("--changes-only", help="With BASE CANDIDATE: leave out unchanged runs."),
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or markdown.")] = "table",
) -> int:
    """Schedules side by side (one RESULTS), or a baseline against a candidate (two)."""
    from pipebench import api
    from pipebench.compare import read_summary, side_by_side
    from pipebench.report.compare_view import print_comparison, print_side_by_side

    if fmt not in FORMATS:
        raise InputError("format", f"one of {', '.join(FORMATS)}, got {fmt!r}")
    if len(results) > 2:
        raise InputError(
            "RESULTS", f"one results folder, or two (BASE CANDIDATE); got {len(results)}"
        )
    if len(results) == 1:
        if fail_on or changes_only:
            option = "fail_on" if fail_on else "changes_only"
            raise InputError(option, "needs two results to compare: BASE CANDIDATE")
        print_side_by_side(side_by_side(read_summary(results[0], "RESULTS"), reference), fmt)
        return 0
    if reference is not None:
        raise InputError(
            "reference", "applies to one RESULTS (schedules side by side), not BASE CANDIDATE"
        )
    comparison = api.compare_runs(results[0], results[1], fail_on or [])
    print_comparison(comparison, fmt, changes_only)
    return EXIT_REGRESSION if comparison.failed else 0


@app.command(cls=Command)
def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY.PATH=VALUES",
            help="Sweep a field over values: key.path=v1,v2,... or a range such as "
            "pipeline.stages=2^1..2^7 (repeatable; adds to or replaces the sweep: section).",
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(help="local (a process pool) or dask (default: dask with --scheduler)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (default: the number of cores; not with --scheduler)."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address, tcp://HOST:8786 (default: a LocalCluster)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Results folder (default results/<scenario name>-sweep).")
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Folder of finished cells, reused by later sweeps (default OUT/cells)."),
    ] = None,
    fmt: FormatOption = "table",
    overrides: SetOption = None,
    seeds: SeedsOption = None,
    quiet: QuietOption = False,
    no_plots: NoPlotsOption = False,
) -> int:
    """Run a scenario for every cell of a grid of values; skip cells already in the cache."""
    from pipebench import api
    from pipebench.report.sweep_view import print_sweep, sweep_progress
    from pipebench.sweep.executors import EXECUTORS

    _check_common(fmt, seeds, workers, out=out, cache=cache)
    if executor is None:
        executor = "local" if scheduler is None else "dask"
    if executor not in EXECUTORS:
        raise InputError("executor", f"one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler is not None and executor != "dask":
        raise InputError("scheduler", "a Dask scheduler address needs --executor dask")
    with interrupts.deferred():  # Ctrl-C from here on ends in a written results folder
        plan = api.plan_sweep(scenario, grid or [], overrides or [], seeds)
        workers = workers or os.cpu_count() or 1
        _compile_notice(plan.base.scenario.objective.kind, quiet)
        with sweep_progress(quiet) as (on_start, on_done):
            report = api.sweep(
                plan, out, executor, workers, scheduler, cache, on_start, on_done,
                plots=not no_plots,
            )  # fmt: skip
        interrupted = report.done.interrupted or interrupts.noted()
    print_sweep(report, fmt)
    if interrupted:
        print(
            f"pipebench sweep: interrupted: {report.completed} of {len(plan.cells)} cells "
            f"finished, written to {report.out_dir}; run the same command again to compute "
            "the rest",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


@app.command(cls=Command)
def reproduce(
    name: Annotated[
        str | None, typer.Argument(help="One reproduction (default: all of them).")
    ] = None,
    list_all: Annotated[
        bool, typer.Option("--list", help="List the reproductions with time estimates.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Results folder (default results/reproductions).")
    ] = None,
    workers: WorkersOption = None,
    fmt: FormatOption = "table",
    quiet: QuietOption = False,
    no_plots: NoPlotsOption = False,
) -> None:
    """Run the seed papers' figures from shipped scenarios; compare with the papers' numbers."""
    import pandas as pd

    from pipebench import api
    from pipebench.export import markdown_table, write_data
    from pipebench.report.runview import print_table
    from pipebench.reproduce import REPRODUCTIONS

    if list_all:
        rows = [(r.name, r.paper, r.figure, f"~{r.minutes:g} min") for r in REPRODUCTIONS.values()]
        listing = pd.DataFrame(rows, columns=["reproduction", "paper", "figure", "time"])
        if not write_data(listing, fmt):
            print_table(listing, "reproductions", "time: estimate on 2 cores, numba cache warm")
        return
    from rich.console import Console

    _check_common(fmt, None, workers, out=out)
    names = list(REPRODUCTIONS) if name is None else [name]
    show = sys.stderr.isatty() and not quiet
    err = Console(stderr=True)
    report = api.reproduce(
        names, out, workers or os.cpu_count() or 1, plots=not no_plots,
        on_start=(lambda n: err.print(f"reproducing {n} ...")) if show else None,
    )  # fmt: skip
    if not write_data(report.findings, fmt):
        if fmt == "markdown":
            sys.stdout.write(markdown_table(report.findings))
            return
        times = ", ".join(f"{n} {t:.0f} s" for n, t in report.seconds.items())
        print_table(
            report.findings, "pipebench against the papers", f"{times}; in {report.out_dir}"
        )


@app.command(cls=Command)
def plot(
    results: Annotated[Path, typer.Argument(help="A results folder written by `run`.")],
) -> None:
    """Redraw the pictures of a results folder from its tables."""
    from pipebench import api

    for path in api.plot_results(results):
        print(path)


@app.command(cls=Command)
def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    overrides: SetOption = None,
) -> None:
    """Check a scenario without running it: one line saying what would run, or what is wrong."""
    from pipebench import api

    exp = api.load_experiment(scenario, overrides or [], make=False)
    lrs = sum(len(e.lrs) for e in exp.entries)
    line = (
        f"{scenario}: valid: {_count(len(exp.entries), 'schedule')}, "
        f"{_count(len(exp.seeds), 'seed')}, "
        f"{lrs} schedule x lr pairs = {exp.runs} runs on {exp.description}"
    )
    if exp.loaded.scenario.sweep:
        plan = api.plan_sweep(scenario, [], overrides or [])
        runs = sum(cell.runs for cell in plan.cells)
        line += f"; sweep of {', '.join(plan.keys)}: {_count(len(plan.cells), 'cell')}, {runs} runs"
    print(line)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@app.command(
    cls=Command,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def profile(ctx: typer.Context) -> None:
    """Measure a model's layers with PyTorch on this machine; writes a profile CSV.

    Options (see `pipebench profile --help`): --model or the shape's fields,
    --seq, --micro-batch 1,2,4,8, --precision, --device, --reps, --out FILE.
    Needs the optional extra: pip install 'pipebench[profile]'.
    """
    try:
        from pipebench.hardware import measure
    except ImportError as error:
        raise InputError(
            "profile", f"needs PyTorch ({error}): pip install 'pipebench[profile]'"
        ) from None
    status = measure.main(list(ctx.args), prog="pipebench profile")
    if status:
        raise typer.Exit(status)


@app.command("list", cls=Command)
def list_cmd() -> None:
    """List the schedules, objectives and optimizers with a line each."""
    from pipebench.objectives import OBJECTIVE_KINDS
    from pipebench.optim import OPTIMIZERS, SHARED_DEFAULTS
    from pipebench.timeline import SCHEDULES

    schedules = []
    for entry in SCHEDULES.values():
        kind = "synchronous" if entry.synchronous else "asynchronous"
        # Defaults are plain functions of S, so evaluating them on "S" spells them out.
        options = ", ".join(f"{k}={v}" for k, v in entry.defaults("S").items()) or "none"
        schedules.append((entry.name, [entry.summary, f"{kind}; options: {options}"]))
    _print_listing("schedules (S = stages)", schedules)
    _print_listing("objectives (objective.kind)", [(k, [s]) for k, s in OBJECTIVE_KINDS.items()])
    optimizers = []
    for name, info in OPTIMIZERS.items():
        params = ", ".join(f"{k}={v}" for k, v in info.defaults.items()) or "none"
        optimizers.append((name, [info.summary, f"parameters besides lr: {params}"]))
    _print_listing("optimizers (optimizer.name)", optimizers)
    shared = ", ".join(f"{k}={v}" for k, v in SHARED_DEFAULTS.items())
    _print_listing("every optimizer also takes (lr schedule; delay corrections)", [("", [shared])])


def _print_listing(title: str, rows: list[tuple[str, list[str]]]) -> None:
    """A titled two-column listing, wrapped to the terminal: plain text, because loading
    and rendering rich's tables took half of `pipebench list`'s time."""
    import shutil
    import textwrap

    width = shutil.get_terminal_size().columns
    name_width = max(len(name) for name, _ in rows) + 2
    indent = " " * (2 + name_width)
    print(title)
    for name, lines in rows:
        first = f"  {name:<{name_width}}"
        for line in lines:
            print(
                textwrap.fill(line, max(width, 40), initial_indent=first, subsequent_indent=indent)
            )
            first = indent
    print()


def _option_name(field: str) -> str:
    """How the command line spells a field an `InputError` names."""
    if field == "schedule":
        return "NAME"
    from pipebench.timeline.options import OPTIONS

    option = OPTIONS.get(field)
    if option is not None and option.spelled:
        return "--" + option.spelled
    return field if field.isupper() else "--" + field.replace("_", "-")


def _fail(message: str, status: int = EXIT_BAD_INPUT, longest: int = 1000) -> int:
    # always exactly one line, never a number of hundreds of digits, not a screenful
    line = " ".join(shorten_numbers(message).split())
    if len(line) > longest:
        line = line[: longest - 5] + " ..."
    print(line, file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    if not args:
        args = ["--help"]
    sub = next((a for a in args if not a.startswith("-")), "")
    where = f"pipebench {sub}".strip()
    try:
        result = command.main(args=args, prog_name="pipebench", standalone_mode=False)
    except ScenarioError as error:
        return _fail(f"{where}: {error.where}: {error.field}: {error.message}")
    except InputError as error:
        return _fail(f"{where}: {_option_name(error.field)}: {error.message}")
    except ClickException as error:
        return _fail(f"{where}: {error.format_message()}")
    except interrupts.Abandoned:
        return _fail(
            f"{where}: interrupted twice: the results folder is as it was", EXIT_INTERRUPTED
        )
    except (KeyboardInterrupt, typer.Abort):
        return EXIT_INTERRUPTED
    except OSError as error:  # the environment: a full disk, a read-only folder ...
        return _fail(f"{where}: {os_error_text(error)}")
    except MemoryError:
        return _fail(
            f"{where}: too little memory for this run; make it smaller (fewer or smaller "
            "objectives, fewer micro-batches or recorded points) or free some memory"
        )
    except Exception as error:
        if os.environ.get("PIPEBENCH_DEBUG"):
            raise
        return _fail(
            f"{where}: internal error, a bug in pipebench {__version__}: "
            f"{type(error).__name__}: {error} (please report it; PIPEBENCH_DEBUG=1 shows "
            "the traceback)",
            EXIT_BUG,
            longest=400,
        )
    return result if isinstance(result, int) else 0


def console() -> int:
    """The `pipebench` program: `main`, then the exit status for `sys.exit`.

    The interpreter's exit runs full garbage collections over every object
    the process holds (NumPy's, pydantic's models, ...), about 0.1 s of
    `validate` on two cores, to free memory the ending process gives back
    anyway: frozen, the objects are skipped. Exit handlers, the flushing of
    stdout and stderr and the modules' teardown still run; the commands
    close their own files.
    """
    status = main()
    gc.freeze()
    return status
