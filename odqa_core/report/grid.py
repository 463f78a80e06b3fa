"""The grid's aggregated table: mean ± std over folds per (retriever, model, size, dataset,
metric), from records whose cell ids carry ``fold=N`` — the shape of a model-size × fold × top-k
result grid."""
from __future__ import annotations

import re

import pandas as pd

from ..baseline.store import Record

__all__ = ["grid_frame", "grid_markdown"]

_CELL = re.compile(r"\[(?P<name>[^/\]]+)/(?P<dataset>[^/\]]+)/fold=(?P<fold>\d+)/k=(?P<k>\d+)\]$")


def grid_frame(records: list[Record]) -> pd.DataFrame:
    rows = []
    for r in records:
        m = _CELL.search(r.cell)
        if m is None or r.kind != "quality":
            continue
        rows.append({"suite": r.suite, "retriever": m["name"], "dataset": m["dataset"], "k": int(m["k"]),
                     "fold": int(m["fold"]), "metric": r.metric, "value": r.value})
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
        out.append(f"### {suite} · {dataset} · {metric}@k (mean ± std over folds)\n")
        out.append("| retriever | " + " | ".join(f"k={k}" for k in wide.columns) + " |")
        out.append("|---|" + "---:|" * len(wide.columns))
        for name, row in wide.iterrows():
            out.append(f"| {name} | " + " | ".join(str(v) for v in row.values) + " |")
        out.append("")
    return "\n".join(out)
