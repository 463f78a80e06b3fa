"""The grid's aggregated table: mean ± std over folds, one table per metric family with the
cut-offs as columns; cells without folds and information records stay out."""
from __future__ import annotations

import statistics

from odqa_core.baseline.store import Record
from odqa_core.report.grid import grid_frame, grid_markdown


def _rec(name: str, fold: int, k: int, metric: str, value: float, kind: str = "quality") -> Record:
    return Record("grid", f"test_grid[{name}/korquad-dev/fold={fold}/k={k}]", metric, value, kind=kind)


def test_mean_and_sample_std_over_folds_with_k_as_columns() -> None:
    vals = {5: [0.90, 0.94, 0.92], 20: [0.97, 0.99, 0.98]}
    records = [_rec("bm25-kiwi", f + 1, k, f"hit@{k}", v) for k, vs in vals.items() for f, v in enumerate(vs)]
    records += [_rec("bm25-kiwi", 1, 5, "seconds", 3.0, kind="info"),
                Record("retrieval", "test_retrieval[bm25-kiwi/korquad-dev/k=5]", "hit@5", 0.1)]
    agg = grid_frame(records)
    assert set(agg["metric"]) == {"hit@5", "hit@20"} and (agg["folds"] == 3).all()
    row = agg[agg["metric"] == "hit@5"].iloc[0]
    assert abs(row["mean"] - 0.92) < 1e-12 and abs(row["std"] - statistics.stdev(vals[5])) < 1e-12
    md = grid_markdown(agg)
    assert md.count("### ") == 1 and "hit@k (mean ± std over 3 folds)" in md
    assert "| retriever | k=5 | k=20 |" in md
    assert f"| bm25-kiwi | 0.9200 ± {statistics.stdev(vals[5]):.4f} | 0.9800 ± {statistics.stdev(vals[20]):.4f} |" in md


def test_no_fold_cells_give_no_table() -> None:
    assert grid_markdown(grid_frame([Record("retrieval", "test_x[bm25/default/k=5]", "hit@5", 0.5)])) == ""


def test_reader_cells_with_k_before_fold_and_a_profile_prefix() -> None:
    cells = {(1, 1): 0.40, (1, 2): 0.44, (5, 1): 0.60, (5, 2): 0.64}
    records = [Record("reader", f"test_reader[full/hybrid-kiwi/korquad-open/k={k}/fold={f}]", "f1", v)
               for (k, f), v in cells.items()]
    records.append(Record("reader", "test_reader_gold[full/korquad-dev/fold=1]", "gold_f1", 0.7))  # no k: no grid
    agg = grid_frame(records)
    assert list(agg["k"]) == [1, 5] and set(agg["retriever"]) == {"full/hybrid-kiwi"}
    assert set(agg["dataset"]) == {"korquad-open"} and (agg["folds"] == 2).all()
    assert abs(agg[agg["k"] == 5].iloc[0]["mean"] - 0.62) < 1e-12
    assert "| full/hybrid-kiwi | 0.4200 ± 0.0283 | 0.6200 ± 0.0283 |" in grid_markdown(agg)
    one_fold = grid_markdown(grid_frame(records[:1] + records[2:3]))
    assert "(mean ± std over 1 fold)" in one_fold


def test_per_fold_lines_with_a_column_per_metric_and_k_then_their_mean() -> None:
    from odqa_core.report.grid import per_fold_markdown

    cells = {(1, 1): 0.40, (1, 2): 0.44, (5, 1): 0.60, (5, 2): 0.66}
    records = [Record("reader", f"test_reader[full/bm25-kiwi/korquad-dev/k={k}/fold={f}]", "f1", v)
               for (k, f), v in cells.items()]
    records.append(Record("reader", "test_reader[full/bm25-kiwi/korquad-dev/k=1/fold=1]", "n", 9.0, kind="info"))
    md = per_fold_markdown(records)
    assert md.count("### ") == 1 and "### full/bm25-kiwi · korquad-dev (per fold)" in md
    assert "| fold | f1 k=1 | f1 k=5 |" in md
    assert "| 1 | 0.4000 | 0.6000 |" in md and "| 2 | 0.4400 | 0.6600 |" in md
    assert "| mean | 0.4200 | 0.6300 |" in md and "n k=1" not in md
