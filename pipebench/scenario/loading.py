"""Loading a scenario file: parse, override, validate; and what a loaded one answers."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from pipebench import safeyaml
from pipebench.errors import ScenarioError
from pipebench.safeyaml import YamlProblem
from pipebench.scenario.located import Located, line_map, pydantic_error, yaml_error
from pipebench.scenario.model import Scenario
from pipebench.scenario.overrides import apply_override, key_path, parse_override


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
        loader = safeyaml.Loader(text)  # one parse: the nodes give the lines, then the values
        try:
            node = loader.get_single_node()
            lines = line_map(node) if node is not None else {}
            data = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except YamlProblem as problem:
        where = file if problem.line is None else f"{file}:{problem.line}"
        raise ScenarioError(where, problem.field, problem.message) from None
    except yaml.YAMLError as error:
        raise ScenarioError(*yaml_error(file, text, error)) from None
    if not isinstance(data, dict):
        raise ScenarioError(file, "(top level)", "a scenario is a mapping of keys to values")
    if isinstance(data.get("schedules"), list):  # `- pd` is `- {name: pd}`, also for --set
        data["schedules"] = [{"name": v} if isinstance(v, str) else v for v in data["schedules"]]
    parsed = [parse_override(o) for o in overrides]
    for (key, value), raw in zip(parsed, overrides, strict=True):
        apply_override(data, key, value, raw)
    origins = {key: "from --set" for key, _ in parsed}
    for name, value in swept:
        key = key_path(name, f"{name}={value}")
        apply_override(data, key, value, f"{name}={value}")
        origins[key] = "swept"
    if swept:
        data.pop("sweep", None)  # a cell is an ordinary scenario
    located = Located(file, lines, origins)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise pydantic_error(located, data, error) from None
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
        import hashlib  # here, as json: `validate` hashes nothing (json is not loaded)
        import json

        record = self.scenario.model_dump(
            mode="json", exclude={"seeds", "seed", "sweep"}, exclude_defaults=True
        )
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
        digest.update(self.data_digest())
        profile = self.profile_file()
        if profile is not None and profile.is_file():  # measured costs enter by content too
            digest.update(hashlib.sha256(profile.read_bytes()).digest())
        return digest.hexdigest()[:16]

    def profile_file(self) -> Path | None:
        """The measured profile the costs come from, if a file (not a built-in one)."""
        from pipebench.hardware.profile import BUILTIN

        given = self.scenario.pipeline.profile
        if given is None or given in BUILTIN:
            return None
        p = Path(given).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def data_digest(self) -> bytes:
        """The SHA-256 of the objective's data file (empty when it reads none)."""
        import hashlib

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
