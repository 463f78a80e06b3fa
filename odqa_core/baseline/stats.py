"""Paired statistics for the gate: randomization test, bootstrap CI, minimum detectable effect,
and multiple-comparison corrections (Holm for family-wise error, Benjamini-Hochberg for FDR).

All resampling is seeded from the comparison's own name, so a verdict never depends on the
order cells ran in (serial and pytest-xdist agree)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["PairedResult", "paired_test", "mde", "holm", "benjamini_hochberg", "adjust", "seed_for"]

_CHUNK = 1000


def seed_for(*parts: str) -> int:
    """A stable 32-bit seed from names (cell id, metric)."""
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:4], "little")


@dataclass(frozen=True)
class PairedResult:
    """Mean difference (current - baseline) with its 95 % bootstrap CI and the one-sided
    randomization p-value for 'current is worse' (direction set by higher_is_better)."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    n_worse: int
    n_better: int


def paired_test(baseline: np.ndarray, current: np.ndarray, higher_is_better: bool = True,
                permutations: int = 10000, bootstrap: int = 2000, seed: int = 0,
                confidence: float = 0.95) -> PairedResult:
    """Paired sign-flip randomization test and percentile bootstrap over queries."""
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if b.shape != c.shape:
        raise ValueError("paired_test: vectors differ in length")
    d = c - b
    n = len(d)
    obs = float(d.mean()) if n else 0.0
    worse = d < 0 if higher_is_better else d > 0
    better = d > 0 if higher_is_better else d < 0
    if n == 0 or not np.any(d):
        return PairedResult(obs, obs, obs, 1.0, n, int(worse.sum()), int(better.sum()))
    rng = np.random.default_rng(seed)
    # one-sided: how often a random sign assignment is at least as bad as what we saw
    signed_obs = obs if higher_is_better else -obs
    dd = d if higher_is_better else -d
    dd = dd[dd != 0]  # zero differences are unchanged by a sign flip
    k = len(dd)
    count = 0
    done = 0
    while done < permutations:
        m = min(_CHUNK, permutations - done)
        signs = rng.integers(0, 2, size=(m, k)).astype(np.float64) * 2 - 1
        count += int(np.sum((signs @ dd) / n <= signed_obs + 1e-12))
        done += m
    p = (count + 1) / (permutations + 1)
    if count == 0 and signed_obs < 0:
        # Monte Carlo cannot resolve p below 1/(R+1), which would cap what a corrected gate over
        # hundreds of comparisons can ever flag. Hoeffding's inequality bounds the exact sign-flip
        # tail from above: P(sum e_i d_i <= n*obs) <= exp(-(n*obs)^2 / (2 sum d_i^2)).
        t = signed_obs * n
        p = min(p, float(np.exp(-(t * t) / (2.0 * float(np.sum(dd * dd))))))
    means = np.empty(bootstrap)
    done = 0
    while done < bootstrap:
        m = min(_CHUNK, bootstrap - done)
        idx = rng.integers(0, n, size=(m, n))
        means[done : done + m] = d[idx].mean(axis=1)
        done += m
    lo, hi = np.percentile(means, [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2])
    return PairedResult(obs, float(lo), float(hi), float(p), n, int(worse.sum()), int(better.sum()))


def mde(per_query: np.ndarray, alpha: float = 0.05, power: float = 0.8, rho: float = 0.5) -> float:
    """Smallest mean drop a one-sided paired test over these queries detects with ``power``:
    (z_{1-alpha} + z_power) * sd_diff / sqrt(n), with sd_diff = sd * sqrt(2 (1 - rho)) for an
    assumed between-run correlation ``rho`` of per-query scores (0.5 gives sd_diff = sd)."""
    x = np.asarray(per_query, dtype=np.float64)
    n = len(x)
    if n < 2:
        return float("inf")
    sd = float(x.std(ddof=1)) * float(np.sqrt(2 * (1 - rho)))
    if sd == 0:
        # a constant vector (all hits, say): one changed query is the smallest visible change
        return 1.0 / n
    z = NormalDist().inv_cdf
    return (z(1 - alpha) + z(power)) * sd / float(np.sqrt(n))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (family-wise error control)."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adj[i] = running
    return adj.tolist()


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate control)."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    adj = np.empty(m)
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, pvalues[i] * m / (rank + 1))
        adj[i] = min(1.0, running)
    return adj.tolist()


def adjust(pvalues: list[float], method: str) -> list[float]:
    """``holm``, ``bh`` or ``none``."""
    if method == "holm":
        return holm(pvalues)
    if method == "bh":
        return benjamini_hochberg(pvalues)
    if method == "none":
        return list(pvalues)
    raise ValueError(f"unknown correction {method!r}")
