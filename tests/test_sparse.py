"""Sparse retrievers: exact parity with rank_bm25 and bm25s, Anserini's SciFact numbers, and
the contract edge cases (unknown names, empty corpus, unknown tokens, k beyond the corpus)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.data import Corpus, Dataset, load_dataset
from odqa_core.errors import OdqaBenchError
from odqa_core.metrics import evaluate
from odqa_core.retrieval import get_retriever, retrieve, retriever_names
from odqa_core.text import get_tokenizer, tokenize_cached

# Anserini BM25 flat (k1=0.9, b=0.4, Lucene English analyzer) on BEIR SciFact test.
ANSERINI_SCIFACT = {"ndcg@10": 0.6789, "recall@100": 0.9253}


@pytest.fixture(scope="module")
def scifact(module_cache: object, data_root: object) -> Dataset:
    return load_dataset("scifact")


def _rank_bm25_scores(docs: list[list[str]], queries: list[list[str]]) -> tuple[np.ndarray, int]:
    """rank_bm25's full score matrix, and how many query terms hit its epsilon idf floor."""
    from rank_bm25 import BM25Okapi

    ref = BM25Okapi(docs, k1=1.5, b=0.75, epsilon=0.25)
    floored = sum(ref.idf.get(t) == ref.epsilon * ref.average_idf for q in queries for t in q)
    return np.vstack([ref.get_scores(q) for q in queries]), floored


def test_robertson_matches_rank_bm25_on_default() -> None:
    ds = load_dataset("default")
    tok = get_tokenizer("regex")
    bm = get_retriever("bm25", tokenizer="regex", variant="robertson", k1=1.5, b=0.75).index(ds.corpus)
    ours = bm.score_all(ds.query_texts)
    ref, _ = _rank_bm25_scores(tok(ds.corpus.joined()), tok(ds.query_texts))
    assert ours.shape == ref.shape == (ds.n_queries, len(ds.corpus))
    assert (ref != 0).sum() > ds.n_queries  # the comparison is not between two zero matrices
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    peer = get_retriever("bm25-rank", tokenizer="regex").index(ds.corpus)
    np.testing.assert_allclose(peer.score_all(ds.query_texts), ref, rtol=1e-12)


def test_robertson_matches_rank_bm25_on_scifact(scifact: Dataset) -> None:
    tok = get_tokenizer("regex")
    queries = scifact.query_texts[:50]
    bm = get_retriever("bm25", tokenizer="regex", variant="robertson", k1=1.5, b=0.75).index(scifact.corpus)
    ours = bm.score_all(queries)
    ref, floored = _rank_bm25_scores(tokenize_cached(tok, scifact.corpus.joined()), tok(queries))
    assert floored > 0  # terms in over half the abstracts: rank_bm25's epsilon idf floor is exercised
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def scifact_lucene(scifact: Dataset):
    return get_retriever("bm25", tokenizer="regex-stem").index(scifact.corpus)


def test_lucene_bm25_reproduces_anserini_scifact(scifact: Dataset, scifact_lucene) -> None:
    run = retrieve(scifact_lucene, scifact, 100)
    got = {m: float(v.mean()) for m, v in evaluate(run, scifact.qrels, list(ANSERINI_SCIFACT)).items()}
    for metric, want in ANSERINI_SCIFACT.items():
        assert abs(got[metric] - want) <= 0.005, (metric, got[metric], want)


def test_lucene_bm25_agrees_with_bm25s(scifact: Dataset, scifact_lucene) -> None:
    bm25s = pytest.importorskip("bm25s")
    tok = get_tokenizer("regex-stem")
    docs = tokenize_cached(tok, scifact.corpus.joined())
    peer = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
    peer.index(docs, show_progress=False)
    ref_idx, ref_sc = peer.retrieve(tok(scifact.query_texts), k=10, show_progress=False, n_threads=1)
    idx, sc = scifact_lucene.search(scifact.query_texts, 10)
    same = (idx == np.asarray(ref_idx)).all(axis=1)
    assert same.mean() >= 0.95, same.mean()
    # bm25s scores in float32: agree to float32 precision where the rankings agree
    np.testing.assert_allclose(sc[same], np.asarray(ref_sc)[same], rtol=1e-5)


def test_unknown_names_list_known_ones(tiny_corpus: Corpus) -> None:
    with pytest.raises(OdqaBenchError, match=r"unknown retriever 'bm99'; known: .*bm25, bm25-rank.*tfidf"):
        get_retriever("bm99")
    assert {"bm25", "bm25-rank", "tfidf"} <= set(retriever_names())
    with pytest.raises(OdqaBenchError, match="unknown bm25 variant 'okapi'; known: lucene, robertson, atire"):
        get_retriever("bm25", variant="okapi").index(tiny_corpus)
    with pytest.raises(OdqaBenchError, match=r"retriever 'bm25': bad parameters"):
        get_retriever("bm25", k3=1.0)
    with pytest.raises(OdqaBenchError, match="unknown tokenizer 'nope'"):
        get_retriever("bm25", tokenizer="nope").index(tiny_corpus)


