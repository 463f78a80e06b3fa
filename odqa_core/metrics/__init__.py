"""Pure metric functions: a Run plus gold in, per-query vectors out; callers average."""
from __future__ import annotations

from .evalrag import rag_precision_at_k
from .qa import answer_hits, best_over_golds, exact_match, f1, normalize_korquad, normalize_squad
from .ranking import RANKING_METRICS, MetricSpec, Scores, evaluate, judge, judged_query_ids, parse_metric

__all__ = ["RANKING_METRICS", "MetricSpec", "Scores", "answer_hits", "best_over_golds", "evaluate", "exact_match", "f1",
           "judge", "judged_query_ids", "normalize_korquad", "normalize_squad", "parse_metric", "rag_precision_at_k"]
