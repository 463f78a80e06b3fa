"""Monte Carlo check of the regression gate on real per-query vectors: how often a run with no
true change fails (false alarms) and how often a real drop of a given size is caught (power).

A simulated run is a grid of ``grid`` cells that share one baseline vector. A zero-effect
candidate resamples a random ``churn`` fraction of the queries (each takes the value of a
uniformly drawn query), so it differs from the baseline at some queries as a rerun of a changed
system would, while its expected mean equals the baseline's. A true effect then removes
``|effect| * n`` of metric mass from random queries (hits flipped to misses for 0/1 metrics).
Each cell is judged with the gate's own rule: drop beyond tolerance AND the one-sided paired
sign-flip p-value, corrected across the grid, below alpha.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binom
from tqdm import tqdm

from ..errors import OdqaBenchError
from .config import CORRECTIONS, Tolerance
from .gate import fold_group
from .stats import adjust, mde

__all__ = ["perturb", "apply_drop", "sign_flip_pvalues", "decide", "simulate_gate", "quality_comparisons",
           "format_table"]

log = logging.getLogger(__name__)

DEFAULT_EFFECTS = (-0.005, -0.01, -0.02)
_ROWS_PER_CHUNK = 4_000_000  # sign-matrix entries per chunk in the generic Monte Carlo path


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def perturb(per_query: np.ndarray, churn: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` zero-effect candidates as columns (n, size): each query is resampled with
    probability ``churn`` from the empirical distribution, which keeps the expected mean."""
    x = np.asarray(per_query, dtype=np.float64)
    n = len(x)
    out = np.repeat(x[:, None], size, axis=1)
    mask = rng.random((n, size), dtype=np.float32) < churn
    donors = rng.integers(0, n, size=int(mask.sum()))
    out[mask] = x[donors]
    return out


