"""The one exception type for mistakes in a user's input."""

from __future__ import annotations


class PyrovaeError(ValueError):
    """A problem with the user's input, stated in one line with how to fix it.

    The command-line interface prints the message of this exception, without a
    traceback, and exits with a non-zero status. Python callers can catch it as a
    ``ValueError``.
    """
