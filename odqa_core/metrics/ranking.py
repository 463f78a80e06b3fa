"""Ranking metrics as per-query vectors over one relevance matrix.

``rel[i, r]`` is the qrels grade of query i's rank-r document (0 when unjudged or padded).
Every metric is a small kernel over it, so a whole k sweep costs one lookup pass. Definitions
follow trec_eval (relevant = grade > 0; nDCG gain = grade, discount log2(rank + 1); MAP@k
divides by all relevant documents; P@k divides by k even when fewer were returned).

Query policy: queries without any relevant judgment are left out (as trec_eval does); a
query with judgments that the run lacks scores 0 (trec_eval ``-c``).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import OdqaBenchError
from ..retrieval.run import Run

__all__ = ["MetricSpec", "parse_metric", "Judged", "judge", "judged_query_ids", "evaluate", "Scores", "RANKING_METRICS"]


@dataclass(frozen=True)
class Judged:
    """A run laid against qrels: grades by rank plus each query's ideal grades."""

    query_ids: list[str]
    rel: np.ndarray          # (n, K) grades by rank
    n_rel: np.ndarray        # (n,) number of relevant documents
    ideal: np.ndarray        # (n, K_ideal) grades sorted descending, zero padded


def judged_query_ids(qrels: dict[str, dict[str, int]]) -> list[str]:
    """The queries a metric vector covers, in its order: qrels order, those with a relevant document."""
    return [q for q, g in qrels.items() if any(v > 0 for v in g.values())]


def judge(run: Run, qrels: dict[str, dict[str, int]], hits: np.ndarray | None = None) -> Judged:
    """Lay ``run`` against ``qrels``. ``hits`` (n_run_queries, K) may replace the qrels lookup
    with another relevance definition (e.g. 'answer string present'), graded 1/0."""
    run_pos = {q: i for i, q in enumerate(run.query_ids)}
    qids = judged_query_ids(qrels)
    n, K = len(qids), run.k
    rows = np.array([run_pos.get(q, -1) for q in qids], dtype=np.int64)
    present = rows >= 0
    rel = np.zeros((n, K), dtype=np.float64)
    if hits is not None:
        rel[present] = hits[rows[present], :K].astype(np.float64)
        n_rel = np.ones(n)
        ideal = np.ones((n, 1))
        return Judged(qids, rel, n_rel, ideal)
    doc_pos = {d: j for j, d in enumerate(run.doc_ids)}
    r_i, c_i, vals = [], [], []
    max_rel = 1
    for i, q in enumerate(qids):
        g = qrels[q]
        max_rel = max(max_rel, sum(1 for v in g.values() if v > 0))
        for d, v in g.items():
            j = doc_pos.get(d)
            if j is not None and v != 0:
                r_i.append(i)
                c_i.append(j)
                vals.append(v)
    grades = sp.csr_matrix((vals, (r_i, c_i)), shape=(n, max(len(run.doc_ids), 1)), dtype=np.float64)
    if present.any() and K > 0:
        idx = run.indices[rows[present]]
        safe = np.where(idx >= 0, idx, 0)
        sub = np.flatnonzero(present)
        looked = np.asarray(grades[np.repeat(sub, K), safe.ravel()]).reshape(len(sub), K)
        rel[present] = np.where(idx >= 0, looked, 0.0)
    ideal = np.zeros((n, max_rel))
    n_rel = np.zeros(n)
    for i, q in enumerate(qids):
        pos = sorted((v for v in qrels[q].values() if v > 0), reverse=True)
        ideal[i, : len(pos)] = pos
        n_rel[i] = len(pos)
    return Judged(qids, rel, n_rel, ideal)


def _discount(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _hit(j: Judged, k: int) -> np.ndarray:
    return (j.rel[:, :k] > 0).any(axis=1).astype(np.float64)


def _precision(j: Judged, k: int) -> np.ndarray:
    return (j.rel[:, :k] > 0).sum(axis=1) / k


def _recall(j: Judged, k: int) -> np.ndarray:
    return (j.rel[:, :k] > 0).sum(axis=1) / np.maximum(j.n_rel, 1)


def _mrr(j: Judged, k: int) -> np.ndarray:
    hit = j.rel[:, :k] > 0
    if hit.shape[1] == 0:  # a run that returned nothing
        return np.zeros(len(hit))
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), 1.0 / (first + 1), 0.0)


def _ndcg(j: Judged, k: int) -> np.ndarray:
    gains = np.clip(j.rel[:, :k], 0, None)
    dcg = gains @ _discount(gains.shape[1])
    ideal = j.ideal[:, :k]
    idcg = ideal @ _discount(ideal.shape[1])
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def _map(j: Judged, k: int) -> np.ndarray:
    hit = (j.rel[:, :k] > 0).astype(np.float64)
    prec = np.cumsum(hit, axis=1) / np.arange(1, hit.shape[1] + 1)
    return (prec * hit).sum(axis=1) / np.maximum(j.n_rel, 1)


RANKING_METRICS: dict[str, Callable[[Judged, int], np.ndarray]] = {
    "hit": _hit,
    "precision": _precision,
    "recall": _recall,
    "mrr": _mrr,
    "ndcg": _ndcg,
    "map": _map,
}
_ALIASES = {"p": "precision", "r": "recall", "success": "hit", "acc": "hit", "ap": "map"}
_SPEC = re.compile(r"^([a-z_]+)@(\d+)$")


@dataclass(frozen=True)
class MetricSpec:
    """A metric name with its cut-off, parsed from ``ndcg@10`` style names."""

    name: str
    k: int

    def __str__(self) -> str:
        return f"{self.name}@{self.k}"


def parse_metric(text: str) -> MetricSpec:
    m = _SPEC.match(text.strip().lower())
    if not m:
        raise OdqaBenchError(f"bad metric {text!r}; write NAME@K, e.g. ndcg@10 (names: {', '.join(RANKING_METRICS)})")
    name = _ALIASES.get(m.group(1), m.group(1))
    if name not in RANKING_METRICS:
        raise OdqaBenchError(f"unknown metric {m.group(1)!r}; known: {', '.join(RANKING_METRICS)}")
    k = int(m.group(2))
    if k < 1:
        raise OdqaBenchError(f"metric {text!r}: k must be >= 1")
    return MetricSpec(name, k)


class Scores(dict[str, np.ndarray]):
    """Metric name -> per-query vector, plus ``query_ids``: the query each position belongs to
    (qrels order, judged queries only), so a vector never travels without its ids."""

    def __init__(self, vectors: dict[str, np.ndarray], query_ids: list[str]) -> None:
        super().__init__(vectors)
        for name, vec in vectors.items():
            if len(vec) != len(query_ids):
                raise ValueError(f"Scores: {name} has {len(vec)} values for {len(query_ids)} query ids")
        self.query_ids = list(query_ids)

    def by_query(self, metric: str) -> dict[str, float]:
        """One metric as query id -> value."""
        return {q: float(v) for q, v in zip(self.query_ids, self[metric])}


def evaluate(run: Run, qrels: dict[str, dict[str, int]], metrics: list[str],
             hits: np.ndarray | None = None) -> Scores:
    """Per-query vectors for each metric name, with the query ids they follow (qrels order,
    judged queries only)."""
    specs = [parse_metric(m) for m in metrics]
    j = judge(run, qrels, hits)
    return Scores({str(s): RANKING_METRICS[s.name](j, s.k) for s in specs}, j.query_ids)