@pytest.mark.parametrize("name", ["bm25", "tfidf", "bm25-rank"])
def test_search_before_index_and_empty_corpus(name: str) -> None:
    with pytest.raises(OdqaBenchError, match="search before index"):
        get_retriever(name).search(["query"], 3)
    with pytest.raises(OdqaBenchError, match="cannot index an empty corpus"):
        get_retriever(name).index(Corpus([], [], []))


@pytest.mark.parametrize("name", ["bm25", "tfidf", "bm25-rank"])
def test_unknown_tokens_and_short_corpus_pad(name: str, tiny_corpus: Corpus) -> None:
    r = get_retriever(name).index(tiny_corpus)
    idx, sc = r.search(["zzz qqq", "", "kimchi cabbage"], 10)
    assert idx.shape == sc.shape == (3, 10)
    assert idx.dtype == np.int64
    assert (idx[:2] == -1).all() and np.isneginf(sc[:2]).all()
    assert idx[2, 0] == 2  # d3, the only kimchi document
    assert (idx[2, 1:] == -1).all() and np.isneginf(sc[2, 1:]).all()


@pytest.mark.parametrize("name", ["bm25", "tfidf"])
def test_k_beyond_corpus_pads_and_rows_are_sorted(name: str, tiny_corpus: Corpus) -> None:
    r = get_retriever(name).index(tiny_corpus)
    idx, sc = r.search(["korea city capital seoul"], 50)
    found = idx[0][idx[0] >= 0]
    assert 2 <= len(found) <= len(tiny_corpus)
    assert len(set(found.tolist())) == len(found)
    assert (idx[0, len(found):] == -1).all() and np.isneginf(sc[0, len(found):]).all()
    assert (np.diff(sc[0, : len(found)]) <= 0).all()
    assert (sc[0, : len(found)] > 0).all()
    assert found[0] == 0  # d1 "Seoul ... capital of Korea"


def test_bm25_ties_break_by_doc_id_descending() -> None:
    corpus = Corpus(["a", "c", "b"], ["", "", ""], ["same words here", "same words here", "same words here"])
    idx, sc = get_retriever("bm25").index(corpus).search(["words"], 3)
    assert sc[0, 0] == sc[0, 1] == sc[0, 2] > 0
    assert [corpus.ids[j] for j in idx[0]] == ["c", "b", "a"]


@pytest.mark.parametrize("name", ["bm25", "tfidf"])
def test_two_index_builds_are_identical(name: str) -> None:
    ds = load_dataset("default")
    a = get_retriever(name).index(ds.corpus).search(ds.query_texts, 20)
    b = get_retriever(name).index(ds.corpus).search(ds.query_texts, 20)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_search_matches_dense_scores() -> None:
    ds = load_dataset("default")
    bm = get_retriever("bm25", variant="atire").index(ds.corpus)
    idx, sc = bm.search(ds.query_texts, 5)
    full = bm.score_all(ds.query_texts)
    best = full.max(axis=1)
    np.testing.assert_allclose(sc[:, 0], np.where(best > 0, best, -np.inf))  # only positive scores are hits
    rows = np.arange(len(idx))[:, None]
    np.testing.assert_array_equal(np.where(idx >= 0, full[rows, np.maximum(idx, 0)], -np.inf), sc)


def test_tfidf_finds_identical_text_first() -> None:
    ds = load_dataset("default")
    r = get_retriever("tfidf", tokenizer="regex").index(ds.corpus)
    picks = [3, 17, 40, len(ds.corpus) - 1]
    idx, sc = r.search([ds.corpus.joined()[j] for j in picks], 3)
    assert idx[:, 0].tolist() == picks
    np.testing.assert_allclose(sc[:, 0], 1.0, rtol=1e-9)


def test_bm25_default_dataset_quality() -> None:
    """A sanity floor on the embedded sample: BM25 with Korean morphemes finds most gold passages."""
    ds = load_dataset("default")
    run = retrieve(get_retriever("bm25", tokenizer="kiwi").index(ds.corpus), ds, 10)
    hit = evaluate(run, ds.qrels, ["hit@10"])["hit@10"].mean()
    assert hit >= 0.9, hit


