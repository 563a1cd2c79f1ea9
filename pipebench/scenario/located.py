"""Where a scenario error is: the file and line of the field at fault, and one message."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from pipebench.errors import ScenarioError
from pipebench.objectives import OBJECTIVE_KINDS
from pipebench.safeyaml import YamlProblem


def line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
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
            line_map(value, (*path, name), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            line_map(item, (*path, i), out)
    return out


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


def pydantic_error(located: Located, data: dict, error: ValidationError) -> ScenarioError:
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


def yaml_error(file: str, text: str, error: yaml.YAMLError) -> tuple[str, str, str]:
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
