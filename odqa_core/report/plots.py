"""Hit@k and recall@k curves per retriever, one PNG per dataset, read from the cell ids of a
run (``test_retrieval[bm25-kiwi/korquad-dev/k=20]``): the current run solid, its baseline dashed."""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path

from ..baseline.gate import GateResult
from ..baseline.store import Record
from ..io import atomic_write_bytes

__all__ = ["write_plots", "curve_points", "parse_cell"]

log = logging.getLogger(__name__)

_CELL = re.compile(r"\[(?P<system>[^/\[\]]+)/(?P<dataset>[^/\[\]]+)/k=(?P<k>\d+)\]$")
_METRIC = re.compile(r"^(?P<family>hit|recall)@(?P<k>\d+)$")

# dataset -> family -> (suite, system) -> {"current": {k: v}, "baseline": {k: v}}
Curves = dict[str, dict[str, dict[tuple[str, str], dict[str, dict[int, float]]]]]


def parse_cell(cell: str) -> tuple[str, str, int] | None:
    """``(retriever-tokenizer, dataset, k)`` from a cell id ending in ``[system/dataset/k=K]``."""
    m = _CELL.search(cell)
    return (m["system"], m["dataset"], int(m["k"])) if m else None


def curve_points(result: GateResult | None, records: list[Record]) -> Curves:
    """Collect hit@K / recall@K values by dataset, metric family and system; K comes from the
    metric name, baseline values from the gate's comparisons where it had one."""
    baseline = {}
    for c in result.comparisons if result is not None else []:
        if c.baseline is not None:
            baseline[(c.suite, c.cell, c.metric)] = c.baseline
    curves: Curves = {}
    for r in records:
        cell, metric = parse_cell(r.cell), _METRIC.match(r.metric)
        if cell is None or metric is None:
            continue
        system, dataset, _k = cell
        k = int(metric["k"])
        line = curves.setdefault(dataset, {}).setdefault(metric["family"], {}).setdefault(
            (r.suite, system), {"current": {}, "baseline": {}})
        line["current"][k] = float(r.value)
        if (r.suite, r.cell, r.metric) in baseline:
            line["baseline"][k] = float(baseline[(r.suite, r.cell, r.metric)])
    return curves


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def _render(dataset: str, families: dict[str, dict[tuple[str, str], dict[str, dict[int, float]]]]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = sorted(families)
    fig = Figure(figsize=(5.5 * len(names), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    colours = [f"C{i}" for i in range(10)]
    suites = {s for fam in families.values() for s, _sys in fam}
    for col, family in enumerate(names, start=1):
        ax = fig.add_subplot(1, len(names), col)
        for i, ((suite, system), line) in enumerate(sorted(families[family].items())):
            label = system if len(suites) == 1 else f"{suite}: {system}"
            colour = colours[i % len(colours)]
            ks = sorted(line["current"])
            ax.plot(ks, [line["current"][k] for k in ks], "-o", color=colour, markersize=4, label=label)
            bks = sorted(line["baseline"])
            if bks:
                ax.plot(bks, [line["baseline"][k] for k in bks], "--", color=colour, alpha=0.8,
                        label=f"{label} (baseline)")
        ax.set_title(f"{dataset}: {family}@k")
        ax.set_xlabel("k")
        ax.set_ylabel(f"{family}@k")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def write_plots(result: GateResult | None, records: list[Record], out_dir: str | Path) -> list[Path]:
    """Write ``curves_<dataset>.png`` for every dataset with hit@K or recall@K cells; returns the paths."""
    out = Path(out_dir)
    written = []
    for dataset, families in sorted(curve_points(result, records).items()):
        path = out / f"curves_{_safe(dataset)}.png"
        atomic_write_bytes(path, _render(dataset, families))
        log.info("wrote %s", path)
        written.append(path)
    return written
