"""HF RAG ``eval_rag.py`` retrieval precision: |set(top-k titles) ∩ set(gold titles)| / k."""
from __future__ import annotations

import numpy as np

__all__ = ["rag_precision_at_k"]


def rag_precision_at_k(pred_titles: list[list[str]], gold_titles: list[list[str]], k: int) -> np.ndarray:
    """Per-question values in [0, 1]; eval_rag prints their mean × 100. Duplicate titles in
    the top k count once, exactly as eval_rag's set arithmetic does."""
    return np.array([len(set(p[:k]) & set(g)) / k for p, g in zip(pred_titles, gold_titles)], dtype=np.float64)
