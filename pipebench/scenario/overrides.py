"""`--set key.path=value` overrides, and the key paths they (and sweep cells) name."""

from __future__ import annotations

from typing import Any

import yaml

from pipebench import safeyaml
from pipebench.errors import InputError, clip, shorten


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
    return key_path(key, text), value


def key_path(key: str, text: str) -> tuple:
    """`schedules.2.accumulate` as ('schedules', 2, 'accumulate'); ASCII digits are indices."""
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise InputError("set", f"{clip(text)}: empty part in the key path; write it as a.b.0.c")
    return tuple(int(p) if p.isascii() and p.isdigit() else p for p in parts)


def apply_override(data: dict, path: tuple, value: object, text: str) -> None:
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
