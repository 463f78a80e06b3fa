"""Embedding geometry on L2-normalised vectors (Wang & Isola, 2020): alignment of positive
pairs, uniformity of the whole set, and the cosine distributions of positives vs negatives.

Lower alignment means positives sit closer; lower (more negative) uniformity means vectors
spread more evenly over the sphere. Fine-tuning should lower alignment without collapsing
uniformity towards 0 (all vectors in one spot)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OdqaBenchError

__all__ = ["alignment", "uniformity", "Geometry", "geometry", "pair_cosines", "cosine_histograms"]

# pairs scored per block in ``uniformity``: two float64 blocks of 16k rows (~100 MB at dim 384)
_PAIR_CHUNK = 16_384


def _matrix(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as a non-empty, finite 2-D float64 array, else one clear error."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise OdqaBenchError(f"geometry: {what} must be a non-empty (n, dim) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise OdqaBenchError(f"geometry: {what} holds NaN or infinite values")
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _pairs(q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows of questions and their positives, checked to pair up row by row."""
    q, p = _matrix(q, "questions"), _matrix(p, "positive passages")
    if q.shape != p.shape:
        raise OdqaBenchError(f"geometry: questions {q.shape} and positive passages {p.shape} must pair row by row")
    return _unit(q), _unit(p)


def alignment(q: np.ndarray, p: np.ndarray, alpha: float = 2.0) -> float:
    """E ||f(q) - f(p+)||^alpha over positive pairs (rows of ``q`` and ``p``)."""
    uq, up = _pairs(q, p)
    d = np.linalg.norm(uq - up, axis=1)
    return float(np.mean(d**alpha))


def uniformity(x: np.ndarray, t: float = 2.0, max_pairs: int = 2_000_000, seed: int = 0) -> float:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs (all pairs, or a seeded sample of
    ``max_pairs`` for large sets). Uses ||a - b||^2 = 2 - 2 a·b on unit vectors, in blocks of
    pairs so memory stays flat however many pairs are scored."""
    u = _unit(_matrix(x, "vectors"))
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
    a = np.empty(len(i))
    for s in range(0, len(i), _PAIR_CHUNK):
        dots = np.einsum("ij,ij->i", u[i[s : s + _PAIR_CHUNK]], u[j[s : s + _PAIR_CHUNK]])
        a[s : s + _PAIR_CHUNK] = -t * np.clip(2.0 - 2.0 * dots, 0.0, None)
    # log-mean-exp, stable
    m = a.max()
    return float(m + np.log(np.mean(np.exp(a - m))))


@dataclass(frozen=True)
class Geometry:
    alignment: float
    uniformity: float
    pos_cosine_mean: float
    neg_cosine_mean: float


def pair_cosines(q: np.ndarray, p_pos: np.ndarray, p_rand: np.ndarray,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per question: cosine with its positive, and with one random passage drawn (seeded,
    with replacement) from ``p_rand``; the pairs behind :func:`geometry` and the histograms."""
    uq, up = _pairs(q, p_pos)
    ur = _unit(_matrix(p_rand, "random passages"))
    if ur.shape[1] != uq.shape[1]:
        raise OdqaBenchError(f"geometry: random passages have dim {ur.shape[1]}, questions {uq.shape[1]}")
    neg = ur[np.random.default_rng(seed).integers(0, len(ur), len(uq))]
    return np.einsum("ij,ij->i", uq, up), np.einsum("ij,ij->i", uq, neg)


def geometry(q: np.ndarray, p_pos: np.ndarray, p_rand: np.ndarray, seed: int = 0) -> Geometry:
    """Alignment of (question, gold passage) pairs; uniformity over questions and random
    passages together; mean cosine of positives and of (question, random passage) pairs."""
    pos, neg = pair_cosines(q, p_pos, p_rand, seed)
    return Geometry(
        alignment=alignment(q, p_pos),
        uniformity=uniformity(np.vstack([_matrix(q, "questions"), _matrix(p_rand, "random passages")]), seed=seed),
        pos_cosine_mean=float(np.mean(pos)),
        neg_cosine_mean=float(np.mean(neg)),
    )


def cosine_histograms(q: np.ndarray, p_pos: np.ndarray, p_rand: np.ndarray, bins: int = 40,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin edges, positive counts, negative counts) over [-1, 1] for the report's histogram."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise OdqaBenchError(f"geometry: bins must be a positive integer, got {bins!r}")
    pos, neg = pair_cosines(q, p_pos, p_rand, seed)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    pos_c, _ = np.histogram(np.clip(pos, -1.0, 1.0), edges)
    neg_c, _ = np.histogram(np.clip(neg, -1.0, 1.0), edges)
    return edges, pos_c, neg_c
