"""The YAML scenario: pydantic models, loading, `--set` overrides, file:line errors.

A scenario is read in three steps, each able to fail with one precise line:
YAML parsing (with the line of the syntax error), the pydantic models (types,
ranges, unknown keys with a did-you-mean), and the cross-field checks that
need the rest of pipebench (schedule options, costs, objective sizes). Every
error names the file, the line where the field is written, and the field's
dotted path (`schedules.2.accumulate`).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipebench import safeyaml
from pipebench.errors import InputError, ScenarioError, clip, did_you_mean, shorten
from pipebench.grid import Axis, check_sweepable, parse_values, sweep_values
from pipebench.objectives import OBJECTIVE_KINDS
from pipebench.optim import HYPER_FIELDS, OPTIMIZERS, SHARED_FIELDS
from pipebench.safeyaml import YamlProblem

PosInt = Annotated[int, Field(ge=1)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**31)]  # seeds feed 32-bit counter hashes
# How minibatches are drawn (objectives/blocklinear.py, SAMPLING_CODES)
Sampling = Literal["shuffle", "uniform", "sequential", "batch"]


def _problem(message: str, sub: str = "") -> PydanticCustomError:
    """A validation error with our own message; `sub` extends the field path it names."""
    return PydanticCustomError("pipebench", "{message}", {"message": message, "sub": sub})


def _unknown(what: str, word: object, choices: list[str], sub: str = "") -> PydanticCustomError:
    """An error for a name that is not one of `choices`."""
    hint = did_you_mean(str(word), choices)
    return _problem(f"unknown {what} {word!r}{hint}; allowed: {', '.join(choices)}", sub)


class _Model(BaseModel):
    """Strict types, frozen, and unknown keys refused with a did-you-mean."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            fields = list(cls.model_fields)
            for key in data:
                if key not in fields:
                    raise _unknown("key", key, fields, sub=str(key))
        return data


# ---------------------------------------------------------------- objective


class SpectrumRange(_Model):
    min: PosFloat
    max: PosFloat


class _ObjectiveBase(_Model):
    variant: str
    examples: PosInt | None = None
    dim: PosInt | None = None
    batch_size: PosInt = 10
    sampling: Sampling = "shuffle"
    l2: NonNegFloat = 0.0
    grad_noise: NonNegFloat = 0.0
    seed: Seed = 0
    path: str | None = None
    target: str | None = None
    standardize: bool = True
    intercept: bool = False

    # Fields that only some variants take; the rest are common to all.
    VARIANT_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {}

    @model_validator(mode="after")
    def _fields_match_variant(self) -> _ObjectiveBase:
        allowed = self.VARIANT_FIELDS[self.variant]
        specific = {f for fields in self.VARIANT_FIELDS.values() for f in fields}
        for name in sorted(self.model_fields_set & specific - set(allowed)):
            users = [v for v, fields in self.VARIANT_FIELDS.items() if name in fields]
            raise _problem(
                f"does not apply to variant {self.variant} (only to: {', '.join(users)})", name
            )
        if self.variant == "csv":
            for name in ("path", "target"):
                if getattr(self, name) is None:
                    raise _problem("variant csv needs this field", name)
        return self


_CSV_FIELDS = ("path", "target", "standardize", "intercept")


class QuadraticSpec(_ObjectiveBase):
    """Least squares f(w) = 1/(2n) |Xw - y|^2 (+ l2/2 |w|^2)."""

    kind: Literal["quadratic"]
    variant: Literal["random", "tridiagonal", "diagonal", "csv"] = "random"
    label_noise: NonNegFloat = 0.0
    mu: NonNegFloat = 0.01
    spectrum: list[PosFloat] | SpectrumRange | None = None

    VARIANT_FIELDS = {
        "random": ("examples", "dim", "label_noise", "batch_size", "sampling"),
        "tridiagonal": ("examples", "dim", "mu", "label_noise", "batch_size", "sampling"),
        "diagonal": ("dim", "spectrum"),
        "csv": (*_CSV_FIELDS, "batch_size", "sampling"),
    }


