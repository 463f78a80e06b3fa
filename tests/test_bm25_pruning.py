"""MaxScore pruning in the numba kernel returns the exhaustive kernel's run exactly: the same
documents, the same float scores and trec_eval's tie order, on random weights full of ties."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.data import Corpus
from odqa_core.errors import OdqaBenchError
from odqa_core.retrieval import get_retriever
from odqa_core.retrieval.run import topk

pytest.importorskip("numba")

from odqa_core.retrieval import kernels  # noqa: E402
from odqa_core.retrieval.kernels import KTH_DEPTHS, PRUNE_MODES, sparse_topk, term_bounds  # noqa: E402


@st.composite
def problems(draw: st.DrawFn) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, int]:
    """A term-document weight matrix, a query batch and tie keys. Weights are small multiples
    of a step (many exact ties) or arbitrary floats; queries may repeat a term in one row."""
    n_docs = draw(st.integers(1, 60))
    n_terms = draw(st.integers(1, 8))
    n_queries = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    tied = draw(st.booleans())
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.05, 0.3, 0.9]))
    mask = rng.random((n_terms, n_docs)) < density
    if draw(st.booleans()):
        mask[0] = True  # a term in every document
    vals = rng.integers(1, 4, size=mask.shape) * 0.5 if tied else rng.random(mask.shape) * 3.0
    wt = sp.csr_matrix(np.where(mask, vals, 0.0))
    wt.sort_indices()
    rows, cols, data = [0], [], []
    for _ in range(n_queries):
        m = int(rng.integers(0, 6))
        cols.extend(rng.integers(0, n_terms, size=m).tolist())
        data.extend((rng.integers(1, 3, size=m) * 1.0 if tied else rng.random(m) + 0.1).tolist())
        rows.append(len(cols))
    q = sp.csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(cols, dtype=np.int32),
                       np.asarray(rows, dtype=np.int64)), shape=(n_queries, n_terms))
    ties = rng.permutation(n_docs).astype(np.int64)
    k = draw(st.integers(1, n_docs + 5))
    return wt, q, ties, k


@settings(max_examples=300, deadline=None)
@given(problems())
def test_pruned_kernel_returns_the_exhaustive_run(problem) -> None:
    """Rows may repeat a term (summed in row order by every path), be empty, or match fewer
    than k documents (padding)."""
    wt, q, ties, k = problem
    bounds = term_bounds(wt)
    want_idx, want_sc = sparse_topk(q, wt, ties, k, bounds, prune="never")
    for prune in ("always", "auto"):
        idx, sc = sparse_topk(q, wt, ties, k, bounds, prune=prune)
        assert np.array_equal(idx, want_idx), prune
        assert np.array_equal(sc, want_sc), prune
    with pytest.MonkeyPatch.context() as mp:  # auto on corpora this small: let its rule pick pruning
        mp.setattr(kernels, "PRUNE_MIN_POSTINGS", 0)
        mp.setattr(kernels, "PRUNE_MIN_SKIP", (0.0, 0.0))
        idx, sc = sparse_topk(q, wt, ties, k, bounds, prune="auto")
        assert np.array_equal(idx, want_idx) and np.array_equal(sc, want_sc)


@pytest.mark.parametrize("threads", [1, 2])
def test_pruned_batches_above_the_parallel_threshold(threads: int) -> None:
    """A batch large enough for the parallel kernel, queries mixing pruned and exhaustive rows."""
    import numba

    rng = np.random.default_rng(threads)
    n_docs, n_terms = 3_000, 40
    df = np.maximum(1, (n_docs * rng.random(n_terms) ** 3).astype(int))
    dense = np.zeros((n_terms, n_docs))
    for t in range(n_terms):
        dense[t, rng.choice(n_docs, df[t], replace=False)] = rng.integers(1, 5, df[t]) * 0.25
    wt = sp.csr_matrix(dense)
    q = sp.csr_matrix((rng.random((kernels.PARALLEL_MIN_QUERIES + 36, n_terms)) < 0.1) * 1.0)
    ties = rng.permutation(n_docs).astype(np.int64)
    bounds = term_bounds(wt)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        want = sparse_topk(q, wt, ties, 10, bounds, "never")
        for prune in ("always", "auto"):
            got = sparse_topk(q, wt, ties, 10, bounds, prune)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), prune
    finally:
        numba.set_num_threads(before)
    ref_idx, ref_sc = topk((q @ wt).toarray(), 10, ties, positive_only=True)
    assert np.array_equal(want[0], ref_idx) and np.array_equal(want[1], ref_sc)


@settings(max_examples=200, deadline=None)
@given(problems())
def test_pruned_kernel_matches_scipy_reference(problem) -> None:
    """Canonical query rows (sorted, unique terms), as the retrievers make them: the pruned run
    is the scipy product's exact top k, tie order included."""
    wt, q, ties, k = problem
    q = q.copy()
    q.sum_duplicates()
    idx, sc = sparse_topk(q, wt, ties, k, term_bounds(wt), prune="always")
    ref_idx, ref_sc = topk((q @ wt).toarray(), k, ties, positive_only=True)
    assert np.array_equal(idx, ref_idx)
    assert np.array_equal(sc, ref_sc)


