"""Runs from any system through the regression gate: a baseline TREC run and a candidate TREC
run scored on the same qrels become a baseline cell and a run's records, and ``run_gate`` (the
plugin's gate) judges them: the same tolerances from ``[tool.odqa_bench]``, the same paired
randomization test and the same multiple-comparison correction."""
from __future__ import annotations

from dataclasses import dataclass

from .baseline import GateConfig, GateResult, Record, records_to_cells, run_gate
from .errors import OdqaBenchError
from .metrics import Scores, evaluate
from .retrieval import Run

__all__ = ["COMPARE_SUITE", "Overlap", "query_overlap", "score_records", "compare_runs"]

# the suite name tolerances are looked up under: [tool.odqa_bench.suites.compare], cells."compare::<cell>"
COMPARE_SUITE = "compare"
# below these shares a run and its qrels are probably keyed differently (or the run is partial)
MIN_JUDGED_SHARE, MIN_RUN_SHARE = 0.9, 0.5


@dataclass(frozen=True)
class Overlap:
    """How a run's queries meet its qrels' judged queries (those with a relevant document)."""

    judged: int
    in_run: int
    shared: int

    def warnings(self, label: str) -> list[str]:
        """Lines for a run that shares few queries with its qrels; none when they match."""
        out = []
        if self.shared < MIN_JUDGED_SHARE * self.judged:
            out.append(f"{label}: only {self.shared} of the {self.judged} judged queries are in the run "
                       f"({self.shared / self.judged:.0%}); the others score 0")
        if self.shared < MIN_RUN_SHARE * self.in_run:
            out.append(f"{label}: only {self.shared} of the run's {self.in_run} queries are judged in the qrels "
                       f"({self.shared / self.in_run:.0%}); the others are left out")
        return out


def query_overlap(run: Run, qrels: dict[str, dict[str, int]], label: str) -> Overlap:
    """The overlap of ``run`` with ``qrels``; no shared query at all is an error (ids that differ)."""
    judged = {q for q, g in qrels.items() if any(v > 0 for v in g.values())}
    shared = len(judged & set(run.query_ids))
    if not shared:
        raise OdqaBenchError(f"{label}: no query id of the run appears in the qrels; do the ids match?")
    return Overlap(len(judged), len(run.query_ids), shared)


def score_records(scores: Scores, suite: str, cell: str, dataset: str = "") -> list[Record]:
    """One record per metric of an ``evaluate`` result, with its per-query vector and ids."""
    return [Record(suite, cell, name, float(vec.mean()) if len(vec) else 0.0, True, "quality",
                   [float(x) for x in vec], list(scores.query_ids), dataset)
            for name, vec in scores.items()]


def compare_runs(baseline: Run, candidate: Run, qrels: dict[str, dict[str, int]], metrics: list[str],
                 cfg: GateConfig, correction: str | None = None, cell: str = "runs",
                 suite: str = COMPARE_SUITE) -> tuple[GateResult, Scores, Scores]:
    """Gate ``candidate`` against ``baseline`` on ``qrels``: the verdicts and both runs' scores."""
    base_scores, cand_scores = evaluate(baseline, qrels, metrics), evaluate(candidate, qrels, metrics)
    stored = {"cells": records_to_cells(score_records(base_scores, suite, cell))}
    result = run_gate(score_records(cand_scores, suite, cell), {suite: stored}, cfg, correction=correction)
    return result, base_scores, cand_scores