class LogisticSpec(_ObjectiveBase):
    """Logistic regression, labels in {0, 1}, with an l2 term."""

    kind: Literal["logistic"]
    variant: Literal["synthetic", "csv"] = "synthetic"
    l2: NonNegFloat = 1e-4

    VARIANT_FIELDS = {
        "synthetic": ("examples", "dim", "batch_size", "sampling"),
        "csv": (*_CSV_FIELDS, "batch_size", "sampling"),
    }


class MlpSpec(_Model):
    """A residual MLP, one block per stage, learning from a teacher of the same shape."""

    kind: Literal["mlp"]
    task: Literal["regression", "classification"] = "regression"
    width: PosInt = 64
    activation: Literal["relu", "tanh", "gelu"] = "gelu"
    inputs: PosInt = 16
    outputs: PosInt = 4
    classes: Annotated[int, Field(ge=2)] = 10
    examples: PosInt = 1024
    batch_size: PosInt = 16
    sampling: Sampling = "shuffle"
    label_noise: NonNegFloat = 0.0
    seed: Seed = 0

    @model_validator(mode="after")
    def _fields_match_task(self) -> MlpSpec:
        wrong = {"regression": "classes", "classification": "outputs"}[self.task]
        if wrong in self.model_fields_set:
            raise _problem(f"does not apply to task {self.task}", wrong)
        if self.task == "classification" and "label_noise" in self.model_fields_set:
            raise _problem("applies to task regression only", "label_noise")
        return self


class CharlmSpec(_Model):
    """A character-level transformer language model; see objectives/charlm_objective.py."""

    kind: Literal["charlm"]
    corpus: str = "shakespeare"  # or "markov", or a UTF-8 text file
    layers: PosInt | None = None  # default: one block per middle stage (at least 1)
    width: PosInt = 64
    heads: PosInt = 4
    context: PosInt = 32
    batch_size: PosInt = 16
    validation: Annotated[float, Field(gt=0, lt=1)] = 0.1
    eval_windows: PosInt = 64
    sampling: Sampling = "uniform"
    symbols: Annotated[int, Field(ge=2, le=62)] = 16
    length: Annotated[int, Field(ge=1000)] = 200_000
    seed: Seed = 0

    @model_validator(mode="after")
    def _markov_fields(self) -> CharlmSpec:
        for name in ("symbols", "length"):
            if name in self.model_fields_set and self.corpus != "markov":
                raise _problem("applies to corpus markov only", name)
        return self

    @property
    def path(self) -> str | None:
        """The corpus file, when it is one (what the scenario hash reads)."""
        return None if self.corpus in ("shakespeare", "markov") else self.corpus


ObjectiveSpec = Annotated[
    QuadraticSpec | LogisticSpec | MlpSpec | CharlmSpec, Field(discriminator="kind")
]


# ---------------------------------------------------------------- pipeline, budget


class Straggler(_Model):
    stage: Annotated[int, Field(ge=0)]
    factor: Annotated[float, Field(ge=1, allow_inf_nan=False)]


class CostsSpec(_Model):
    forward: PosFloat | list[PosFloat] = 1.0
    backward: PosFloat | list[PosFloat] = 1.0
    comm: NonNegFloat = 0.0
    update: NonNegFloat = 0.0
    allreduce: NonNegFloat = 0.0
    jitter: Annotated[float, Field(ge=0, lt=1)] = 0.0
    seed: Seed = 0
    straggler: Straggler | None = None


class PipelineSpec(_Model):
    stages: PosInt
    costs: CostsSpec = CostsSpec()