@pytest.mark.parametrize("tokenizer", ["regex", "char2"])
def test_numba_backend_returns_the_numpy_run(tokenizer):
    """The optional numba kernel must return exactly the scipy backend's run: same docs, same
    order (trec_eval ties), bit-identical scores."""
    pytest.importorskip("numba")
    ds = load_dataset("default")
    for name in ("bm25", "tfidf"):
        a = get_retriever(name, tokenizer=tokenizer, backend="numpy").index(ds.corpus)
        b = get_retriever(name, tokenizer=tokenizer, backend="numba").index(ds.corpus)
        for k in (1, 7, 200):
            ia, sa = a.search(ds.query_texts + ["zzzz unknown"], k)
            ib, sb = b.search(ds.query_texts + ["zzzz unknown"], k)
            assert np.array_equal(ia, ib)
            assert np.array_equal(sa, sb)


def test_unknown_backend_is_refused():
    r = get_retriever("bm25", backend="gpu").index(load_dataset("default").corpus)
    with pytest.raises(OdqaBenchError, match="unknown backend"):
        r.search(["x"], 5)


@pytest.mark.parametrize("n_queries", [5, 80])  # below and above the parallel launch threshold
@pytest.mark.parametrize("k", [1, 3, 50])
def test_numba_kernel_matches_dense_topk_on_tied_scores(n_queries: int, k: int) -> None:
    """Small integer weights make many exact ties, and some queries touch every document (the
    branch-free touched list is then full): the kernel must still return the reference top k."""
    pytest.importorskip("numba")
    import scipy.sparse as sp

    from odqa_core.retrieval.kernels import sparse_topk
    from odqa_core.retrieval.run import topk

    rng = np.random.default_rng(k * 1000 + n_queries)
    n_docs, n_terms = 40, 12
    wt = sp.random(n_terms, n_docs, density=0.4, random_state=rng, data_rvs=lambda m: rng.integers(1, 4, m)).tolil()
    wt[0] = 1.0  # term 0 occurs in every document
    wt = sp.csr_matrix(wt, dtype=np.float64)
    q = sp.random(n_queries, n_terms, density=0.3, random_state=rng, data_rvs=lambda m: rng.integers(1, 3, m)).tolil()
    q[::3, 0] = 1.0
    q = sp.csr_matrix(q, dtype=np.float64)
    ties = rng.permutation(n_docs).astype(np.int64)
    idx, sc = sparse_topk(q, wt, ties, k)
    ref_idx, ref_sc = topk((q @ wt).toarray(), k, ties, positive_only=True)
    assert np.array_equal(idx, ref_idx)
    assert np.array_equal(sc, ref_sc)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "zz", ""]), max_size=8), max_size=6))
def test_query_terms_equal_build_counts(queries: list[list[str]]) -> None:
    """The scipy-free query path makes exactly the canonical CSR that ``build_counts`` makes:
    same sorted term ids, same counts, unknown tokens dropped (the kernel sums in that order)."""
    from odqa_core.retrieval.sparse import build_counts, query_terms

    vocab = {"a": 0, "b": 1, "c": 2, "d": 3}
    ref, _ = build_counts(queries, dict(vocab))
    got = query_terms(queries, vocab)
    assert got.shape == ref.shape
    assert np.array_equal(got.indptr, ref.indptr)
    assert np.array_equal(got.indices, ref.indices)
    assert np.array_equal(got.data, ref.data)
    assert (got.csr() != ref).nnz == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "zz", "q"]), max_size=8), max_size=12))
def test_query_terms_numpy_path_equals_the_python_one(queries) -> None:
    """Large batches count terms with numpy: the same rows, ids, counts and dtypes as the loop."""
    from odqa_core.retrieval import sparse as sparse_mod

    vocab = {"a": 3, "b": 0, "c": 2, "d": 1}  # "zz" and "q" are unknown
    small = sparse_mod.query_terms(queries, vocab)
    big = sparse_mod._query_terms_numpy(queries, vocab, sum(len(q) for q in queries))
    for name in ("indptr", "indices", "data"):
        a, b = getattr(small, name), getattr(big, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert small.shape == big.shape


@pytest.mark.parametrize("name", ["bm25", "tfidf"])
def test_index_counts_with_the_collector_paused_and_restores_it(name: str, tiny_corpus: Corpus,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokenising and counting run with the cyclic collector off (it would walk every token list
    again and again on a large corpus); afterwards it is back as it was, also after an error."""
    import gc

    from odqa_core.retrieval import sparse

    seen = []
    real = sparse.build_counts

    def spy(docs, vocab=None):
        seen.append(gc.isenabled())
        return real(docs, vocab)

    monkeypatch.setattr(sparse, "build_counts", spy)
    assert gc.isenabled()
    get_retriever(name, tokenizer="regex").index(tiny_corpus)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        with sparse.gc_paused():
            pass
        assert not gc.isenabled()  # a caller's own pause is left alone
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), sparse.gc_paused():
        raise RuntimeError("build failed")
    assert gc.isenabled()
