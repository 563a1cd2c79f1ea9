"""The one exception type for bad user input.

Everything a user can get wrong (a scenario field, a command-line option)
raises `InputError`; the command line turns it into one line on stderr and
exit status 2, never a traceback.
"""

import difflib


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