class BudgetSpec(_Model):
    """Exactly one of: simulated time, micro-batches, or block updates."""

    time: PosFloat | None = None
    microbatches: PosInt | None = None
    updates: PosInt | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BudgetSpec:
        given = [k for k in ("time", "microbatches", "updates") if getattr(self, k) is not None]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise _problem(f"give exactly one of time, microbatches, updates (got {got})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("time", "microbatches", "updates") if getattr(self, k) is not None)


class RecordSpec(_Model):
    points: Annotated[int, Field(ge=1, le=1_000_000)] = 100


# ---------------------------------------------------------------- optimizer


LrValue = Annotated[float, Field(gt=0, allow_inf_nan=False)]
LrList = Annotated[list[LrValue], Field(min_length=1)]


class LrGrid(_Model):
    grid: LrValue | LrList | str
    select: Literal["final", "best", "auc"] = "final"


LrSpec = LrValue | LrList | str | LrGrid


def lr_values(spec: LrSpec) -> list[float]:
    """The learning rates a spec stands for; ValueError says what is allowed."""
    values = spec.grid if isinstance(spec, LrGrid) else spec
    given = parse_values(values) if isinstance(values, str) else values
    try:
        out = [float(v) for v in (given if isinstance(given, list) else [given])]
    except OverflowError:
        raise ValueError(f"learning rates must be finite, got {shorten(values)}") from None
    if any(not 0 < v < math.inf for v in out):
        raise ValueError(f"learning rates must be finite and > 0, got {shorten(values)}")
    if len(set(out)) != len(out):
        raise ValueError(f"learning rates repeat in {shorten(values)}")
    return out


def _check_lr(lr: LrSpec | None) -> LrSpec | None:
    if lr is not None:
        try:
            lr_values(lr)
        except ValueError as error:
            raise _problem(str(error)) from None
    return lr


def lr_select(spec: LrSpec) -> str:
    return spec.select if isinstance(spec, LrGrid) else "final"


class OptimizerSpec(_Model):
    name: str
    lr: LrSpec | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    nesterov: bool | None = None
    beta1: Annotated[float, Field(ge=0, lt=1)] | None = None
    beta2: Annotated[float, Field(ge=0, lt=1)] | None = None
    eps: PosFloat | None = None
    weight_decay: NonNegFloat | None = None
    ns_steps: Annotated[int, Field(ge=1, le=20)] | None = None
    adam_lr: PosFloat | None = None
    # for every optimizer: lr warm-up and cosine decay over a stage's steps; delay correction
    warmup: Annotated[int, Field(ge=0)] = 0
    cosine: bool = False
    ef: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in OPTIMIZERS:
            raise _unknown("optimizer", name, list(OPTIMIZERS))
        return name

    @field_validator("lr")
    @classmethod
    def _parsable(cls, lr: LrSpec | None) -> LrSpec | None:
        return _check_lr(lr)

    @model_validator(mode="after")
    def _params_apply(self) -> OptimizerSpec:
        takes = OPTIMIZERS[self.name].defaults
        for key in HYPER_FIELDS[1:]:  # all but lr
            if key in SHARED_FIELDS:
                continue
            if getattr(self, key) is not None and key not in takes:
                users = [n for n, o in OPTIMIZERS.items() if key in o.defaults]
                raise _problem(f"does not apply to {self.name} (only to: {', '.join(users)})", key)
        return self

    def params(self) -> dict[str, float | bool]:
        """The optimizer's hyper-parameters besides lr, defaults filled in."""
        defaults = OPTIMIZERS[self.name].defaults
        own = {k: v if getattr(self, k) is None else getattr(self, k) for k, v in defaults.items()}
        return own | {k: getattr(self, k) for k in SHARED_FIELDS}


def shared_optimizer_defaults() -> dict[str, object]:
    """The fields every optimizer takes (`optim.SHARED_FIELDS`) with their declared defaults."""
    return {k: OptimizerSpec.model_fields[k].default for k in SHARED_FIELDS}


# ---------------------------------------------------------------- schedules, scenario

SCHEDULE_OPTIONS = (
    "accumulate",
    "replicas",
    "local_steps",
    "delta",
    "delays",
    "recompute",
    "inflight",
    "sampling",
)


class ScheduleSpec(_Model):
    name: str
    label: str | None = None
    optimizer: OptimizerSpec | None = None
    lr: LrSpec | None = None
    accumulate: PosInt | None = None
    replicas: PosInt | None = None
    local_steps: PosInt | None = None
    delta: Annotated[int, Field(ge=0)] | Literal["auto"] | None = None
    delays: str | None = None
    recompute: bool | None = None
    inflight: str | None = None
    sampling: str | None = None  # rpd: how an iteration draws its batch

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from pipebench.timeline import SCHEDULES

        if name not in SCHEDULES:
            raise _unknown("schedule", name, list(SCHEDULES))
        return name

    @field_validator("lr")
    @classmethod
    def _parsable(cls, lr: LrSpec | None) -> LrSpec | None:
        return _check_lr(lr)

    def options(self) -> dict[str, object]:
        """The schedule options given (those of `pipebench schedule`)."""
        return {k: getattr(self, k) for k in SCHEDULE_OPTIONS if getattr(self, k) is not None}


class Scenario(_Model):
    name: Annotated[str, Field(min_length=1)]
    seeds: Annotated[list[Seed], Field(min_length=1)] | None = None
    seed: Seed | None = None
    objective: ObjectiveSpec
    pipeline: PipelineSpec
    budget: BudgetSpec
    record: RecordSpec = RecordSpec()
    optimizer: OptimizerSpec
    target_loss: Annotated[float, Field(allow_inf_nan=False)] | None = None
    schedules: Annotated[list[ScheduleSpec], Field(min_length=1)]
    # what `pipebench sweep` varies: key path -> values (a list or a range string)
    sweep: dict[str, list[Any] | str | int | float | bool] | None = None

    @field_validator("schedules", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("objective", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> Any:
        if isinstance(value, dict):
            kind = value.get("kind")
            if kind is None:
                raise _problem(f"missing; one of {', '.join(OBJECTIVE_KINDS)}", "kind")
            if kind not in OBJECTIVE_KINDS:
                raise _unknown("objective kind", kind, list(OBJECTIVE_KINDS), sub="kind")
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise _problem(f"seeds repeat: {seeds}")
        return seeds

    @field_validator("sweep")
    @classmethod
    def _sweepable(cls, sweep: dict | None) -> dict | None:
        for key, values in (sweep or {}).items():
            try:
                check_sweepable(key)
                sweep_values(values)
            except ValueError as error:
                raise _problem(str(error), key) from None
        return sweep

    @model_validator(mode="after")
    def _whole(self) -> Scenario:
        if self.seeds is not None and self.seed is not None:
            raise _problem("give seeds or seed, not both", "seed")
        if self.optimizer.lr is None:
            raise _problem("missing; give a learning rate or a grid", "optimizer.lr")
        labels = [entry_label(e, self.schedules) for e in self.schedules]
        for i, label in enumerate(labels):
            if labels.index(label) != i:
                raise _problem(
                    f"label {label!r} is used twice; give each entry its own label",
                    f"schedules.{i}.label",
                )
        return self

    @property
    def seed_list(self) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        return [0 if self.seed is None else self.seed]

    @property
    def sweep_axes(self) -> list[Axis]:
        """The `sweep:` section as axes, in the order written."""
        return [Axis(key, tuple(sweep_values(v))) for key, v in (self.sweep or {}).items()]


def entry_label(entry: ScheduleSpec, entries: list[ScheduleSpec]) -> str:
    """The label of a schedule entry: given, else its name, else name plus its options."""
    if entry.label is not None:
        return entry.label
    if sum(e.name == entry.name for e in entries) == 1:
        return entry.name
    return " ".join([entry.name, *(f"{k}={v}" for k, v in entry.options().items())])


# ---------------------------------------------------------------- loading


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Dotted path -> 1-based line of every key and item; refuses duplicate keys."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key, value in node.value:
            name = key.value
            if name in seen:
                raise YamlProblem(key.start_mark.line + 1, ".".join(map(str, (*path, name))),
                                   "duplicate key")  # fmt: skip
            seen.add(name)
            out[(*path, name)] = key.start_mark.line + 1
            _line_map(value, (*path, name), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _line_map(item, (*path, i), out)
    return out


def parse_override(text: str) -> tuple[tuple, object]:
    """`key.path=value` into a path (list indices as ints) and a YAML-typed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError("set", f"expected key.path=value, got {shorten(text)}")
    try:
        value = safeyaml.load(raw) if raw.strip() else ""
    except safeyaml.YamlProblem as problem:
        raise InputError("set", f"{clip(text)}: {problem.message}") from None
    except yaml.YAMLError:
        value = raw
    return _key_path(key, text), value


def _key_path(key: str, text: str) -> tuple:
    """`schedules.2.accumulate` as ('schedules', 2, 'accumulate'); ASCII digits are indices."""
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise InputError("set", f"{clip(text)}: empty part in the key path; write it as a.b.0.c")
    return tuple(int(p) if p.isascii() and p.isdigit() else p for p in parts)


def _apply_override(data: dict, path: tuple, value: object, text: str) -> None:
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise InputError("set", f"{clip(text)}: no item {part} in a list of {len(node)}")
            node = node[part]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise InputError(
                "set", f"{clip(text)}: {'.'.join(map(str, path[: depth + 1]))} is a value"
            )
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise InputError("set", f"{clip(text)}: no item {last} in a list of {len(node)}")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise InputError("set", f"{clip(text)}: {'.'.join(map(str, path[:-1]))} is a value")


class Located:
    """Turns a field path into `FILE:LINE` (the line of the key in the file, when known)."""

    def __init__(self, file: str, lines: dict[tuple, int], overridden: dict[tuple, str]) -> None:
        # overridden: path -> where its value came from ("from --set", "swept")
        self.file, self.lines, self.overridden = file, lines, overridden

    def error(self, path: tuple, message: str) -> ScenarioError:
        field = ".".join(map(str, path)) or "(top level)"
        for key, origin in reversed(self.overridden.items()):  # the last one set wins
            if path[: len(key)] == key:
                return ScenarioError(self.file, f"{field} ({origin})", message)
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return ScenarioError(f"{self.file}:{self.lines[path[:n]]}", field, message)
        return ScenarioError(self.file, field, message)


def _pydantic_error(located: Located, data: dict, error: ValidationError) -> ScenarioError:
    """The first validation error as one line, with the path as written in the file."""
    first = error.errors()[0]
    loc = list(first["loc"])
    # A discriminated union inserts the tag ('objective', 'quadratic', ...): drop it.
    if len(loc) >= 2 and loc[0] == "objective" and loc[1] in OBJECTIVE_KINDS:
        del loc[1]
    # Unions of types insert the type's name ('lr', 'float', ...): keep only written keys.
    path: list = []
    node: Any = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        elif not (isinstance(node, dict) and first["type"] == "missing"):
            continue
        path.append(part)
    ctx = first.get("ctx") or {}
    sub = ctx.get("sub", "")
    if sub and path == ["sweep"]:
        path.append(sub)  # the keys of `sweep:` are dotted paths themselves
    elif sub:
        path.extend(int(p) if p.isdigit() else p for p in sub.split("."))
    message = first["msg"]
    if first["type"] == "missing" and not message.startswith("missing"):
        message = "missing; this field is required"
    if "input" in first and first["type"] not in ("missing", "pipebench"):
        shown = repr(first["input"])
        message += f" (got {shown if len(shown) < 60 else shown[:57] + '...'})"
    return located.error(tuple(path), message)


def _yaml_error(file: str, text: str, error: yaml.YAMLError) -> tuple[str, str, str]:
    """(where, field, message) of a YAML syntax error, with the line it is on."""
    mark = getattr(error, "problem_mark", None)
    line = None if mark is None else mark.line + 1
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text.count("\n", 0, error.position) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        problem = f"character U+{code:04X} is not allowed in YAML (only printable characters are)"
    else:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context, opened = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and opened is not None:
        problem += f" ({context} opened on line {opened.line + 1})"
    return (file if line is None else f"{file}:{line}"), "(yaml)", f"not valid YAML: {problem}"


def load_scenario(
    path: str | Path,
    overrides: list[str] | tuple = (),
    swept: tuple[tuple[str, object], ...] = (),
    text: str | None = None,
) -> LoadedScenario:
    """Read, override and validate a scenario file; raises `ScenarioError` or `InputError`.

    `overrides` are `--set key.path=value` strings; `swept` the (key path,
    value) pairs of one sweep cell, applied after them. With `text`, the
    file is not read (a sweep worker gets the text; `path` still names it
    and locates relative data files).
    """
    file = str(path)
    try:
        if text is None:
            text = safeyaml.read_text_file(Path(path))
        else:
            safeyaml.check_text(text)
        safeyaml.check_structure(text)
        node = yaml.compose(text, Loader=safeyaml.Loader)
        lines = _line_map(node) if node is not None else {}
        data = yaml.load(text, Loader=safeyaml.Loader)
    except YamlProblem as problem:
        where = file if problem.line is None else f"{file}:{problem.line}"
        raise ScenarioError(where, problem.field, problem.message) from None
    except yaml.YAMLError as error:
        raise ScenarioError(*_yaml_error(file, text, error)) from None
    if not isinstance(data, dict):
        raise ScenarioError(file, "(top level)", "a scenario is a mapping of keys to values")
    if isinstance(data.get("schedules"), list):  # `- pd` is `- {name: pd}`, also for --set
        data["schedules"] = [{"name": v} if isinstance(v, str) else v for v in data["schedules"]]
    parsed = [parse_override(o) for o in overrides]
    for (key, value), raw in zip(parsed, overrides, strict=True):
        _apply_override(data, key, value, raw)
    origins = {key: "from --set" for key, _ in parsed}
    for name, value in swept:
        key = _key_path(name, f"{name}={value}")
        _apply_override(data, key, value, f"{name}={value}")
        origins[key] = "swept"
    if swept:
        data.pop("sweep", None)  # a cell is an ordinary scenario
    located = Located(file, lines, origins)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise _pydantic_error(located, data, error) from None
    return LoadedScenario(scenario, Path(path), text, list(overrides), located)


class LoadedScenario:
    """A validated scenario with where it came from (for errors, copies and the hash)."""

    def __init__(
        self, scenario: Scenario, path: Path, text: str, overrides: list[str], located: Located
    ) -> None:
        self.scenario = scenario
        self.path = path
        self.text = text
        self.overrides = overrides
        self.located = located

    def error(self, path: tuple, message: str) -> ScenarioError:
        return self.located.error(path, message)

    def data_file(self) -> Path | None:
        """The file the objective reads (a CSV), resolved against the scenario's folder."""
        given = getattr(self.scenario.objective, "path", None)
        if given is None:
            return None
        p = Path(given).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def content_hash(self) -> str:
        """A hash of everything that determines the results of one seed.

        Seeds are left out so that adding a seed does not make earlier rows
        incomparable; a data file enters by its content, not its name. Fields
        left at their defaults are left out too, so a field added to the
        format later does not change the hash of files that do not use it.
        """
        record = self.scenario.model_dump(
            mode="json", exclude={"seeds", "seed", "sweep"}, exclude_defaults=True
        )
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
        digest.update(self.data_digest())
        return digest.hexdigest()[:16]

    def data_digest(self) -> bytes:
        """The SHA-256 of the objective's data file (empty when it reads none)."""
        data = self.data_file()
        if data is not None and data.is_file():
            return hashlib.sha256(data.read_bytes()).digest()
        return b""

    def resolved(self, seeds: list[int], defaults: bool = True) -> dict:
        """The scenario as a sweep cell runs it: with `seeds`, without its `sweep:` section.

        With `defaults`, every field is spelt out (for the cache key); without,
        fields at their defaults are left out (a file that loads again).
        """
        record = self.scenario.model_dump(
            mode="json",
            exclude={"seeds", "seed", "sweep"},
            exclude_none=True,
            exclude_defaults=not defaults,
        )
        return {"name": record.pop("name"), "seeds": seeds, **record}
