"""The one exception type for bad user input.

Everything a user can get wrong (a scenario field, a command-line option)
raises `InputError`; the command line turns it into one line on stderr and
exit status 2, never a traceback.
"""


class InputError(ValueError):
    """Bad input: `field` names what was wrong, the message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ScenarioError(InputError):
    """Bad input in a scenario file: `where` is `FILE:LINE` (or `FILE` when the line is unknown)."""

    def __init__(self, where: str, field: str, message: str) -> None:
        super().__init__(field, message)
        self.where = where