@settings(max_examples=300, deadline=None)
@given(problems(), st.sampled_from(["positive", "zeros", "negative"]))
def test_exhaustive_paths_agree_with_scipy(problem, weights) -> None:
    """The exhaustive kernel lists touched documents (strictly positive weights, few postings)
    or scans every document: both return the scipy product's exact top k, and a stored zero or
    a negative weight (a document whose sum returns to 0) sends it to the scan."""
    wt, q, ties, k = problem
    wt = wt.copy()
    if weights != "positive" and wt.nnz:
        wt.data[:: 3] = 0.0 if weights == "zeros" else -wt.data[:: 3]
    q = q.copy()
    q.sum_duplicates()
    bounds = term_bounds(wt)
    assert bounds.positive == (weights == "positive" or wt.nnz == 0)
    ref_idx, ref_sc = topk((q @ wt).toarray(), k, ties, positive_only=True)
    for ratio in (0.0, 1e18):  # always list where allowed, always scan
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "DENSE_DOCS_PER_POSTING", ratio)
            idx, sc = sparse_topk(q, wt, ties, k, bounds, prune="never")
        assert np.array_equal(idx, ref_idx), ratio
        assert np.array_equal(sc, ref_sc), ratio


def test_pruning_skips_documents_and_keeps_the_run() -> None:
    """A rare, heavy term and a term in every document: once the heap holds k documents of the
    rare term, the common term is non-essential, yet the run is the exhaustive one."""
    n_docs = 5_000
    rng = np.random.default_rng(0)
    common = rng.random(n_docs) * 0.1 + 0.01
    rare = np.zeros(n_docs)
    rare[rng.choice(n_docs, 30, replace=False)] = rng.random(30) + 5.0
    wt = sp.csr_matrix(np.vstack([common, rare]))
    q = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0]]))
    ties = np.arange(n_docs, dtype=np.int64)
    want = sparse_topk(q, wt, ties, 10, term_bounds(wt), prune="never")
    got = sparse_topk(q, wt, ties, 10, term_bounds(wt), prune="always")
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert set(want[0][0]) <= set(np.flatnonzero(rare))


def test_negative_weights_fall_back_to_the_exhaustive_kernel() -> None:
    """Bounds assume non-negative weights; with a negative one every mode scores exhaustively."""
    wt = sp.csr_matrix(np.array([[1.0, -0.5, 2.0], [0.5, 1.0, 0.0]]))
    q = sp.csr_matrix(np.array([[1.0, 1.0]]))
    ties = np.arange(3, dtype=np.int64)
    bounds = term_bounds(wt)
    assert not bounds.nonnegative
    ref_idx, ref_sc = topk((q @ wt).toarray(), 3, ties, positive_only=True)
    idx, sc = sparse_topk(q, wt, ties, 3, bounds, prune="always")
    assert np.array_equal(idx, ref_idx) and np.array_equal(sc, ref_sc)


