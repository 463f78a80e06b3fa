"""Baseline update: a run's records merged into ``<base_dir>/<suite>.json``, one file per suite.
The one implementation behind ``pytest --odqa-update-baselines`` and ``odqa-bench baseline update``."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import OdqaBenchError
from .store import Record, build_baseline, load_baseline, merge_cells, records_to_cells, write_baseline

__all__ = ["update_baselines"]


def update_baselines(records: Sequence[Record], base_dir: str | Path, profile: str,
                     failed: Sequence[str] = (), prune: bool = False) -> list[str]:
    """Write the records' suites; cells that ran replace their old entries, the others stay
    (with ``prune``, a written suite keeps only the cells that ran: renamed or removed tests go).
    Refused (nothing written) when any test of the run failed. Returns one line per file."""
    if failed:
        raise OdqaBenchError(f"baselines NOT updated: {len(failed)} test(s) failed or errored (e.g. {failed[0]}); "
                             "fix them first")
    if not records:
        raise OdqaBenchError("baselines NOT updated: the run recorded no metrics")
    by_suite: dict[str, list[Record]] = {}
    for r in records:
        by_suite.setdefault(r.suite, []).append(r)
    base = Path(base_dir)
    planned = []
    for suite, recs in sorted(by_suite.items()):
        path = base / f"{suite}.json"
        fresh = records_to_cells(recs)
        planned.append((path, recs, fresh if prune else merge_cells(load_baseline(path), fresh)))
    lines = []
    for (path, recs, cells), suite in zip(planned, sorted(by_suite)):
        old = set((load_baseline(path) or {}).get("cells", {})) if prune else set()
        dropped = len(old - set(cells))
        write_baseline(path, build_baseline(profile, suite, cells))
        lines.append(f"wrote {path} ({len({r.cell for r in recs})} cells updated, {len(cells)} in all"
                     + (f", {dropped} not run dropped" if dropped else "") + ")")
    return lines
