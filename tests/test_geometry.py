"""Alignment/uniformity: hand cases and properties (Wang & Isola definitions); the cosine
histogram plot on synthetic cells."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.baseline.store import Record
from odqa_core.errors import OdqaBenchError
from odqa_core.metrics import geometry as geometry_module
from odqa_core.metrics.geometry import alignment, cosine_histograms, geometry, pair_cosines, uniformity
from odqa_core.report.geometry_plot import (
    histogram,
    panel_edges,
    panels_from_records,
    parse_geometry_cell,
    pool_panels,
    render_geometry_plot,
    write_geometry_plots,
)


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


def test_pair_cosines_match_geometry_and_histograms():
    rng = np.random.default_rng(2)
    p = rng.normal(size=(60, 16))
    q = p + 0.5 * rng.normal(size=p.shape)
    r = rng.normal(size=(90, 16))
    pos, neg = pair_cosines(q, p, r, seed=5)
    g = geometry(q, p, r, seed=5)
    assert abs(pos.mean() - g.pos_cosine_mean) < 1e-12 and abs(neg.mean() - g.neg_cosine_mean) < 1e-12
    assert abs(np.mean(2.0 - 2.0 * pos) - g.alignment) < 1e-9  # ||a - b||^2 = 2 - 2 a·b on unit vectors
    edges, pos_c, neg_c = cosine_histograms(q, p, r, bins=20, seed=5)
    assert (pos_c == np.histogram(pos, edges)[0]).all() and (neg_c == np.histogram(neg, edges)[0]).all()
    # the same seed draws the same random partners; another seed draws others
    assert (pair_cosines(q, p, r, seed=5)[1] == neg).all() and not (pair_cosines(q, p, r, seed=6)[1] == neg).all()


def test_histograms_keep_cosines_at_the_edges():
    x = np.random.default_rng(0).normal(size=(200, 7))
    pos, _ = pair_cosines(x, x, x)
    assert (pos > 1.0).any()  # rounding puts some self-cosines just above 1
    _, pos_c, neg_c = cosine_histograms(x, x, -x)
    assert pos_c[-1] == 200 and neg_c.sum() == 200


@pytest.mark.parametrize("pairs", [7, 1000, 10**9])
def test_uniformity_does_not_depend_on_the_block_size(pairs, monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 8))
    want = uniformity(x, max_pairs=3000)  # sampled pairs
    full = uniformity(x)                  # all 7,140 pairs
    monkeypatch.setattr(geometry_module, "_PAIR_CHUNK", pairs)
    assert uniformity(x, max_pairs=3000) == pytest.approx(want, abs=1e-12)
    assert uniformity(x) == pytest.approx(full, abs=1e-12)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    i, j = np.triu_indices(len(u), k=1)
    assert full == pytest.approx(np.log(np.mean(np.exp(-2.0 * np.sum((u[i] - u[j]) ** 2, axis=1)))), abs=1e-9)


@pytest.mark.parametrize("call, message", [
    (lambda: alignment(np.ones((3, 4)), np.ones((1, 4))), "pair row by row"),
    (lambda: alignment(np.ones(4), np.ones(4)), "non-empty (n, dim)"),
    (lambda: uniformity(np.zeros((0, 3))), "non-empty (n, dim)"),
    (lambda: geometry(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 5))), "dim 5"),
    (lambda: pair_cosines(np.ones((2, 3)), np.ones((2, 3)), np.zeros((0, 3))), "random passages"),
    (lambda: geometry(np.full((2, 3), np.nan), np.ones((2, 3)), np.ones((2, 3))), "NaN"),
    (lambda: cosine_histograms(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)), bins=0), "bins"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(OdqaBenchError, match=re.escape(message)):
        call()


def _synthetic_cells(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    cells = {"enc-L2/toy/zero-shot": (rng.uniform(0.4, 0.9, 50), rng.uniform(-0.2, 0.5, 50))}
    for fold in (2, 1):
        cells[f"enc-L2/toy/dpr-fold={fold}"] = (rng.uniform(0.6, 1.0, 25), rng.uniform(-0.5, 0.3, 25))
    cells["other-L1/toy/zero-shot"] = (np.full(10, 0.999), np.full(10, 0.998))  # collapsed: a tiny range
    return cells


def test_geometry_plot_is_written_per_dataset(tmp_path):
    cells = _synthetic_cells(np.random.default_rng(0))
    panels = pool_panels(cells)
    assert [(p.model, p.stage, p.folds, len(p.positive)) for p in panels["toy"]] == [
        ("enc-L2", "zero-shot", 1, 50), ("enc-L2", "dpr", 2, 50), ("other-L1", "zero-shot", 1, 10)]
    # folds pool in fold order, whatever order the cells arrived in
    assert (panels["toy"][1].positive[:25] == cells["enc-L2/toy/dpr-fold=1"][0]).all()
    paths = write_geometry_plots(panels, tmp_path)
    assert paths == [tmp_path / "geometry_toy.png"]
    data = paths[0].read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert render_geometry_plot("toy", panels["toy"]) == data  # deterministic bytes
    edges = panel_edges(panels["toy"][2])
    assert edges[0] < 0.998 and 0.999 < edges[-1] <= 1.0
    assert histogram(panels["toy"][2].positive, edges).sum() == pytest.approx(1.0)


def test_geometry_plot_reads_records_and_rejects_foreign_cells():
    cells = _synthetic_cells(np.random.default_rng(1))
    records = [Record("geometry", f"test_geometry[{c}]", m, float(np.mean(v)), per_query=list(v))
               for c, (pos, rand) in cells.items() for m, v in (("pos_cosine", pos), ("rand_cosine", rand))]
    records.append(Record("grid", "test_grid[bm25-kiwi/toy/fold=1/k=5]", "pos_cosine", 0.5, per_query=[0.5]))
    from_records = panels_from_records(records)
    direct = pool_panels(cells)
    assert [p.label for p in from_records["toy"]] == [p.label for p in direct["toy"]]
    assert all((a.random == b.random).all() for a, b in zip(from_records["toy"], direct["toy"]))
    assert parse_geometry_cell("test_geometry[e5-small-L3/korquad-dev/dpr-fold=4]") == (
        "e5-small-L3", "korquad-dev", "dpr", 4)
    with pytest.raises(OdqaBenchError, match="not <family-size>"):
        pool_panels({"bm25/toy/k=5": (np.ones(2), np.ones(2))})
    with pytest.raises(OdqaBenchError, match="no panels"):
        render_geometry_plot("toy", [])
