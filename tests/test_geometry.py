"""Alignment/uniformity: hand cases and properties (Wang & Isola definitions)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.metrics.geometry import alignment, cosine_histograms, geometry, uniformity


def test_alignment_hand_cases():
    e = np.eye(3)
    assert alignment(e, e) == 0.0
    # orthogonal unit vectors: ||a - b||^2 = 2
    assert abs(alignment(e, np.roll(e, 1, axis=0)) - 2.0) < 1e-12
    # opposite vectors: ||a - b||^2 = 4
    assert abs(alignment(e, -e) - 4.0) < 1e-12


def test_uniformity_collapsed_and_spread():
    collapsed = np.tile([[1.0, 0.0]], (10, 1))
    assert abs(uniformity(collapsed)) < 1e-12  # log E exp(0) = 0, the worst value
    spread = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert abs(uniformity(spread) - (-8.0)) < 1e-12  # one pair at distance^2 4: log exp(-8)
    rng = np.random.default_rng(0)
    assert uniformity(rng.normal(size=(200, 16))) < uniformity(rng.normal(size=(200, 16)) * 0.01 + 1.0)


@settings(max_examples=30, derandomize=True, database=None)
@given(st.integers(2, 40), st.integers(2, 8), st.integers(0, 1000))
def test_bounds(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d))
    assert 0.0 <= alignment(x, y) <= 4.0 + 1e-12
    assert -8.0 - 1e-12 <= uniformity(x) <= 1e-12  # t = 2, squared distances in [0, 4]


def test_geometry_separates_positives_from_negatives():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(100, 32))
    q = p + 0.1 * rng.normal(size=p.shape)
    g = geometry(q, p, rng.normal(size=(300, 32)))
    assert g.pos_cosine_mean > 0.9 > g.neg_cosine_mean
    edges, pos, neg = cosine_histograms(q, p, rng.normal(size=(300, 32)))
    assert pos.sum() == neg.sum() == 100 and len(edges) == 41
    assert pos[-4:].sum() > neg[-4:].sum()
