"""The one error type users see: a one-line message naming the file, option or value."""
from __future__ import annotations

__all__ = ["OdqaBenchError", "quote_line"]


class OdqaBenchError(Exception):
    """A user-facing error. The CLI prints it as one line and exits 2; the plugin turns it
    into a usage error. Never raised for programming mistakes."""


def quote_line(line: str, width: int = 80) -> str:
    """A file line as an error message quotes it: its repr, cut to about ``width`` characters."""
    return repr(line if len(line) <= width else line[: width - 3] + "...")