def test_term_bounds_are_row_maxima_and_kth_largest() -> None:
    rng = np.random.default_rng(3)
    dense = np.zeros((4, 1500))
    dense[0, :3] = [0.0, 2.0, 1.0]
    dense[2, rng.choice(1500, 50, replace=False)] = rng.random(50) + 0.1
    dense[3] = rng.random(1500) + 0.1
    wt = sp.csr_matrix(dense)
    b = term_bounds(wt)
    assert np.array_equal(b.term_max, dense.max(axis=1))
    assert b.nonnegative and b.nbytes == 4 * 8 * (1 + len(KTH_DEPTHS))
    for a, depth in enumerate(KTH_DEPTHS):
        for t in range(4):
            row = np.sort(dense[t][dense[t] > 0])[::-1]
            assert b.term_kth[a, t] == (row[depth - 1] if len(row) >= depth else 0.0)
    assert np.array_equal(b.floor(7), b.term_kth[0]) and np.array_equal(b.floor(11), b.term_kth[1])
    assert not b.floor(KTH_DEPTHS[-1] + 1).any()


def test_unknown_prune_is_refused() -> None:
    with pytest.raises(ValueError, match="prune must be one of"):
        sparse_topk(sp.csr_matrix((1, 1)), sp.csr_matrix((1, 1)), np.zeros(1, dtype=np.int64), 1, None, "sometimes")
    r = get_retriever("bm25", prune="sometimes", backend="numba").index(Corpus(["a"], [""], ["x y"], []))
    with pytest.raises(OdqaBenchError, match="unknown prune"):
        r.search(["x"], 1)


WORDS = ["a", "b", "c", "d", "e", "f", "gg", "hh"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12), min_size=1, max_size=40),
       st.lists(st.lists(st.sampled_from(WORDS + ["zz"]), max_size=6), min_size=1, max_size=5),
       st.integers(1, 45), st.sampled_from(["bm25", "tfidf"]))
def test_retriever_runs_agree_across_backends_and_pruning(module_cache, docs, queries, k, name) -> None:
    """Through the retrievers: repeated query words, unknown words, empty queries and k beyond
    the corpus give the same run with scipy, the exhaustive kernel and every pruning mode."""
    ids = [f"d{i:02d}" for i in range(len(docs))]
    corpus = Corpus(ids, [""] * len(docs), [" ".join(d) for d in docs], [])
    texts = [" ".join(q) for q in queries]
    want = get_retriever(name, tokenizer="regex", backend="numpy").index(corpus).search(texts, k)
    for prune in PRUNE_MODES:
        got = get_retriever(name, tokenizer="regex", backend="numba", prune=prune).index(corpus).search(texts, k)
        assert np.array_equal(got[0], want[0]), prune
        assert np.array_equal(got[1], want[1]), prune


def test_auto_prunes_only_queries_that_skip_nearly_all_their_postings() -> None:
    """Two terms: a rare one whose top weights set the threshold, a common one whose bound stays
    below it (non-essential from the start). Its share of the query's postings decides: 0.96 is
    enough at top-10, not at top-100, whose threshold rises later."""
    from scipy import sparse

    from odqa_core.retrieval.kernels import prune_plan

    n_docs, rare, common = 20_000, 400, 9_600  # the common term holds 0.96 of the postings
    dense = np.zeros((2, n_docs))
    dense[0, :rare] = 10.0
    dense[1, rare:rare + common] = 0.5
    wt = sparse.csr_matrix(dense)
    q = sparse.csr_matrix(np.ones((1, 2)))
    bounds = term_bounds(wt)
    assert prune_plan(q, wt, 10, bounds).tolist() == [True]
    assert prune_plan(q, wt, 100, bounds).tolist() == [False]
    assert prune_plan(q, wt, 100, bounds, "always").tolist() == [True]
    assert prune_plan(q, wt, 10, bounds, "never").tolist() == [False]
    small = np.zeros((2, 2_000))  # the same shares over 1,000 postings: too few to pay for pruning
    small[0, :40] = 10.0
    small[1, 40:1_000] = 0.5
    few = sparse.csr_matrix(small)
    assert prune_plan(q, few, 10, term_bounds(few)).tolist() == [False]
    assert prune_plan(q, few, 10, term_bounds(few), "always").tolist() == [True]
