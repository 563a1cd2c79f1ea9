"""YAML read within limits: no file or `--set` value can exhaust memory, time or the stack.

PyYAML expands every alias where it is used and recurses once per level of
nesting, so a few lines can stand for billions of nodes (an alias bomb),
for an endless structure (an alias inside its own anchor), or overflow the
stack (`[[[[...]]]]`). A scenario needs none of that: a handful of levels and
a few anchors. One pass over the parser's events, a loop without recursion,
measures depth and what the aliases would expand to before anything is
built. Files are refused before reading when they are not regular files or
are too large, and after reading when they are not UTF-8 text.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import yaml

MAX_FILE_BYTES = 1 << 20  # the shipped scenarios are 1-2 KB; a sweep list is a few KB
MAX_DEPTH = 32  # a scenario nests 6 levels (schedules.0.optimizer.lr.grid.0)
MAX_ALIAS_NODES = 10_000  # nodes that aliases may produce, in all
MAX_DIGITS = 100  # a plain number longer than this is refused, not parsed


class YamlProblem(Exception):
    """What is wrong with a YAML text, and on which line (1-based; None if not known)."""

    def __init__(self, line: int | None, field: str, message: str) -> None:
        super().__init__(message)
        self.line, self.field, self.message = line, field, message


class Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads `1e-3` as a number (YAML 1.1 wants `1.0e-3`)."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)

# what YAML may read as a number: decimal, hexadecimal, octal, sexagesimal, with exponent
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_LONG_NUMBER = re.compile(r"[-+]?[0-9][0-9a-fA-FxXoObB_.:]*(?:[eE][-+]?[0-9]+)?")


def read_text_file(path: Path) -> str:
    """The text of a scenario file; `YamlProblem` (field `(file)`) when it is not one."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise YamlProblem(None, "(file)", "no such file") from None
    except OSError as error:
        raise YamlProblem(None, "(file)", f"cannot read it: {error.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise YamlProblem(None, "(file)", "is a folder; give a scenario YAML file")
    if not stat.S_ISREG(info.st_mode):
        raise YamlProblem(
            None, "(file)", "is not a regular file (a device, pipe or socket); give a YAML file"
        )
    if info.st_size > MAX_FILE_BYTES:
        raise YamlProblem(None, "(file)", f"{_size(info.st_size)}; {_LIMIT}")
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # it may have grown since stat
    except OSError as error:
        raise YamlProblem(None, "(file)", f"cannot read it: {error.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise YamlProblem(None, "(file)", f"more than {_size(MAX_FILE_BYTES)}; {_LIMIT}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise YamlProblem(
            line, "(file)", f"not a text file: byte {error.start} is not UTF-8; "
            "a scenario is UTF-8 text",
        ) from None  # fmt: skip
    check_text(text)
    return text


_LIMIT = f"a scenario is a YAML text of at most {MAX_FILE_BYTES // 1024} KiB"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def check_text(text: str) -> None:
    """Refuse a text that is too long or holds NUL characters (a binary file)."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlProblem(None, "(file)", f"more than {_size(MAX_FILE_BYTES)}; {_LIMIT}")
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise YamlProblem(line, "(file)", "not a text file: it holds a NUL character")


def check_structure(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, recursive aliases, aliases that expand to
    more than MAX_ALIAS_NODES nodes and numbers longer than MAX_DIGITS digits.

    Walks the parser's events only (no nodes are built); `yaml.YAMLError` for
    text that does not parse is left to the caller, which reports it.
    """
    open_nodes: list[list] = []  # per open collection: [anchor, expanded size]
    sizes: dict[str, int] = {}  # anchor -> expanded size of its node
    produced = 0  # nodes aliases expand to
    for event in yaml.parse(text, Loader=Loader):
        line = event.start_mark.line + 1
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(open_nodes) >= MAX_DEPTH:
                raise YamlProblem(
                    line, "(yaml)", f"nested deeper than {MAX_DEPTH} levels; a scenario needs 6"
                )
            open_nodes.append([event.anchor, 1])
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, size = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            as_number = event.style is None or event.tag in _NUMBER_TAGS  # `!!int "..."` too
            long = as_number and len(event.value) > MAX_DIGITS
            if long and _LONG_NUMBER.fullmatch(event.value):
                digits = sum(c.isdigit() for c in event.value)
                raise YamlProblem(
                    line, "(yaml)", f"a number of {digits} digits; at most {MAX_DIGITS}"
                )
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in open_nodes):
                raise YamlProblem(
                    line, "(yaml)", f"alias *{event.anchor} refers to a node that contains it "
                    "(a recursive alias); a scenario is a tree",
                )  # fmt: skip
            size = sizes.get(event.anchor, 1)  # an undefined alias: the composer says so
            produced += size
            if produced > MAX_ALIAS_NODES:
                raise YamlProblem(
                    line, "(yaml)", f"aliases expand to more than {MAX_ALIAS_NODES} nodes; "
                    "write the values out, or use fewer aliases",
                )  # fmt: skip
        else:
            continue
        if open_nodes:
            open_nodes[-1][1] += size


def load(text: str) -> object:
    """The value of a YAML text, after `check_structure`."""
    check_structure(text)
    return yaml.load(text, Loader=Loader)
