"""Baseline JSON: one file per profile and suite (``baselines/<profile>/<suite>.json``), keys
sorted, floats at 12 significant digits, per-query vectors packed (zlib + base64 of float64),
a schema version, the run's metadata and, per cell, the dataset sha256 and the resolved
settings that shape its numbers (encoder backend, max length, model fingerprint).

A cell's key is its test's node id: the test file's path relative to the rootdir, then the
test name (``benchmarks/test_retrieval.py::test_retrieval[bm25-kiwi/default/k=5]``), so two
``test_x.py`` in different folders never share a baseline. Schema 1 keyed cells by the test
name alone; ``odqa-bench baseline migrate`` rewrites such files.

Records are what a test cell reports: JSON-able dicts shipped from xdist workers unchanged.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from importlib import metadata as _md
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OdqaBenchError
from ..io import atomic_write_text, dumps_stable
from ..machine import cpu_isa, cpu_model

__all__ = ["SCHEMA_VERSION", "Record", "pack_vector", "unpack_vector", "run_metadata", "load_baseline",
           "build_baseline", "merge_cells", "write_baseline", "records_to_cells", "ids_sha256"]

SCHEMA_VERSION = 2
KINDS = ("quality", "speed", "info")


def _num(x: float) -> float:
    """Stable float formatting: 12 significant digits survive every platform's summation order."""
    x = float(x)
    if not np.isfinite(x):
        return x
    return float(f"{x:.12g}")


def pack_vector(values: np.ndarray | list[float]) -> str:
    arr = np.asarray(values, dtype="<f8")
    return base64.b64encode(zlib.compress(arr.tobytes(), 9)).decode("ascii")


def unpack_vector(text: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype="<f8").copy()


def ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


@dataclass
class Record:
    """One metric of one test cell, as recorded by a suite."""

    suite: str
    cell: str
    metric: str
    value: float
    higher_is_better: bool = True
    kind: str = "quality"
    per_query: list[float] | None = None
    query_ids: list[str] | None = None
    dataset: str = ""
    dataset_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Record:
        """A record from :meth:`to_json`; query ids are interned, since hundreds of cells of a
        session repeat the same few thousand."""
        rec = cls(**obj)
        if rec.query_ids is not None:
            rec.query_ids = [sys.intern(str(q)) for q in rec.query_ids]
        return rec


# Information metrics are never compared, so their per-query vectors would only bloat the
# baseline files; the gate reads just these (the gold ranks it prints beside moved queries).
INFO_VECTORS_KEPT = frozenset({"gold_rank"})


def records_to_cells(records: list[Record]) -> dict[str, dict[str, Any]]:
    """Group a suite's records into baseline cells."""
    cells: dict[str, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: (r.cell, r.metric)):
        cell = cells.setdefault(r.cell, {"dataset": r.dataset, "dataset_sha256": r.dataset_sha256, "metrics": {}})
        if r.settings:
            cell.setdefault("settings", {}).update({str(k): str(v) for k, v in r.settings.items()})
        m: dict[str, Any] = {"value": _num(r.value), "higher_is_better": bool(r.higher_is_better), "kind": r.kind}
        if r.per_query is not None and (r.kind != "info" or r.metric in INFO_VECTORS_KEPT):
            m["n"] = len(r.per_query)
            m["per_query"] = pack_vector(r.per_query)
            if r.query_ids is not None:
                m["query_ids_sha256"] = ids_sha256(list(r.query_ids))
        if r.extra:
            m["extra"] = {k: (_num(v) if isinstance(v, float) else v) for k, v in sorted(r.extra.items())}
        cell["metrics"][r.metric] = m
    return cells


def _version(pkg: str) -> str:
    try:
        return _md.version(pkg)
    except Exception:
        return "absent"


def _git_commit() -> dict[str, Any]:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, timeout=5).stdout.strip())
        return {"id": sha, "dirty": dirty}
    except Exception as exc:  # never raise while gathering metadata
        return {"id": "unknown", "error": type(exc).__name__}


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = _dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch else _dt.datetime.now(_dt.UTC)
    return when.replace(microsecond=0).isoformat()


def run_metadata() -> dict[str, Any]:
    """Versions, machine and commit of this run; gathering never raises."""
    from .. import __version__

    return {
        "odqa_bench_version": __version__,
        "created": _created(),
        "commit": _git_commit(),
        "machine": {"cpu": cpu_model(), "isa": cpu_isa(), "cores": os.cpu_count(), "system": platform.system(),
                    "python": platform.python_version()},
        "versions": {p: _version(p) for p in ("numpy", "scipy", "torch", "faiss-cpu", "transformers",
                                                "sentence-transformers", "kiwipiepy", "rank-bm25")},
    }


def _check(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise OdqaBenchError(f"{path}: corrupted baseline ({what}); fix it or restore it from git")


def load_baseline(path: str | Path) -> dict[str, Any] | None:
    """Read and validate a baseline file; None when it does not exist. Never modifies it."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OdqaBenchError(f"{path}: corrupted baseline (malformed JSON at line {exc.lineno}); fix it or restore it from git") from None
    except UnicodeDecodeError:
        raise OdqaBenchError(f"{path}: corrupted baseline (not UTF-8); fix it or restore it from git") from None
    _check(isinstance(obj, dict), path, "top level is not an object")
    ver = obj.get("schema_version")
    if ver == 1:
        raise OdqaBenchError(f"{path}: baseline schema version 1 (cells keyed by test name alone), this odqa-bench "
                             f"reads {SCHEMA_VERSION}; rewrite it with: odqa-bench baseline migrate")
    if ver != SCHEMA_VERSION:
        raise OdqaBenchError(f"{path}: baseline schema version {ver!r}, this odqa-bench reads {SCHEMA_VERSION}; "
                             "regenerate it with --odqa-update-baselines")
    cells = obj.get("cells")
    _check(isinstance(cells, dict), path, "'cells' is not an object")
    for cid, cell in cells.items():
        _check(isinstance(cell, dict) and isinstance(cell.get("metrics"), dict), path, f"cell {cid!r} has no metrics")
        _check(isinstance(cell.get("settings", {}), dict), path, f"cell {cid!r} settings is not an object")
        for name, m in cell["metrics"].items():
            _check(isinstance(m, dict) and isinstance(m.get("value"), (int, float)), path,
                   f"cell {cid!r} metric {name!r} has no numeric value")
            _check(m.get("kind", "quality") in KINDS, path, f"cell {cid!r} metric {name!r} has unknown kind")
            if "per_query" in m:
                try:
                    vec = unpack_vector(m["per_query"])
                except Exception:
                    _check(False, path, f"cell {cid!r} metric {name!r} per-query vector unreadable")
                _check(len(vec) == m.get("n", len(vec)), path, f"cell {cid!r} metric {name!r} per-query length")
    return obj


def merge_cells(old: dict[str, Any] | None, new_cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Cells that ran replace their old entries whole; cells that did not run are kept."""
    cells = dict(old["cells"]) if old else {}
    cells.update(new_cells)
    return cells


def build_baseline(profile: str, suite: str, cells: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "profile": profile, "suite": suite, **run_metadata(), "cells": cells}


def write_baseline(path: str | Path, obj: dict[str, Any]) -> None:
    atomic_write_text(path, dumps_stable(obj))
