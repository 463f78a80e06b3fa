"""The one error type users see: a one-line message naming the file, option or value."""
from __future__ import annotations

import warnings

__all__ = ["OdqaBenchError", "OdqaBenchWarning", "quote_line", "warn"]


class OdqaBenchError(Exception):
    """A user-facing error. The CLI prints it as one line and exits 2; the plugin turns it
    into a usage error. Never raised for programming mistakes."""


def quote_line(line: str, width: int = 80) -> str:
    """A file line as an error message quotes it: its repr, cut to about ``width`` characters."""
    return repr(line if len(line) <= width else line[: width - 3] + "...")


class OdqaBenchWarning(UserWarning):
    """Something a user can act on that does not stop the run; the CLI prints it as one line."""


def warn(message: str) -> None:
    """Issue one :class:`OdqaBenchWarning` (the CLI prints ``odqa-bench: warning: ...``)."""
    warnings.warn(message, OdqaBenchWarning, stacklevel=3)
