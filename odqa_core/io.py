"""Atomic file writes, checksums and input reads: nothing stored is ever half-written, and an
unreadable input is one error line."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import OdqaBenchError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "dumps_stable", "read_input_bytes",
           "read_input_text", "sha256_file", "sha256_bytes"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_stable(obj: Any) -> str:
    """JSON with sorted keys, fixed indent and a trailing newline: human-diffable."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, dumps_stable(obj))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_input_bytes(path: str | os.PathLike[str], expected: str = "a file") -> bytes:
    """An input file's bytes; a missing path or a folder is one error line naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise OdqaBenchError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise OdqaBenchError(f"{path}: is a folder, expected {expected}") from None


def read_input_text(path: str | os.PathLike[str], expected: str = "a file", encoding: str = "utf-8") -> str:
    """An input file's text (:func:`read_input_bytes`); bytes that are not UTF-8 are one error line."""
    try:
        return read_input_bytes(path, expected).decode(encoding)
    except UnicodeDecodeError:
        raise OdqaBenchError(f"{path}: not UTF-8 text") from None