def apply_drop(candidate: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """Remove ``drop * n`` of metric mass from random queries of one candidate vector: whole
    queries are zeroed (a hit becomes a miss); for 0/1 vectors the count is rounded."""
    c = np.array(candidate, dtype=np.float64)
    n = len(c)
    target = abs(drop) * n
    binary = _is_binary(c)
    if binary:
        target = float(round(target))
    if target <= 0:
        return c
    pos = np.flatnonzero(c > 0)
    rng.shuffle(pos)
    mass = np.cumsum(c[pos])
    if mass.size == 0 or mass[-1] < target - 1e-9:
        raise OdqaBenchError(f"simulate: a drop of {abs(drop):g} exceeds the metric's mean {c.mean():.4f}")
    full = int(np.searchsorted(mass, target - 1e-9, side="left"))
    # queries before `full` are zeroed whole; the one at `full` loses the remainder
    c[pos[:full]] = 0.0
    removed = float(mass[full - 1]) if full else 0.0
    c[pos[full]] = max(0.0, c[pos[full]] - (target - removed))
    return c


def sign_flip_pvalues(baseline: np.ndarray, candidates: np.ndarray, permutations: int,
                      rng: np.random.Generator, higher_is_better: bool = True) -> np.ndarray:
    """The gate's one-sided paired sign-flip p-value, ``(count + 1) / (permutations + 1)``, for
    each candidate column. Columns whose non-zero differences share one magnitude (0/1 metrics)
    draw the Monte Carlo count from its exact binomial law; the rest flip signs explicitly."""
    b = np.asarray(baseline, dtype=np.float64)
    d = np.asarray(candidates, dtype=np.float64) - b[:, None]
    if not higher_is_better:
        d = -d
    n, m = d.shape
    p = np.ones(m)
    k_pos = (d > 0).sum(axis=0)
    k = k_pos + (d < 0).sum(axis=0)
    if _is_binary(b) and _is_binary(candidates):
        equal = k > 0
    else:
        nz = d != 0
        mag = np.abs(d)
        hi = np.where(nz, mag, -np.inf).max(axis=0, initial=-np.inf)
        lo = np.where(nz, mag, np.inf).min(axis=0, initial=np.inf)
        equal = (k > 0) & (hi - lo <= 1e-12 * np.maximum(hi, 1.0))
    if equal.any():
        # the statistic a(2B - k)/n is at most the observed a(2 k_pos - k)/n exactly when B <= k_pos
        exact = binom.cdf(k_pos[equal], k[equal], 0.5)
        p[equal] = (rng.binomial(permutations, exact) + 1) / (permutations + 1)
    other = (k > 0) & ~equal
    if other.any():
        dd = d[:, other]
        obs = dd.mean(axis=0)
        count = np.zeros(dd.shape[1], dtype=np.int64)
        step = max(1, min(permutations, _ROWS_PER_CHUNK // max(n, 1)))
        done = 0
        while done < permutations:
            rows = min(step, permutations - done)
            bits = np.unpackbits(np.frombuffer(rng.bytes((rows * n + 7) // 8), dtype=np.uint8), count=rows * n)
            signs = bits.reshape(rows, n).astype(np.float64) * 2 - 1
            count += np.sum((signs @ dd) / n <= obs + 1e-12, axis=0)
            done += rows
        p[other] = (count + 1) / (permutations + 1)
    return p


def decide(baseline_means: np.ndarray | float, current_means: np.ndarray, p_values: np.ndarray,
           tolerance: Tolerance, alpha: float, correction: str, higher_is_better: bool = True) -> np.ndarray:
    """The gate's verdict per cell: the drop exceeds the tolerance and the corrected p < alpha."""
    cur = np.asarray(current_means, dtype=np.float64)
    base = np.broadcast_to(np.asarray(baseline_means, dtype=np.float64), cur.shape)
    delta = cur - base
    drop = -delta if higher_is_better else delta
    allowed = np.maximum(tolerance.abs, tolerance.rel * np.abs(base))  # Tolerance.allowed, vectorised
    adjusted = np.asarray(adjust([float(v) for v in p_values], correction))
    return (drop > allowed + 1e-12) & (adjusted < alpha)


def simulate_gate(per_query: Sequence[float] | np.ndarray, effects: Sequence[float] = DEFAULT_EFFECTS,
                  runs: int = 200, grid: int = 160, correction: str | Sequence[str] = ("none", "holm", "bh"),
                  tolerance: Tolerance | float = 0.005, alpha: float = 0.05, seed: int = 0, *,
                  churn: float = 0.1, permutations: int = 10000, power: float = 0.8, mde_rho: float = 0.5,
                  progress: bool = False) -> dict[str, Any]:
    """Run the gate ``runs`` times over a grid of ``grid`` cells built from ``per_query`` (a
    higher-is-better, non-negative metric). Returns the per-run false-alarm rate at zero effect
    (any of the ``grid`` null cells fails) and, for each effect (a drop such as -0.01 = 1 point),
    the power: the fraction of runs where one cell carrying that drop among ``grid - 1`` null
    cells fails. Both per correction (``none``, ``holm``, ``bh``)."""
    x = np.asarray(per_query, dtype=np.float64)
    n = len(x)
    corrections = [correction] if isinstance(correction, str) else list(correction)
    tol = tolerance if isinstance(tolerance, Tolerance) else Tolerance(abs=float(tolerance))
    effects = [float(e) for e in effects]
    _check_simulation(x, effects, corrections, runs, grid, alpha, churn, permutations)
    rng = np.random.default_rng(seed)
    base_mean = float(x.mean())
    false_alarm = {c: 0 for c in corrections}
    null_cells_failed = {c: 0 for c in corrections}
    detected = {c: {e: 0 for e in effects} for c in corrections}
    realised = {e: 0.0 for e in effects}
    changed = 0.0
    null_deltas = []
    show = progress and sys.stderr.isatty()
    for _ in tqdm(range(runs), desc="simulated runs", disable=not show):
        cols = perturb(x, churn, grid + len(effects), rng)
        for j, e in enumerate(effects):
            before = cols[:, grid + j].sum()
            cols[:, grid + j] = apply_drop(cols[:, grid + j], e, rng)
            realised[e] += (before - cols[:, grid + j].sum()) / n
        means = cols.mean(axis=0)
        p = sign_flip_pvalues(x, cols, permutations, rng)
        changed += float(np.mean(cols[:, :grid] != x[:, None]))
        null_deltas.append(means[:grid] - base_mean)
        for c in corrections:
            fails = decide(base_mean, means[:grid], p[:grid], tol, alpha, c)
            false_alarm[c] += int(fails.any())
            null_cells_failed[c] += int(fails.sum())
            for j, e in enumerate(effects):
                sel = np.r_[np.arange(grid - 1), grid + j]
                detected[c][e] += int(decide(base_mean, means[sel], p[sel], tol, alpha, c)[-1])
    deltas = np.concatenate(null_deltas)
    log.debug("simulated %d runs of %d cells over %d queries", runs, grid, n)
    return {
        "n": n, "mean": base_mean, "grid": grid, "runs": runs, "alpha": alpha, "tolerance": str(tol),
        "churn": churn, "permutations": permutations, "seed": seed,
        "changed_fraction": changed / runs,
        "null_delta_sd": float(deltas.std(ddof=1)) if deltas.size > 1 else 0.0,
        "mde": mde(x, alpha, power, mde_rho),
        "effects": effects,
        "realised_drop": {e: float(realised[e] / runs) for e in effects},
        "false_alarm": {c: false_alarm[c] / runs for c in corrections},
        "null_cell_fail_rate": {c: null_cells_failed[c] / (runs * grid) for c in corrections},
        "power": {c: {e: detected[c][e] / runs for e in effects} for c in corrections},
    }


def _check_simulation(x: np.ndarray, effects: list[float], corrections: list[str], runs: int, grid: int,
                      alpha: float, churn: float, permutations: int) -> None:
    """One clear error for any argument of :func:`simulate_gate` out of its range."""
    if len(x) < 2 or not np.all(np.isfinite(x)) or np.any(x < 0):
        raise OdqaBenchError("simulate: per_query must hold at least 2 finite, non-negative values")
    if grid < 1 or runs < 1 or not 0 < churn <= 1 or not 0 < alpha < 1 or permutations < 1:
        raise OdqaBenchError("simulate: need grid >= 1, runs >= 1, 0 < churn <= 1, 0 < alpha < 1, permutations >= 1")
    if unknown := [c for c in corrections if c not in CORRECTIONS]:
        raise OdqaBenchError(f"simulate: correction {unknown[0]!r}; choose {', '.join(CORRECTIONS)}")
    if any(e > 0 for e in effects):
        raise OdqaBenchError(f"simulate: effects are drops (<= 0), got {effects}")


def quality_comparisons(baseline: dict[str, Any]) -> int:
    """How many quality comparisons the gate makes for a baseline file (fold cells grouped)."""
    seen = set()
    for cell, c in baseline.get("cells", {}).items():
        for name, m in c.get("metrics", {}).items():
            if m.get("kind", "quality") == "quality":
                seen.add((fold_group(cell), name))
    return len(seen)


def format_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A plain-text table of ``simulate_gate`` results, one line per (label, correction)."""
    if not rows:
        return ""
    effects = rows[0][1]["effects"]
    head = (f"{'metric':<24} {'n':>5} {'mean':>6} {'grid':>4} {'churn':>5} {'corr':>5} {'false alarm':>11} "
            + " ".join(f"{'power ' + format(-100 * e, 'g') + 'pt':>11}" for e in effects))
    lines = [head, "-" * len(head)]
    for label, r in rows:
        for c, fa in r["false_alarm"].items():
            lines.append(f"{label:<24} {r['n']:>5} {r['mean']:>6.3f} {r['grid']:>4} {r['churn']:>5g} {c:>5} {fa:>11.3f} "
                         + " ".join(f"{r['power'][c].get(e, float('nan')):>11.3f}" for e in effects))
    first = rows[0][1]
    lines.append(f"({first['runs']} runs, tolerance {first['tolerance']}, alpha {first['alpha']:g}, "
                 f"{first['permutations']} permutations; power: one cell with that drop among grid - 1 null cells)")
    return "\n".join(lines)
