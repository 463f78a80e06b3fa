"""Reports comparing a run with its baseline: markdown, HTML, CSV, JUnit XML and plots."""
from __future__ import annotations

from pathlib import Path

from ..baseline.gate import GateResult, fold_group
from ..baseline.store import Record
from ..io import atomic_write_text
from .tables import comparison_frame, to_json, to_junit, to_markdown

__all__ = ["write_reports", "comparison_frame", "to_json", "to_markdown", "to_junit"]


def write_reports(result: GateResult, out_dir: str | Path, records: list[Record] | None = None) -> list[Path]:
    """Write ``summary.md``, ``report.html``, ``comparison.csv``, ``junit.xml`` and plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _add_query_texts(result, records or [])
    frame = comparison_frame(result)
    written = []
    for name, text in (("summary.md", to_markdown(result)), ("comparison.csv", frame.to_csv(index=False)),
                       ("junit.xml", to_junit(result))):
        atomic_write_text(out / name, text)
        written.append(out / name)
    from .grid import grid_frame, grid_markdown

    agg = grid_frame(records or [])
    if not agg.empty:
        atomic_write_text(out / "grid.csv", agg.to_csv(index=False))
        atomic_write_text(out / "grid.md", grid_markdown(agg))
        written += [out / "grid.csv", out / "grid.md"]
    from .conformal_table import rows_from_records, write_tables

    conformal_rows = rows_from_records(records or [])
    if conformal_rows:
        written += write_tables(conformal_rows, out, "conformal")
    plots: list[Path] = []
    try:
        from .geometry_plot import panels_from_records, write_geometry_plots
        from .plots import write_plots

        plots = write_plots(result, records or [], out)
        plots += write_geometry_plots(panels_from_records(records or []), out)
    except ImportError:
        pass
    try:
        from .html import to_html

        atomic_write_text(out / "report.html", to_html(result, frame, plots))
        written.append(out / "report.html")
    except ImportError:
        pass
    return written + plots


def _add_query_texts(result: GateResult, records: list[Record]) -> None:
    """Best effort: put each worst query's text beside its id (datasets that cannot be loaded here
    are skipped; the report never fails for want of them)."""
    from ..data import load_dataset
    from ..errors import OdqaBenchError

    datasets = {(r.suite, r.cell): r.dataset for r in records if r.dataset}
    texts: dict[str, dict[str, str]] = {}
    for c in result.by_status("regressed"):
        name = next((d for (s, cell), d in datasets.items() if s == c.suite and fold_group(cell) == c.cell), None)
        if not name or not c.worse:
            continue
        if name not in texts:
            try:
                ds = load_dataset(name)
                texts[name] = dict(zip(ds.query_ids, ds.query_texts))
            except OdqaBenchError:
                texts[name] = {}
        for qid, _b, _c in c.worse:
            if qid in texts[name]:
                prefix = c.query_notes.get(qid, "")
                text = texts[name][qid]
                c.query_notes[qid] = (prefix + "; " if prefix else "") + (text if len(text) <= 120 else text[:117] + "…")
