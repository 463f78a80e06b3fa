"""The conformal suite's fold table: per (method, retriever, dataset, alpha), coverage and set size
over the calibration folds (mean ± std, the worst fold and how far it falls from 1 - alpha), from
rows a suite computes or from records whose cell ids carry ``alpha=A/cal=F``."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..baseline.store import Record
from ..errors import OdqaBenchError
from ..io import atomic_write_text

__all__ = ["FoldRow", "fold_frame", "rows_from_records", "summary_frame", "tables_markdown", "write_tables"]

METHODS = ("rank", "score", "answer")
_CELL = re.compile(r"^(?P<test>[^\[]+)\[(?P<name>[^/\]]+)/(?P<dataset>[^/\]]+)/alpha=(?P<alpha>[0-9.]+)/cal=(?P<cal>\d+)\]$")
# metric names per method: (coverage, set size, calibrated parameter)
_METRICS = {"rank": ("coverage", "set_size", "k_hat"), "score": ("score_coverage", "score_set_size", "score_threshold"),
            "answer": ("coverage", "set_size", "k_hat")}


@dataclass(frozen=True)
class FoldRow:
    """One calibration fold of one (method, retriever, dataset, alpha) cell: coverage and mean
    set size on the other folds. ``param`` is the calibrated k (rank, answer) or score threshold;
    ``trivial`` marks a whole-corpus set (no finite k certifies 1 - alpha)."""

    method: str
    retriever: str
    dataset: str
    alpha: float
    cal: int
    coverage: float
    set_size: float
    param: float = math.nan
    n_cal: int = 0
    n_test: int = 0
    slack: float = math.nan
    trivial: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise OdqaBenchError(f"conformal table: method {self.method!r}; known: {', '.join(METHODS)}")
        if not 0.0 < self.alpha < 1.0:
            raise OdqaBenchError(f"conformal table: alpha must be in (0, 1), got {self.alpha!r}")


def rows_from_records(records: Iterable[Record]) -> list[FoldRow]:
    """Fold rows from the conformal suite's records (``test_conformal`` cells give rank rows and,
    where recorded, score rows; ``test_answer_conformal`` cells give answer rows)."""
    cells: dict[tuple[str, str], dict[str, Record]] = {}
    for r in records:
        if _CELL.match(r.cell):
            cells.setdefault((r.suite, r.cell), {})[r.metric] = r
    rows = []
    for (_suite, cell), metrics in sorted(cells.items()):
        m = _CELL.match(cell)
        if m is None:
            continue
        methods = ("answer",) if m["test"].rsplit("::", 1)[-1] == "test_answer_conformal" else ("rank", "score")
        for method in methods:
            cov, size, param = _METRICS[method]
            if cov not in metrics or size not in metrics:
                continue
            extra = metrics[cov].extra
            p = metrics[param].value if param in metrics else math.nan
            rows.append(FoldRow(method, m["name"], m["dataset"], float(m["alpha"]), int(m["cal"]), metrics[cov].value,
                                metrics[size].value, p, int(extra.get("n_cal", 0)), len(metrics[cov].per_query or []),
                                float(extra.get("slack", math.nan)), bool(extra.get("trivial", False))))
    return rows


def fold_frame(rows: Iterable[FoldRow]) -> pd.DataFrame:
    """One line per calibration fold, with ``gap`` = coverage - (1 - alpha) (negative: below target)."""
    frame = pd.DataFrame([asdict(r) for r in rows])
    if frame.empty:
        return frame
    frame["target"] = 1.0 - frame["alpha"]
    frame["gap"] = frame["coverage"] - frame["target"]
    return frame.sort_values(["method", "dataset", "retriever", "alpha", "cal"]).reset_index(drop=True)


def _std(s: pd.Series) -> float:
    return float(s.std(ddof=1)) if len(s) > 1 else 0.0


def summary_frame(rows: Iterable[FoldRow]) -> pd.DataFrame:
    """Per (method, dataset, retriever, alpha): coverage mean ± std over the calibration folds,
    the worst fold, 1 - alpha, how far the worst fold falls below it (``shortfall``, <= 0: none),
    mean set size mean ± std, and how many folds certified only the whole corpus."""
    folds = fold_frame(rows)
    if folds.empty:
        return folds
    out = []
    for (method, dataset, retriever, alpha), part in folds.groupby(["method", "dataset", "retriever", "alpha"], sort=True):
        worst = part.loc[part["coverage"].idxmin()]
        out.append({"method": method, "dataset": dataset, "retriever": retriever, "alpha": alpha,
                    "target": 1.0 - alpha, "folds": len(part), "coverage_mean": float(part["coverage"].mean()),
                    "coverage_std": _std(part["coverage"]), "coverage_min": float(worst["coverage"]),
                    "min_cal": int(worst["cal"]), "shortfall": float((1.0 - alpha) - worst["coverage"]),
                    "set_size_mean": float(part["set_size"].mean()), "set_size_std": _std(part["set_size"]),
                    "trivial_folds": int(part["trivial"].sum())})
    return pd.DataFrame(out)


def _size(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def tables_markdown(rows: Iterable[FoldRow]) -> str:
    """Markdown: the summary per (method, dataset), then every fold."""
    rows = list(rows)
    summary, folds = summary_frame(rows), fold_frame(rows)
    if summary.empty:
        return ""
    out = []
    for (method, dataset), part in summary.groupby(["method", "dataset"], sort=True):
        out.append(f"### {method} · {dataset} (over {int(part['folds'].max())} calibration folds)\n")
        out.append("| retriever | alpha | 1 - alpha | coverage mean ± std | min fold (cal) | shortfall | "
                   "set size mean ± std | whole-corpus folds |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for _, r in part.sort_values(["alpha", "set_size_mean"]).iterrows():
            out.append(f"| {r['retriever']} | {r['alpha']:g} | {r['target']:.2f} | {r['coverage_mean']:.4f} ± "
                       f"{r['coverage_std']:.4f} | {r['coverage_min']:.4f} ({r['min_cal']}) | {r['shortfall']:+.4f} | "
                       f"{_size(r['set_size_mean'])} ± {_size(r['set_size_std'])} | {r['trivial_folds']} |")
        out.append("")
    out.append("### every calibration fold\n")
    out.append("| method | dataset | retriever | alpha | cal | k or threshold | coverage | gap to 1 - alpha | slack | "
               "set size |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for _, r in folds.iterrows():
        out.append(f"| {r['method']} | {r['dataset']} | {r['retriever']} | {r['alpha']:g} | {r['cal']} | "
                   f"{r['param']:.4g} | {r['coverage']:.4f} | {r['gap']:+.4f} | {r['slack']:.4f} | "
                   f"{_size(r['set_size'])} |")
    out.append("")
    return "\n".join(out)


def write_tables(rows: Iterable[FoldRow], out_dir: str | Path, stem: str = "conformal") -> list[Path]:
    """Write ``<stem>.csv`` (summary), ``<stem>_folds.csv`` (every fold) and ``<stem>.md``."""
    rows = list(rows)
    if not rows:
        raise OdqaBenchError("conformal table: no rows to write")
    out = Path(out_dir)
    paths = [out / f"{stem}.csv", out / f"{stem}_folds.csv", out / f"{stem}.md"]
    atomic_write_text(paths[0], summary_frame(rows).to_csv(index=False))
    atomic_write_text(paths[1], fold_frame(rows).to_csv(index=False))
    atomic_write_text(paths[2], tables_markdown(rows))
    return paths
