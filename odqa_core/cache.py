"""On-disk cache for expensive artefacts (token lists, embeddings, converted models).

Keys are content hashes (dataset sha256 + model/tokenizer fingerprint + settings), values are
written atomically, so pytest-xdist workers never see a half-written file. A corrupt entry is
dropped and rebuilt, never a crash.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_write_bytes

__all__ = ["cache_dir", "cache_key", "cached_array", "cached_pickle", "list_entries", "clear"]

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$ODQA_CACHE_DIR`` or ``~/.cache/odqa-bench``."""
    root = os.environ.get("ODQA_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "odqa-bench")
    return Path(root)


def cache_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


def _path(kind: str, key: str, suffix: str) -> Path:
    return cache_dir() / kind / f"{key}{suffix}"


def cached_array(kind: str, key: str, build: Callable[[], np.ndarray]) -> np.ndarray:
    """Load the ``.npy`` entry ``kind/key`` or build, store and return it."""
    path = _path(kind, key, ".npy")
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except Exception as exc:  # corrupt or truncated entry: rebuild
            log.warning("cache entry %s is corrupt (%s); rebuilding", path, exc)
    arr = build()
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    return arr


def cached_pickle(kind: str, key: str, build: Callable[[], Any]) -> Any:
    """Like :func:`cached_array` for python objects (token lists)."""
    import pickle

    path = _path(kind, key, ".pkl")
    if path.exists():
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh)
        except Exception as exc:
            log.warning("cache entry %s is corrupt (%s); rebuilding", path, exc)
    obj = build()
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return obj


def list_entries() -> list[tuple[str, int]]:
    """(relative path, size in bytes) of every cache entry."""
    root = cache_dir()
    if not root.exists():
        return []
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            out.append((str(p.relative_to(root)), p.stat().st_size))
    return out


def clear(kind: str | None = None) -> int:
    """Remove all entries (or one kind); returns the number of files removed."""
    root = cache_dir() if kind is None else cache_dir() / kind
    n = sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    shutil.rmtree(root, ignore_errors=True)
    return n
