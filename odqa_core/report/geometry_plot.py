"""Cosine histograms of the geometry suite, one PNG per dataset: for each encoder and stage,
(question, gold passage) cosines against (question, random passage) cosines, with the folds
of a DPR model pooled into one panel. Panels come from the suite directly or from a run's
``pos_cosine``/``rand_cosine`` per-query records."""
from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..baseline.store import Record
from ..errors import OdqaBenchError
from ..io import atomic_write_bytes

__all__ = ["CosinePanel", "parse_geometry_cell", "pool_panels", "panels_from_records", "panel_edges", "histogram",
           "render_geometry_plot", "write_geometry_plots"]

ZERO_SHOT = "zero-shot"
_CELL = re.compile(r"(?:^|\[)(?P<model>[^/\[\]]+)/(?P<dataset>[^/\[\]]+)/(?P<stage>zero-shot|dpr-fold=(?P<fold>\d+))\]?$")
_SUITE = "geometry"


@dataclass(frozen=True)
class CosinePanel:
    """One encoder at one stage: positive-pair and random-pair cosines (folds pooled)."""

    model: str
    stage: str          # zero-shot | dpr
    positive: np.ndarray
    random: np.ndarray
    folds: int = 1

    @property
    def label(self) -> str:
        stage = self.stage if self.stage == ZERO_SHOT else f"DPR ({self.folds} folds pooled)"
        return f"{self.model} · {stage}"

    @property
    def gap(self) -> float:
        return float(np.mean(self.positive) - np.mean(self.random))


def parse_geometry_cell(cell: str) -> tuple[str, str, str, int | None] | None:
    """``(family-size, dataset, stage, fold)`` from ``minilm-L2/default/dpr-fold=3`` (or the
    bracketed test id); stage is ``zero-shot`` or ``dpr``, fold None for zero-shot."""
    m = _CELL.search(cell)
    if m is None:
        return None
    fold = int(m["fold"]) if m["fold"] else None
    return m["model"], m["dataset"], ZERO_SHOT if fold is None else "dpr", fold


def pool_panels(cells: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[CosinePanel]]:
    """Group ``cell id -> (positive cosines, random cosines)`` by dataset; a model's DPR folds
    become one panel (fold order). Panels sort by model, zero-shot before DPR."""
    groups: dict[tuple[str, str, str], list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for cell, (pos, rand) in cells.items():
        parsed = parse_geometry_cell(cell)
        if parsed is None:
            raise OdqaBenchError(f"geometry plot: cell {cell!r} is not <family-size>/<dataset>/<zero-shot|dpr-fold=N>")
        model, dataset, stage, fold = parsed
        groups.setdefault((dataset, model, stage), []).append(
            (fold or 0, np.asarray(pos, dtype=np.float64), np.asarray(rand, dtype=np.float64)))
    out: dict[str, list[CosinePanel]] = {}
    for (dataset, model, stage), parts in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != ZERO_SHOT)):
        parts.sort(key=lambda p: p[0])
        out.setdefault(dataset, []).append(CosinePanel(model, stage, np.concatenate([p[1] for p in parts]),
                                                       np.concatenate([p[2] for p in parts]), len(parts)))
    return out


def panels_from_records(records: list[Record]) -> dict[str, list[CosinePanel]]:
    """Panels from the geometry suite's ``pos_cosine``/``rand_cosine`` per-query records (a
    saved run or a report's records); cells missing either vector are left out."""
    vectors: dict[str, dict[str, list[float]]] = {}
    for r in records:
        if r.suite == _SUITE and r.metric in ("pos_cosine", "rand_cosine") and r.per_query is not None:
            vectors.setdefault(r.cell, {})[r.metric] = r.per_query
    cells = {c: (np.asarray(v["pos_cosine"]), np.asarray(v["rand_cosine"])) for c, v in vectors.items()
             if len(v) == 2 and parse_geometry_cell(c) is not None}
    return pool_panels(cells)


def panel_edges(panel: CosinePanel, bins: int = 40) -> np.ndarray:
    """Bin edges shared by a panel's two histograms, over the range its cosines span (padded,
    within [-1, 1]): a near-collapsed encoder still shows its shape."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise OdqaBenchError(f"geometry plot: bins must be a positive integer, got {bins!r}")
    both = np.concatenate([panel.positive, panel.random])
    lo, hi = float(np.min(both)), float(np.max(both))
    pad = max(0.02 * (hi - lo), 1e-3)
    return np.linspace(max(lo - pad, -1.0), min(hi + pad, 1.0), bins + 1)


def histogram(cosines: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of pairs per bin (values outside the edges land in the end bins)."""
    c = np.clip(np.asarray(cosines, dtype=np.float64), edges[0], edges[-1])
    counts, _ = np.histogram(c, edges)
    return counts / max(len(c), 1)


def render_geometry_plot(dataset: str, panels: list[CosinePanel], bins: int = 40) -> bytes:
    """PNG bytes: one histogram panel per encoder/stage, positives and random pairs overlaid."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise OdqaBenchError(f"geometry plot for {dataset!r}: no panels to draw")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for n, panel in enumerate(panels, start=1):
        ax = fig.add_subplot(rows, cols, n)
        edges = panel_edges(panel, bins)
        for values, colour, name in ((panel.positive, "C0", "question · gold passage"),
                                     (panel.random, "C1", "question · random passage")):
            ax.stairs(histogram(values, edges), edges, fill=True, alpha=0.35, color=colour, label=f"{name} (n={len(values)})")
            ax.axvline(float(np.mean(values)), color=colour, linestyle="--", linewidth=1)
        ax.set_title(f"{panel.label}\ngap {panel.gap:+.3f}", fontsize=9)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("cosine (dashed: means; range per panel)")
        ax.set_ylabel("fraction of pairs")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{dataset}: gold vs random pairs", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def write_geometry_plots(panels: Mapping[str, list[CosinePanel]], out_dir: str | Path) -> list[Path]:
    """Write ``geometry_<dataset>.png`` per dataset into ``out_dir``; returns the paths."""
    written = []
    for dataset, items in sorted(panels.items()):
        path = Path(out_dir) / f"geometry_{_safe(dataset)}.png"
        atomic_write_bytes(path, render_geometry_plot(dataset, items))
        written.append(path)
    return written
