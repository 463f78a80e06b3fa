"""Embedding geometry on L2-normalised vectors (Wang & Isola, 2020): alignment of positive
pairs, uniformity of the whole set, and the cosine distributions of positives vs negatives.

Lower alignment means positives sit closer; lower (more negative) uniformity means vectors
spread more evenly over the sphere. Fine-tuning should lower alignment without collapsing
uniformity towards 0 (all vectors in one spot)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["alignment", "uniformity", "Geometry", "geometry", "cosine_histograms"]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def alignment(q: np.ndarray, p: np.ndarray, alpha: float = 2.0) -> float:
    """E ||f(q) - f(p+)||^alpha over positive pairs (rows of ``q`` and ``p``)."""
    d = np.linalg.norm(_unit(q) - _unit(p), axis=1)
    return float(np.mean(d**alpha))


def uniformity(x: np.ndarray, t: float = 2.0, max_pairs: int = 2_000_000, seed: int = 0) -> float:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs (all pairs, or a seeded sample of
    ``max_pairs`` for large sets). Uses ||a - b||^2 = 2 - 2 a·b on unit vectors."""
    u = _unit(x)
    n = len(u)
    if n < 2:
        return 0.0
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, max_pairs)
        j = rng.integers(0, n - 1, max_pairs)
        j = np.where(j >= i, j + 1, j)
    sq = np.clip(2.0 - 2.0 * np.einsum("ij,ij->i", u[i], u[j]), 0.0, None)
    # log-mean-exp, stable
    a = -t * sq
    m = a.max()
    return float(m + np.log(np.mean(np.exp(a - m))))


@dataclass(frozen=True)
class Geometry:
    alignment: float
    uniformity: float
    pos_cosine_mean: float
    neg_cosine_mean: float


def geometry(q: np.ndarray, p_pos: np.ndarray, p_rand: np.ndarray, seed: int = 0) -> Geometry:
    """Alignment of (question, gold passage) pairs; uniformity over questions and random
    passages together; mean cosine of positives and of (question, random passage) pairs."""
    uq, up, ur = _unit(q), _unit(p_pos), _unit(p_rand)
    rng = np.random.default_rng(seed)
    neg = ur[rng.integers(0, len(ur), len(uq))]
    return Geometry(
        alignment=alignment(uq, up),
        uniformity=uniformity(np.vstack([uq, ur]), seed=seed),
        pos_cosine_mean=float(np.mean(np.einsum("ij,ij->i", uq, up))),
        neg_cosine_mean=float(np.mean(np.einsum("ij,ij->i", uq, neg))),
    )


def cosine_histograms(q: np.ndarray, p_pos: np.ndarray, p_rand: np.ndarray, bins: int = 40,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin edges, positive counts, negative counts) over [-1, 1] for the report's histogram."""
    uq, up, ur = _unit(q), _unit(p_pos), _unit(p_rand)
    neg = ur[np.random.default_rng(seed).integers(0, len(ur), len(uq))]
    edges = np.linspace(-1.0, 1.0, bins + 1)
    pos_c, _ = np.histogram(np.einsum("ij,ij->i", uq, up), edges)
    neg_c, _ = np.histogram(np.einsum("ij,ij->i", uq, neg), edges)
    return edges, pos_c, neg_c
