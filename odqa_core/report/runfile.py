"""A run's records saved in the baseline format (all suites in one file), so a run can be
reported or compared later without re-running it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..baseline.store import SCHEMA_VERSION, Record, run_metadata, unpack_vector
from ..errors import OdqaBenchError
from ..io import atomic_write_json

__all__ = ["save_run", "load_run", "run_failures", "baseline_as_records"]


def save_run(path: str | Path, records: list[Record], failed_tests: list[str] | None = None) -> None:
    obj = {"schema_version": SCHEMA_VERSION, "kind": "odqa-run", **run_metadata(),
           "failed_tests": sorted(failed_tests or []),
           "records": [r.to_json() for r in sorted(records, key=lambda r: (r.suite, r.cell, r.metric))]}
    atomic_write_json(path, obj)


def load_run(path: str | Path) -> list[Record]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OdqaBenchError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise OdqaBenchError(f"{path}: malformed JSON at line {exc.lineno}") from None
    if not isinstance(obj, dict) or obj.get("kind") != "odqa-run" or obj.get("schema_version") != SCHEMA_VERSION:
        raise OdqaBenchError(f"{path}: not an odqa-bench run file of schema {SCHEMA_VERSION} (save one with --odqa-save-run)")
    try:
        return [Record.from_json(r) for r in obj["records"]]
    except (KeyError, TypeError) as exc:
        raise OdqaBenchError(f"{path}: malformed run record ({exc})") from None


def run_failures(path: str | Path) -> list[str]:
    """Tests that failed in the saved run (an update from such a run is refused)."""
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    return list(obj.get("failed_tests", []))


def baseline_as_records(obj: dict[str, Any], suite: str) -> list[Record]:
    """The cells of a baseline file as records (to report a baseline against another)."""
    out = []
    for cell, c in obj.get("cells", {}).items():
        for name, m in c["metrics"].items():
            pq = unpack_vector(m["per_query"]).tolist() if "per_query" in m else None
            out.append(Record(suite, cell, name, float(m["value"]), bool(m.get("higher_is_better", True)),
                              m.get("kind", "quality"), pq, None, c.get("dataset", ""), c.get("dataset_sha256", "")))
    return out
