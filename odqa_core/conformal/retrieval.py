"""Split conformal prediction over a retrieval run: how many passages (or which score
threshold) keep the gold passage, and then a correct answer, with probability >= 1 - alpha.

Calibration questions give nonconformity scores (the gold passage's rank, or its retrieval
score); the finite-sample quantile ``ceil((n + 1)(1 - alpha))``-th smallest score sets k. The
guarantee is marginal (in expectation over exchangeable calibration and test questions), and
conservative when scores tie, as ranks do. When the quantile is infinite (too few calibration
questions, or it lands on a gold passage the run never ranks) the only certified set is the
whole corpus. Answer sets built on these (TRAQ) are in :mod:`odqa_core.conformal.answers`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import OdqaBenchError
from ..retrieval.run import Run

__all__ = [
    "ConformalResult", "calibrate_k", "calibrate_threshold", "covered", "coverage", "coverage_slack",
    "design_effect", "evaluate_conformal", "gold_ranks", "gold_scores", "quantile_index", "set_sizes",
]


def _check_alpha(alpha: float, what: str = "alpha") -> None:
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise OdqaBenchError(f"{what} must be in (0, 1), got {alpha!r}")


def _check_n_docs(n_docs: int | None) -> None:
    if n_docs is not None and (isinstance(n_docs, bool) or not isinstance(n_docs, (int, np.integer)) or n_docs < 1):
        raise OdqaBenchError(f"n_docs must be a positive integer (the corpus size), got {n_docs!r}")


def quantile_index(n: int, alpha: float) -> int:
    """The 1-based order statistic ``ceil((n + 1)(1 - alpha))`` of split conformal (may exceed
    ``n``: then no finite quantile exists). A 1e-9 guard keeps exact products like 20 * 0.95
    from rounding up."""
    _check_alpha(alpha)
    return max(1, math.ceil((n + 1) * (1.0 - alpha) - 1e-9))


def _row_of(run: Run) -> dict[str, int]:
    return {q: i for i, q in enumerate(run.query_ids)}


def _select(run: Run, query_ids: Sequence[str] | None) -> list[int]:
    pos = _row_of(run)
    if query_ids is None:
        return list(range(len(run.query_ids)))
    missing = [q for q in query_ids if q not in pos]
    if missing:
        raise OdqaBenchError(f"query {missing[0]!r} is not in run {run.name!r} ({len(missing)} missing)")
    return [pos[q] for q in query_ids]


def _gold_mask(run: Run, qrels: dict[str, dict[str, int]], rows: list[int]) -> np.ndarray:
    """``(len(rows), K)`` booleans: the rank-r document of that row is relevant (grade > 0).
    One vectorised membership test over the whole block, so deep runs stay cheap."""
    doc_pos = {d: j for j, d in enumerate(run.doc_ids)}
    n_docs = len(run.doc_ids)
    codes: list[int] = []
    for n, i in enumerate(rows):
        q = run.query_ids[i]
        gold = [d for d, g in qrels.get(q, {}).items() if g > 0]
        if not gold:
            raise OdqaBenchError(f"query {q!r} has no relevant document in the qrels; conformal calibration needs one")
        codes.extend(n * n_docs + doc_pos[d] for d in gold if d in doc_pos)
    ind = run.indices[rows]
    valid = ind >= 0
    keys = np.arange(len(rows), dtype=np.int64)[:, None] * n_docs + np.where(valid, ind, 0)
    return valid & np.isin(keys, np.asarray(codes, dtype=np.int64))


def gold_ranks(run: Run, qrels: dict[str, dict[str, int]], query_ids: Sequence[str] | None = None) -> np.ndarray:
    """Per query, the 1-based rank of its best-ranked relevant passage; ``inf`` when none is
    within the run's depth. This is the rank nonconformity score."""
    mask = _gold_mask(run, qrels, _select(run, query_ids))
    first = np.argmax(mask, axis=1).astype(np.float64) + 1.0
    first[~mask.any(axis=1)] = np.inf
    return first


