"""The one exception type for bad user input.

Everything a user can get wrong (a scenario field, a command-line option)
raises `InputError`; the command line turns it into one line on stderr and
exit status 2, never a traceback.
"""

import difflib
import math
import re

_LONG_DIGITS = re.compile(r"\d{16,}")


def short_number(n: int | float) -> str:
    """A number as a line can show it: exact (integers up to 15 digits), else 1.23e+456."""
    if isinstance(n, float):  # the shortest text that reads back as n
        text = repr(n)
        return text[:-2] if text.endswith(".0") else text
    if abs(n) < 10**15:
        return str(n)
    exponent = int(math.log10(abs(n)))  # may be one off: corrected on the leading digits
    lead = abs(n) // 10 ** (exponent - 2)
    while not 100 <= lead < 1000:
        exponent += 1 if lead >= 1000 else -1
        lead = abs(n) // 10 ** (exponent - 2)
    return f"{'-' if n < 0 else ''}{lead // 100}.{lead % 100:02d}e+{exponent}"


def _digits(text: str) -> str:
    """A run of digits as 1.23e+456 (read from the text: no int() of thousands of digits)."""
    body = text.lstrip("0") or "0"
    return f"{body[0]}.{body[1:3]}e+{len(body) - 1}" if len(body) > 15 else body


def shorten(value: object, limit: int = 60) -> str:
    """`repr(value)` for an error line: numbers abbreviated, cut to `limit` characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        return short_number(value)
    return clip(repr(value), limit)


def clip(text: str, limit: int = 60) -> str:
    """`text` for an error line: long digit runs as 1.23e+456, cut to `limit` characters."""
    text = shorten_numbers(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten_numbers(message: str) -> str:
    """A message with every run of 16 or more digits written as 1.23e+456."""
    return _LONG_DIGITS.sub(lambda m: _digits(m.group()), message)


def did_you_mean(word: str, choices: list[str]) -> str:
    """' (did you mean X?)' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class InputError(ValueError):
    """Bad input: `field` names what was wrong, the message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple:  # raised in a sweep worker, re-raised in the client
        return (type(self), (self.field, self.message))


class ScenarioError(InputError):
    """Bad input in a scenario file: `where` is `FILE:LINE` (or `FILE` when the line is unknown)."""

    def __init__(self, where: str, field: str, message: str) -> None:
        super().__init__(field, message)
        self.where = where

    def __reduce__(self) -> tuple:
        return (type(self), (self.where, self.field, self.message))
