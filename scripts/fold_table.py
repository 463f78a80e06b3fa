"""Mean ± std over folds of stored baseline cells, as the markdown tables ``docs/`` shows.

    python scripts/fold_table.py baselines/full/reader.json

    python scripts/fold_table.py --per-fold baselines/full/reader.json

Reads only what the harness's update command wrote: every quality metric of the cells whose ids
carry ``fold=N`` and ``k=K`` (the report's grid table; with ``--per-fold``, one line per fold
instead), plus, for cells with folds but no k (the reader's gold-passage cells), one line per fold
and their mean ± std.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

from odqa_core.baseline.gate import fold_group
from odqa_core.baseline.store import load_baseline
from odqa_core.report.grid import grid_frame, grid_markdown, parse_grid_cell, per_fold_markdown
from odqa_core.report.runfile import baseline_as_records

_FOLD = re.compile(r"fold=(\d+)")


def _no_k_table(records: list) -> str:
    """Per-fold lines of the cells with folds and no k, with their mean ± std."""
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for r in records:
        m = _FOLD.search(r.cell)
        if m is None or r.kind != "quality" or parse_grid_cell(r.cell) is not None:
            continue
        rows.setdefault(fold_group(r.cell), {}).setdefault(int(m.group(1)), {})[r.metric] = r.value
    out = []
    for cell, folds in sorted(rows.items()):
        metrics = sorted({name for values in folds.values() for name in values})
        out += [f"### {cell}\n", "| fold | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
        out += [f"| {f} | " + " | ".join(f"{folds[f].get(m, float('nan')):.4f}" for m in metrics) + " |"
                for f in sorted(folds)]
        stats = []
        for m in metrics:
            vals = [folds[f][m] for f in folds if m in folds[f]]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            stats.append(f"{statistics.fmean(vals):.4f} ± {sd:.4f}")
        out += ["| mean ± std | " + " | ".join(stats) + " |", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-fold", action="store_true", help="the grid cells one line per fold instead of mean ± std")
    ap.add_argument("baselines", nargs="+", type=Path, help="baseline JSON files (baselines/<profile>/<suite>.json)")
    args = ap.parse_args(argv)
    records = []
    for path in args.baselines:
        obj = load_baseline(path)
        if obj is None:
            print(f"fold_table: no baseline at {path}", file=sys.stderr)
            return 2
        records += baseline_as_records(obj, path.stem)
    print(_no_k_table(records))
    print(per_fold_markdown(records) if args.per_fold else grid_markdown(grid_frame(records)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