def gold_scores(run: Run, qrels: dict[str, dict[str, int]], query_ids: Sequence[str] | None = None) -> np.ndarray:
    """Per query, the retrieval score of its best-ranked relevant passage; ``-inf`` when none
    is within the run's depth (higher is better: the score-threshold variant)."""
    rows = _select(run, query_ids)
    mask = _gold_mask(run, qrels, rows)
    sc = np.where(mask, run.scores[rows], -np.inf)
    return sc.max(axis=1) if sc.shape[1] else np.full(len(rows), -np.inf)


def calibrate_k(cal_ranks: np.ndarray, alpha: float, n_docs: int | None = None) -> int | None:
    """Smallest k with P(gold in top-k) >= 1 - alpha: the ``ceil((n + 1)(1 - alpha))``-th smallest
    calibration rank. When that index exceeds n (too few calibration questions for this alpha)
    or lands on an unretrieved gold (run too shallow, or no shared term) no finite k exists:
    the result is ``n_docs`` (the whole corpus, split conformal's trivial set) when the corpus
    size is given, else None (the whole ranking, which carries no guarantee)."""
    _check_n_docs(n_docs)
    ranks = np.sort(np.asarray(cal_ranks, dtype=np.float64))
    n = len(ranks)
    m = quantile_index(n, alpha)
    if m > n or not np.isfinite(ranks[m - 1]):
        return None if n_docs is None else int(n_docs)
    return int(ranks[m - 1])


def calibrate_threshold(cal_gold_scores: np.ndarray, alpha: float) -> float:
    """Score threshold t with P(gold score >= t) >= 1 - alpha: the ``ceil((n + 1)(1 - alpha))``-th
    largest calibration gold score. ``-inf`` (keep every retrieved passage, no guarantee beyond
    the run's depth) when the index exceeds n or lands on an unretrieved gold."""
    s = np.sort(np.asarray(cal_gold_scores, dtype=np.float64))
    n = len(s)
    m = quantile_index(n, alpha)
    if m > n:
        return float("-inf")
    return float(s[n - m])


def covered(test_ranks: np.ndarray, k: int | None, n_docs: int | None = None) -> np.ndarray:
    """Per test question, 1.0 when its gold rank is <= k (k None: anywhere in the run; k >=
    ``n_docs``: the whole corpus, which holds every gold), else 0.0."""
    _check_n_docs(n_docs)
    r = np.asarray(test_ranks, dtype=np.float64)
    if n_docs is not None and k is not None and k >= n_docs:
        return np.ones(len(r))
    return (np.isfinite(r) if k is None else r <= k).astype(np.float64)


def coverage(test_ranks: np.ndarray, k: int | None, n_docs: int | None = None) -> float:
    """Fraction of test questions whose gold rank is <= k (k None: anywhere in the run; k >=
    ``n_docs``: all of them)."""
    if len(np.asarray(test_ranks)) == 0:
        raise OdqaBenchError("coverage: no test questions")
    return float(np.mean(covered(test_ranks, k, n_docs)))


def set_sizes(scores: np.ndarray, k: int | None = None, threshold: float | None = None,
              n_docs: int | None = None) -> np.ndarray:
    """Per query, how many retrieved passages the prediction set holds: the non-padded ones
    among the top k, or those scoring >= ``threshold`` (neither: the whole run row). k >=
    ``n_docs`` is the whole corpus: ``n_docs`` passages, retrieved or not."""
    _check_n_docs(n_docs)
    sc = np.asarray(scores, dtype=np.float64)
    if n_docs is not None and k is not None and k >= n_docs:
        return np.full(sc.shape[0], int(n_docs))
    valid = sc > -np.inf
    if k is not None:
        valid = valid[:, :k]
        sc = sc[:, :k]
    if threshold is not None:
        valid = valid & (sc >= threshold)
    return valid.sum(axis=1)


