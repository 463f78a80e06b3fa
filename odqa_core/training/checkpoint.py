"""What every per-fold trainer (DPR, reader) shares: the cache key of a fold's checkpoint, the
``DONE`` marker written last, and a file lock so one process trains while the others wait."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..cache import cache_key
from ..data.folds import Fold
from ..data.types import Dataset
from ..io import atomic_write_bytes

__all__ = ["DONE_FILE", "is_trained", "fold_checkpoint_key", "key_settings", "locked", "save_train_state",
           "load_train_state"]

log = logging.getLogger(__name__)

DONE_FILE = "DONE"


def is_trained(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds a finished checkpoint (its ``DONE`` marker exists)."""
    return (Path(folder) / DONE_FILE).is_file()


def fold_checkpoint_key(kind: str, dataset: Dataset, fold: Fold, settings: dict[str, Any], base: str) -> str:
    """Dataset sha256, fold identity (index, count, seed, training queries), settings, base weights."""
    ids = hashlib.sha256("\n".join(fold.train_query_ids).encode("utf-8")).hexdigest()[:16]
    return cache_key(kind, dataset.sha256, fold.index, fold.n_folds, fold.seed, ids, settings, base)


def key_settings(config: Any, not_in_key: set[str], keyed_when_set: dict[str, Any]) -> dict[str, Any]:
    """A training config's fields that decide its weights: without ``not_in_key``, and without a
    ``keyed_when_set`` field left at its default, so a setting added later keeps the keys of
    checkpoints trained before it existed."""
    return {k: v for k, v in dataclasses.asdict(config).items()
            if k not in not_in_key and not (k in keyed_when_set and v == keyed_when_set[k])}


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


def save_train_state(path: Path, key: str, step: int, model: Any, opt: Any, sched: Any, losses: list[float]) -> None:
    """Save what resuming needs (trainable weights, optimizer, scheduler, RNG, losses), atomically."""
    import torch

    state = {
        "key": key,
        "step": step,
        "trainable": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "losses": list(losses),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_train_state(path: Path, key: str, model: Any, opt: Any, sched: Any) -> tuple[int, list[float]] | None:
    """Restore a saved state; None (start afresh) when it is missing, corrupt or for other settings."""
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("key") != key:
            log.warning("%s belongs to other settings; starting afresh", path)
            return None
        params = dict(model.named_parameters())
        names = {n for n, p in params.items() if p.requires_grad}
        if set(state["trainable"]) != names:
            raise ValueError("trainable parameter names differ")
        with torch.no_grad():
            for n, t in state["trainable"].items():
                params[n].copy_(t)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return int(state["step"]), [float(x) for x in state["losses"]]
    except Exception as exc:  # truncated or foreign file: train from the start
        log.warning("training state %s is unusable (%s); starting afresh", path, exc)
        return None
