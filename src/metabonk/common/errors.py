"""User-facing errors: raised for bad input, printed by the CLI as one line with a non-zero exit code."""


class MetabonkError(Exception):
    """A problem the user can fix (bad path, bad option, corrupt file). The CLI prints it without a traceback."""

    exit_code: int = 2