def coverage_slack(alpha: float, n_cal: int, n_test: int, z: float = 3.0, deff_cal: float = 1.0,
                   deff_test: float = 1.0) -> float:
    """``z`` standard errors of the measured coverage: the calibration draw (coverage given the
    calibration set is Beta with variance ~ alpha(1-alpha)/(n_cal+2)) plus the binomial test draw,
    each times its design effect when questions come in correlated groups (see
    :func:`design_effect`; 1 for independent questions)."""
    _check_alpha(alpha)
    for d in (deff_cal, deff_test):
        if not (isinstance(d, (int, float)) and d >= 1.0):
            raise OdqaBenchError(f"design effect must be a number >= 1, got {d!r}")
    var = alpha * (1 - alpha) * (deff_cal / (n_cal + 2) + deff_test / max(n_test, 1))
    return z * math.sqrt(var)


def design_effect(values: np.ndarray, groups: Sequence[str]) -> float:
    """How much grouping inflates the variance of ``mean(values)``: the cluster-robust variance
    (per-group sums of deviations) over the independent one, floored at 1. Folds grouped by
    article split articles, not questions, so a fold's coverage moves with its articles and
    questions of one article count for less than independent ones."""
    y = np.asarray(values, dtype=np.float64)
    if len(groups) != len(y):
        raise OdqaBenchError(f"design effect: {len(y)} values for {len(groups)} group labels")
    dev = y - y.mean() if len(y) else y
    iid = float(np.sum(dev**2))
    if iid <= 0.0:
        return 1.0
    _, inv = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    clustered = float(np.sum(np.bincount(inv, weights=dev) ** 2))
    return max(1.0, clustered / iid)


@dataclass(frozen=True)
class ConformalResult:
    """One alpha on one cal/test split. ``k`` is None when no finite k exists (then coverage
    and set size are those of the whole run, or of the whole corpus when ``n_docs`` was given);
    ``threshold`` is set for the score variant."""

    alpha: float
    k: int | None
    coverage: float
    mean_set_size: float
    n_cal: int
    n_test: int
    threshold: float | None = None


def evaluate_conformal(
    run: Run,
    qrels: dict[str, dict[str, int]],
    cal_qids: Sequence[str],
    test_qids: Sequence[str],
    alphas: Sequence[float],
    method: str = "rank",
    n_docs: int | None = None,
) -> list[ConformalResult]:
    """Calibrate on ``cal_qids``, measure coverage and mean set size on ``test_qids`` for each
    alpha. ``method``: ``rank`` (top-k) or ``score`` (retrieval-score threshold); ``n_docs``
    (the corpus size) turns an infinite rank quantile into the whole-corpus set."""
    if method not in ("rank", "score"):
        raise OdqaBenchError(f"conformal method {method!r}; known: rank, score")
    overlap = set(cal_qids) & set(test_qids)
    if overlap:
        raise OdqaBenchError(f"query {sorted(overlap)[0]!r} is in both the calibration and the test split")
    if not len(cal_qids) or not len(test_qids):
        raise OdqaBenchError("conformal evaluation needs calibration and test questions")
    test_rows = _select(run, test_qids)
    out = []
    if method == "rank":
        cal, test = gold_ranks(run, qrels, cal_qids), gold_ranks(run, qrels, test_qids)
        for a in alphas:
            k = calibrate_k(cal, a, n_docs)
            size = set_sizes(run.scores[test_rows], k=k, n_docs=n_docs)
            out.append(ConformalResult(float(a), k, coverage(test, k, n_docs), float(size.mean()), len(cal), len(test)))
    else:
        cal, test = gold_scores(run, qrels, cal_qids), gold_scores(run, qrels, test_qids)
        for a in alphas:
            t = calibrate_threshold(cal, a)
            size = set_sizes(run.scores[test_rows], threshold=t)
            cov = float(np.mean((test >= t) & np.isfinite(test)))
            out.append(ConformalResult(float(a), None, cov, float(size.mean()), len(cal), len(test), t))
    return out
