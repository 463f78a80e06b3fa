"""The one error type users see: a one-line message naming the file, option or value."""
from __future__ import annotations

__all__ = ["OdqaBenchError"]


class OdqaBenchError(Exception):
    """A user-facing error. The CLI prints it as one line and exits 2; the plugin turns it
    into a usage error. Never raised for programming mistakes."""
