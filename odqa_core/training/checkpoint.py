"""What every per-fold trainer (DPR, reader) shares: the cache key of a fold's checkpoint, the
``DONE`` marker written last, and a file lock so one process trains while the others wait."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..cache import cache_key
from ..data.folds import Fold
from ..data.types import Dataset

__all__ = ["DONE_FILE", "is_trained", "fold_checkpoint_key", "locked"]

DONE_FILE = "DONE"


def is_trained(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds a finished checkpoint (its ``DONE`` marker exists)."""
    return (Path(folder) / DONE_FILE).is_file()


def fold_checkpoint_key(kind: str, dataset: Dataset, fold: Fold, settings: dict[str, Any], base: str) -> str:
    """Dataset sha256, fold identity (index, count, seed, training queries), settings, base weights."""
    ids = hashlib.sha256("\n".join(fold.train_query_ids).encode("utf-8")).hexdigest()[:16]
    return cache_key(kind, dataset.sha256, fold.index, fold.n_folds, fold.seed, ids, settings, base)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One trainer per checkpoint across processes (pytest-xdist workers wait, then reuse it)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
