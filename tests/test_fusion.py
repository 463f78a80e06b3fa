"""Score fusion, reciprocal rank fusion and BM25 -> dense re-ranking."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("torch")

from odqa_core.data import load_dataset  # noqa: E402
from odqa_core.encoders import get_encoder  # noqa: E402
from odqa_core.errors import OdqaBenchError  # noqa: E402
from odqa_core.retrieval import Run, get_retriever, retriever_names  # noqa: E402
from odqa_core.retrieval.fusion import fuse_scores, normalize, rrf  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny():
    return get_encoder("tiny", seed=0)


@pytest.fixture(scope="module")
def ds():
    return load_dataset("default")


def test_minmax_by_hand():
    got = normalize(np.array([[1.0, 2.0, 5.0], [3.0, 3.0, 3.0]]), "minmax")
    np.testing.assert_allclose(got, [[0.0, 0.25, 1.0], [0.0, 0.0, 0.0]])


def test_zscore_by_hand():
    got = normalize(np.array([[1.0, 2.0, 3.0], [4.0, 0.0, 2.0]]), "zscore")
    s = np.sqrt(2.0 / 3.0)
    np.testing.assert_allclose(got, [[-1 / s, 0.0, 1 / s], [2 / np.sqrt(8 / 3), -2 / np.sqrt(8 / 3), 0.0]])


def test_none_is_identity_and_minus_inf_is_kept():
    x = np.array([[0.2, -1.0, 7.0]])
    np.testing.assert_array_equal(normalize(x, "none"), x)
    got = normalize(np.array([[2.0, -np.inf, 4.0]]), "minmax")
    assert got[0, 0] == 0.0 and got[0, 2] == 1.0 and np.isneginf(got[0, 1])


def test_fuse_scores_by_hand():
    dense = np.array([[0.1, 0.3, 0.2]])
    sparse = np.array([[10.0, 0.0, 5.0]])
    np.testing.assert_allclose(fuse_scores(dense, sparse, lam=1.1, norm="none"), [[10.11, 0.33, 5.22]])
    np.testing.assert_allclose(fuse_scores(dense, sparse, lam=2.0, norm="minmax"), [[1.0, 2.0, 1.5]])
    with pytest.raises(OdqaBenchError, match="differ in shape"):
        fuse_scores(dense, sparse[:, :2])
    with pytest.raises(OdqaBenchError, match="unknown score normalisation 'l2'"):
        fuse_scores(dense, sparse, norm="l2")


def test_rrf_by_hand():
    a = np.array([[0, 1, 2], [4, -1, -1]])
    b = np.array([[2, 0, -1], [3, 4, -1]])
    idx, sc = rrf([a, b], k=60)
    # row 0: d0 = 1/61 + 1/62, d2 = 1/63 + 1/61, d1 = 1/62; row 1: d4 = 1/61 + 1/62, d3 = 1/61
    assert idx.tolist() == [[0, 2, 1], [4, 3, -1]]
    np.testing.assert_allclose(sc[0], [1 / 61 + 1 / 62, 1 / 61 + 1 / 63, 1 / 62])
    np.testing.assert_allclose(sc[1, :2], [1 / 61 + 1 / 62, 1 / 61])
    assert np.isneginf(sc[1, 2])
    top_idx, _ = rrf([a, b], k=0, top=1)
    assert top_idx.tolist() == [[0], [4]]  # k=0: d0 = 1 + 1/2 beats d2 = 1/3 + 1


def test_rrf_over_runs_breaks_ties_by_doc_id_descending():
    docs = np.array(["a", "b", "c"], dtype=object)
    r1 = Run(["q"], docs, np.array([[0, 2]]), np.array([[2.0, 1.0]]))
    r2 = Run(["q"], docs, np.array([[2, 0]]), np.array([[2.0, 1.0]]))
    idx, sc = rrf([r1, r2])
    assert [docs[i] for i in idx[0]] == ["c", "a"] and sc[0, 0] == sc[0, 1]
    other = Run(["q"], np.array(["a", "b", "x"], dtype=object), np.array([[0]]), np.array([[1.0]]))
    with pytest.raises(OdqaBenchError, match="different document lists"):
        rrf([r1, other])


def test_fusion_names_are_registered():
    assert {"hybrid", "hybrid-rrf", "sequential"} <= set(retriever_names())


def test_hybrid_with_lam_zero_ranks_like_bm25(ds, tiny):
    bm25 = get_retriever("bm25").index(ds.corpus)
    b_idx, _ = bm25.search(ds.query_texts, 10)
    hyb = get_retriever("hybrid", lam=0.0, encoder=tiny).index(ds.corpus)
    h_idx, _ = hyb.search(ds.query_texts, 10)
    compared = 0
    for b_row, h_row in zip(b_idx, h_idx):
        n = int((b_row >= 0).sum())
        assert h_row[:n].tolist() == b_row[:n].tolist()
        compared += n
    assert compared > 5 * len(b_idx)


def test_hybrid_scores_are_the_fused_scores(ds, tiny):
    hyb = get_retriever("hybrid", lam=1.1, norm="zscore", encoder=tiny).index(ds.corpus)
    queries = ds.query_texts[:7]
    idx, sc = hyb.search(queries, 5)
    want = fuse_scores(hyb.dense.score_all(queries), hyb.sparse.score_all(queries), 1.1, "zscore")
    np.testing.assert_allclose(sc, np.take_along_axis(want, idx, axis=1), atol=1e-9)
    assert (sc[:, 0] >= want.max(axis=1) - 1e-9).all()
    dense_only = get_retriever("dense", encoder=tiny).index(ds.corpus).search(queries, 5)[0]
    assert not np.array_equal(idx, dense_only)  # the sparse part does change the ranking


def test_hybrid_rrf_equals_rrf_of_the_parts(ds, tiny):
    hyb = get_retriever("hybrid-rrf", depth=20, encoder=tiny).index(ds.corpus)
    idx, sc = hyb.search(ds.query_texts, 10)
    d, _ = hyb.dense.search(ds.query_texts, 20)
    s, _ = hyb.sparse.search(ds.query_texts, 20)
    want_idx, want_sc = rrf([d, s], k=60, top=10, ties=hyb._ties)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(sc, want_sc)
    assert hyb.name == "hybrid-rrf"


def test_sequential_stays_inside_the_bm25_top_n(ds, tiny):
    depth = 4
    bm25 = get_retriever("bm25").index(ds.corpus)
    b_idx, _ = bm25.search(ds.query_texts, depth)
    seq = get_retriever("sequential", depth=depth, encoder=tiny).index(ds.corpus)
    s_idx, s_sc = seq.search(ds.query_texts, 10)
    assert (s_idx[:, depth:] == -1).all()
    for b_row, s_row, sc_row in zip(b_idx, s_idx, s_sc):
        assert set(s_row[s_row >= 0]) == set(b_row[b_row >= 0])
        assert (np.diff(sc_row[s_row >= 0]) <= 0).all()
    want = seq.dense.score_docs(ds.query_texts, s_idx)
    np.testing.assert_allclose(s_sc[s_idx >= 0], want[s_idx >= 0], atol=1e-9)
    # the re-ranking reorders BM25's list for at least some queries
    assert any(list(b[b >= 0]) != list(s[s >= 0]) for b, s in zip(b_idx, s_idx))


@pytest.mark.parametrize("name, params, match", [
    ("hybrid", {"norm": "rank"}, "unknown score normalisation 'rank'"),
    ("hybrid", {"method": "borda"}, "unknown hybrid method 'borda'"),
    ("hybrid", {"sparse": "nope"}, "unknown retriever 'nope'"),
    ("hybrid-rrf", {"method": "scores"}, "fixed to 'rrf'"),
    ("sequential", {"depth": 0}, "depth must be a positive integer"),
    ("hybrid", {"dense_model": "nope"}, "unknown encoder family 'nope'"),
])
def test_bad_fusion_options(name, params, match):
    with pytest.raises(OdqaBenchError, match=match):
        get_retriever(name, **params)
