"""Split conformal prediction: retrieval sets (top k or a score threshold) that keep the gold
passage with probability >= 1 - alpha (:mod:`.retrieval`, re-exported here), and answer sets
over a reader's candidates (:mod:`.answers`, which alone needs the reader)."""
from __future__ import annotations

from .retrieval import (
    ConformalResult,
    calibrate_k,
    calibrate_threshold,
    coverage,
    coverage_slack,
    covered,
    design_effect,
    evaluate_conformal,
    gold_ranks,
    gold_scores,
    quantile_index,
    set_sizes,
)

__all__ = [
    "ConformalResult", "calibrate_k", "calibrate_threshold", "covered", "coverage", "coverage_slack",
    "design_effect", "evaluate_conformal", "gold_ranks", "gold_scores", "quantile_index", "set_sizes",
]
