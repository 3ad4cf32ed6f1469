"""The one error a command turns into one line and exit code 2.

Library code raises a subclass of :class:`CaptionError` for bad input (a
missing or damaged file, a setting that does not fit, an unreadable photo
folder): the message says what is wrong and what to do next. The
``caption`` command prints it as ``caption COMMAND: error: MESSAGE`` and
exits with 2; anything else is a bug and keeps its traceback.
"""

__all__ = ["CaptionError", "UsageError"]


class CaptionError(Exception):
    """Bad input, explained in one line; a command exits with code 2."""


class UsageError(CaptionError):
    """Bad command-line input (an option out of range, a missing file)."""
