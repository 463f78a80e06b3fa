"""The grid's aggregated table: mean ± std over folds per (retriever, model, size, dataset,
metric), from records whose cell ids carry ``fold=N`` and ``k=K`` — the shape of a model-size ×
fold × top-k result grid (the retrieval grid's ``name/dataset/fold=N/k=K`` and the reader's
``profile/name/dataset/k=K/fold=N`` alike)."""
from __future__ import annotations

import re
import statistics

import pandas as pd

from ..baseline.store import Record

__all__ = ["grid_frame", "grid_markdown", "parse_grid_cell", "per_fold_markdown"]

_PARAMS = re.compile(r"\[([^\]]+)\]$")
_PART = re.compile(r"^(fold|k)=(\d+)$")


def parse_grid_cell(cell: str) -> dict[str, str | int] | None:
    """``{"retriever", "dataset", "fold", "k"}`` of a cell id whose parameters hold ``fold=N``,
    ``k=K`` and at least a name and a dataset (the last other part); None for any other cell."""
    m = _PARAMS.search(cell)
    if m is None:
        return None
    found: dict[str, int] = {}
    rest: list[str] = []
    for part in m.group(1).split("/"):
        p = _PART.match(part)
        if p:
            found[p.group(1)] = int(p.group(2))
        else:
            rest.append(part)
    if set(found) != {"fold", "k"} or len(rest) < 2:
        return None
    return {"retriever": "/".join(rest[:-1]), "dataset": rest[-1], "fold": found["fold"], "k": found["k"]}


def grid_frame(records: list[Record]) -> pd.DataFrame:
    rows = []
    for r in records:
        m = parse_grid_cell(r.cell)
        if m is None or r.kind != "quality":
            continue
        rows.append({"suite": r.suite, **m, "metric": r.metric, "value": r.value})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    agg = (frame.groupby(["suite", "dataset", "retriever", "metric", "k"])["value"]
           .agg(mean="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else 0.0, folds="count").reset_index())
    return agg.sort_values(["suite", "dataset", "metric", "k", "mean"], ascending=[True, True, True, True, False])


def grid_markdown(agg: pd.DataFrame) -> str:
    if agg.empty:
        return ""
    out = []
    # one table per metric family (hit, mrr, ...) with the cut-offs as columns
    agg = agg.assign(metric=agg["metric"].str.replace(r"@\d+$", "", regex=True))
    for (suite, dataset, metric), part in agg.groupby(["suite", "dataset", "metric"], sort=True):
        wide = part.assign(cell=[f"{m:.4f} ± {s:.4f}" for m, s in zip(part["mean"], part["std"])]) \
                   .pivot(index="retriever", columns="k", values="cell").fillna("")
        counts = sorted(set(int(n) for n in part["folds"]))
        folds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        out.append(f"### {suite} · {dataset} · {metric}@k (mean ± std over {folds} fold{'s' if counts[-1] > 1 else ''})\n")
        out.append("| retriever | " + " | ".join(f"k={k}" for k in wide.columns) + " |")
        out.append("|---|" + "---:|" * len(wide.columns))
        for name, row in wide.iterrows():
            out.append(f"| {name} | " + " | ".join(str(v) for v in row.values) + " |")
        out.append("")
    return "\n".join(out)


def per_fold_markdown(records: list[Record]) -> str:
    """One table per (dataset, retriever) of the grid cells: a line per fold, a column per metric
    and k (each metric of the cell at its k), then their mean."""
    rows: dict[tuple[str, str], dict[int, dict[tuple[str, int], float]]] = {}
    for r in records:
        m = parse_grid_cell(r.cell)
        if m is None or r.kind != "quality":
            continue
        key = (str(m["dataset"]), str(m["retriever"]))
        rows.setdefault(key, {}).setdefault(int(m["fold"]), {})[(r.metric, int(m["k"]))] = r.value
    out = []
    for (dataset, retriever), folds in sorted(rows.items()):
        cols = sorted({c for values in folds.values() for c in values}, key=lambda c: (c[1], c[0]))
        out += [f"### {retriever} · {dataset} (per fold)\n",
                "| fold | " + " | ".join(f"{m} k={k}" for m, k in cols) + " |", "|---|" + "---:|" * len(cols)]
        out += [f"| {f} | " + " | ".join(f"{folds[f][c]:.4f}" if c in folds[f] else "" for c in cols) + " |"
                for f in sorted(folds)]
        means = [statistics.fmean([folds[f][c] for f in folds if c in folds[f]]) for c in cols]
        out += ["| mean | " + " | ".join(f"{v:.4f}" for v in means) + " |", ""]
    return "\n".join(out)
