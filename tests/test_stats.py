"""Paired statistics behind the gate: randomization test, bootstrap CI, corrections and MDE."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.baseline.stats import adjust, benjamini_hochberg, holm, mde, paired_test, seed_for


def _binary(n: int, p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(np.float64)


def _flip(vec: np.ndarray, down: int, up: int, seed: int) -> np.ndarray:
    """``down`` random hits become misses and ``up`` random misses become hits."""
    rng = np.random.default_rng(seed)
    out = vec.copy()
    out[rng.choice(np.flatnonzero(vec == 1), down, replace=False)] = 0
    out[rng.choice(np.flatnonzero(vec == 0), up, replace=False)] = 1
    return out


def test_identical_vectors_give_p_one_and_zero_delta() -> None:
    b = np.random.default_rng(0).random(500)
    r = paired_test(b, b.copy(), permutations=500, bootstrap=200, seed=1)
    assert r.p_value == 1.0
    assert r.delta == 0.0 and r.ci_low == 0.0 and r.ci_high == 0.0
    assert r.n == 500 and r.n_worse == 0 and r.n_better == 0


def test_clear_drop_is_significant_and_ci_covers_the_true_delta() -> None:
    b = _binary(2000, 0.6, seed=3)
    # 5 % of 2000 queries lost net: 150 hits lost, 50 gained, so the true delta is -100 / 2000
    c = _flip(b, down=150, up=50, seed=4)
    r = paired_test(b, c, permutations=10000, bootstrap=2000, seed=5)
    assert r.delta == pytest.approx(-0.05)
    assert r.p_value < 0.001
    assert r.ci_high < 0 and r.ci_low <= -0.05 <= r.ci_high
    assert (r.n_worse, r.n_better) == (150, 50)


def test_null_difference_is_not_significant() -> None:
    b = _binary(2000, 0.6, seed=3)
    c = _flip(b, down=60, up=60, seed=6)
    r = paired_test(b, c, permutations=4000, bootstrap=500, seed=7)
    assert r.delta == 0.0
    assert r.p_value > 0.3
    assert r.ci_low < 0 < r.ci_high


def test_seeded_results_repeat_exactly() -> None:
    b = np.random.default_rng(8).random(300)
    c = b + np.random.default_rng(9).normal(-0.01, 0.05, 300)
    r1 = paired_test(b, c, permutations=2000, bootstrap=500, seed=seed_for("suite", "cell", "ndcg@10"))
    r2 = paired_test(b, c, permutations=2000, bootstrap=500, seed=seed_for("suite", "cell", "ndcg@10"))
    assert r1 == r2
    assert seed_for("a", "b") == seed_for("a", "b") != seed_for("a", "c")


def test_direction_follows_higher_is_better() -> None:
    rank_base = np.full(400, 3.0)
    rank_cur = rank_base.copy()
    rank_cur[:40] = 9.0  # ranks got larger: worse for a lower-is-better metric
    worse = paired_test(rank_base, rank_cur, higher_is_better=False, permutations=2000, bootstrap=200, seed=0)
    as_gain = paired_test(rank_base, rank_cur, higher_is_better=True, permutations=2000, bootstrap=200, seed=0)
    assert worse.p_value < 0.001 and (worse.n_worse, worse.n_better) == (40, 0)
    assert as_gain.p_value > 0.99 and (as_gain.n_worse, as_gain.n_better) == (0, 40)
    assert worse.delta == as_gain.delta == pytest.approx(0.6)


def test_unequal_lengths_are_rejected() -> None:
    with pytest.raises(ValueError):
        paired_test(np.zeros(3), np.zeros(4))


def test_holm_matches_hand_computation() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])
    assert holm([0.2]) == pytest.approx([0.2])
    assert holm([]) == []


def test_benjamini_hochberg_matches_hand_computation() -> None:
    # ranks 1..4 of 0.005, 0.01, 0.03, 0.04 -> p*4/r = 0.02, 0.02, 0.04, 0.04, then running min from the top
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert benjamini_hochberg([0.5, 0.6]) == pytest.approx([0.6, 0.6])
    assert benjamini_hochberg([0.01, 0.02, 0.9]) == pytest.approx([0.03, 0.03, 0.9])
    assert benjamini_hochberg([]) == []


def test_adjust_dispatches_and_rejects_unknown() -> None:
    ps = [0.01, 0.2, 0.03]
    assert adjust(ps, "none") == ps
    assert adjust(ps, "holm") == holm(ps)
    assert adjust(ps, "bh") == benjamini_hochberg(ps)
    with pytest.raises(ValueError):
        adjust(ps, "bonferroni")


pvals = st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(pvals)
def test_corrections_are_valid_adjustments(ps: list[float]) -> None:
    h, b = holm(ps), benjamini_hochberg(ps)
    for adj in (h, b):
        assert all(a >= p - 1e-15 for a, p in zip(adj, ps))
        assert all(a <= 1.0 for a in adj)
        # monotone in the raw order: a smaller raw p never gets a larger adjusted p
        for i in range(len(ps)):
            for j in range(len(ps)):
                if ps[i] < ps[j]:
                    assert adj[i] <= adj[j] + 1e-15
    assert all(bb <= hh + 1e-15 for bb, hh in zip(b, h))


def test_mde_formula_and_scaling_with_n() -> None:
    x = _binary(500, 0.6, seed=11)
    z = 1.6448536269514722 + 0.8416212335729143
    assert mde(x, alpha=0.05, power=0.8, rho=0.5) == pytest.approx(z * x.std(ddof=1) / np.sqrt(500))
    # the same distribution over 4x the queries: half the detectable effect (1/sqrt(n))
    ratio = mde(np.tile(x, 4)) / mde(x)
    assert ratio == pytest.approx(0.5, rel=0.01)
    sizes = [100, 400, 1600, 6400]
    values = [mde(np.tile(x, s // 100)[:s]) for s in sizes]
    assert all(a > b for a, b in zip(values, values[1:]))
    # a stronger between-run correlation leaves less noise in the difference
    assert mde(x, rho=0.9) < mde(x, rho=0.5)


def test_mde_degenerate_inputs() -> None:
    assert mde(np.ones(250)) == pytest.approx(1 / 250)
    assert mde(np.ones(1)) == float("inf")
