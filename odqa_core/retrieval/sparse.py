"""Lexical retrievers on scipy sparse matrices: ``bm25`` (vectorised, eager scoring),
``tfidf`` and the reference peer ``bm25-rank`` (rank_bm25's BM25Okapi, for parity and speed).

BM25 weights every (document, term) pair once at index time; a query batch is then one sparse
product ``Q @ W.T`` and an exact top-k (bm25s's eager-scoring idea, done as matrix algebra).
"""
from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..data.types import Corpus
from ..errors import OdqaBenchError
from ..text import get_tokenizer, tokenize_cached
from .run import tie_keys, topk

__all__ = ["BM25", "TfIdf", "RankBM25", "QueryTerms", "build_counts", "gc_paused", "query_terms", "BM25_VARIANTS"]

QUERY_CHUNK = 512


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while an index build allocates millions of acyclic
    objects (token lists, vocabulary entries), which each collection would walk again. Restored
    as it was, also on error."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build_counts(docs: list[list[str]], vocab: dict[str, int] | None = None) -> tuple[sp.csr_matrix, dict[str, int]]:
    """Document-term count matrix. With ``vocab`` given, unknown tokens are dropped (queries)."""
    grow = vocab is None
    vocab = {} if vocab is None else vocab
    indptr = np.zeros(len(docs) + 1, dtype=np.int64)
    cols: list[int] = []
    for i, toks in enumerate(docs):
        if grow:
            cols.extend(vocab.setdefault(t, len(vocab)) for t in toks)
        else:
            get = vocab.get
            cols.extend(c for c in (get(t) for t in toks) if c is not None)
        indptr[i + 1] = len(cols)
    ind = np.asarray(cols, dtype=np.int32)
    m = sp.csr_matrix((np.ones(len(ind), dtype=np.float64), ind, indptr), shape=(len(docs), len(vocab)))
    m.sum_duplicates()
    return m, vocab


@dataclass(frozen=True)
class QueryTerms:
    """A query batch as canonical CSR arrays (each row's term ids sorted and unique, counts as
    data): what ``build_counts`` makes for queries, without a scipy matrix's construction cost,
    which dominates a one-query search."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    def csr(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


# batches with at least this many tokens count their terms with numpy, smaller ones in Python
VECTOR_MIN_TOKENS = 512


def query_terms(queries: list[list[str]], vocab: dict[str, int]) -> QueryTerms:
    """Count each query's known tokens into sorted (term id, count) rows; unknown tokens drop."""
    n_tokens = sum(len(q) for q in queries)
    if n_tokens >= VECTOR_MIN_TOKENS:
        return _query_terms_numpy(queries, vocab, n_tokens)
    get = vocab.get
    indptr = np.zeros(len(queries) + 1, dtype=np.int32)
    ids: list[int] = []
    counts: list[float] = []
    for i, toks in enumerate(queries):
        row: dict[int, float] = {}
        for t in toks:
            c = get(t)
            if c is not None:
                row[c] = row.get(c, 0.0) + 1.0
        for c in sorted(row):
            ids.append(c)
            counts.append(row[c])
        indptr[i + 1] = len(ids)
    return QueryTerms(indptr, np.asarray(ids, dtype=np.int32), np.asarray(counts, dtype=np.float64),
                      (len(queries), len(vocab)))


def _query_terms_numpy(queries: list[list[str]], vocab: dict[str, int], n_tokens: int) -> QueryTerms:
    """:func:`query_terms` for a large batch: one dictionary lookup per token, then numpy sorts
    and counts (query, term) pairs, with no Python work per pair."""
    get = vocab.get
    ids = np.fromiter((get(t, -1) for q in queries for t in q), dtype=np.int64, count=n_tokens)
    rows = np.repeat(np.arange(len(queries), dtype=np.int64), [len(q) for q in queries])
    known = ids >= 0
    pairs, counts = np.unique(rows[known] * max(len(vocab), 1) + ids[known], return_counts=True)
    row_of, term = np.divmod(pairs, max(len(vocab), 1))
    indptr = np.searchsorted(row_of, np.arange(len(queries) + 1)).astype(np.int32)
    return QueryTerms(indptr, term.astype(np.int32), counts.astype(np.float64), (len(queries), len(vocab)))


# --- BM25 variants: small pure functions picked by name --------------------------------------

def _idf_lucene(N: int, df: np.ndarray) -> np.ndarray:
    return np.log1p((N - df + 0.5) / (df + 0.5))


def _idf_robertson(N: int, df: np.ndarray, epsilon: float = 0.25) -> np.ndarray:
    idf = np.log(N - df + 0.5) - np.log(df + 0.5)
    if len(idf):
        idf = np.where(idf < 0, epsilon * idf.mean(), idf)
    return idf


def _idf_atire(N: int, df: np.ndarray) -> np.ndarray:
    return np.log(N / df)


# name -> (idf function, whether the tf part carries Robertson's (k1 + 1) factor)
BM25_VARIANTS: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "lucene": (_idf_lucene, False),
    "robertson": (_idf_robertson, True),
    "atire": (_idf_atire, True),
}


def lucene_length(dl: np.ndarray) -> np.ndarray:
    """Lucene stores document length in one byte (SmallFloat.intToByte4) and decodes it lossily;
    Anserini's scores use the decoded length. Reproduced here for exact Anserini parity."""

    def long_to_int4(i: int) -> int:
        nbits = i.bit_length()
        if nbits < 4:
            return i
        shift = nbits - 4
        return ((i >> shift) & 0x07) | ((shift + 1) << 3)

    def int4_to_long(i: int) -> int:
        bits, shift = i & 0x07, (i >> 3) - 1
        return bits if shift < 0 else (bits | 0x08) << shift

    free = 255 - long_to_int4(2**31 - 1)
    out = np.empty(len(dl), dtype=np.float64)
    for n, v in enumerate(dl.astype(np.int64)):
        b = v if v < free else free + long_to_int4(int(v) - free)
        out[n] = b if b < free else free + int4_to_long(int(b) - free)
    return out


BACKENDS = ("auto", "numpy", "numba")
PRUNE = ("auto", "never", "always")


@dataclass
class _Lexical:
    tokenizer: str = "regex"
    name: str = "sparse"
    backend: str = "auto"
    prune: str = "auto"  # numba backend: MaxScore pruning (auto: per query, where it pays); same runs
    _ties: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _vocab: dict[str, int] = field(default=None, repr=False)  # type: ignore[assignment]
    _wt: sp.csr_matrix = field(default=None, repr=False)  # type: ignore[assignment]
    _bounds: object = field(default=None, repr=False)  # kernels.TermBounds of _wt, for pruning
    _raw_counts = True  # query weights are the counts themselves (False: query_matrix reweights)

    def _doc_tokens(self, corpus: Corpus) -> list[list[str]]:
        if len(corpus) == 0:
            raise OdqaBenchError(f"{self.name}: cannot index an empty corpus")
        return tokenize_cached(get_tokenizer(self.tokenizer), corpus.joined())

    def _doc_counts(self, corpus: Corpus) -> tuple[sp.csr_matrix, dict[str, int]]:
        """The corpus tokenised and counted (document-term counts, vocabulary)."""
        with gc_paused():
            return build_counts(self._doc_tokens(corpus))

    def _set_weights(self, wt: sp.csr_matrix) -> None:
        """Keep the term-document weights (doc-sorted rows, as the kernels walk them) and the
        per-term bounds that pruning reads: one pass over the weights, made with the index."""
        from .kernels import term_bounds

        wt.sort_indices()
        self._wt = wt
        self._bounds = term_bounds(wt)

    def query_terms(self, queries: list[str]) -> QueryTerms:
        return query_terms(get_tokenizer(self.tokenizer)(list(queries)), self._vocab)

    def query_matrix(self, queries: list[str]) -> sp.csr_matrix:
        """The batch's query-term weights (BM25: raw counts) as a CSR matrix."""
        return self.query_terms(queries).csr()

    def score_all(self, queries: list[str]) -> np.ndarray:
        """Dense ``(n_queries, n_docs)`` scores (for parity tests against peers)."""
        if self._wt is None:
            raise OdqaBenchError(f"{self.name}: search before index")
        return (self.query_matrix(queries) @ self._wt).toarray()

    def _backend(self) -> str:
        """Resolve ``auto`` once: numba when installed (same runs, several times faster)."""
        from .kernels import NUMBA_AVAILABLE

        if self.backend not in BACKENDS:
            raise OdqaBenchError(f"{self.name}: unknown backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.backend == "numba" and not NUMBA_AVAILABLE:
            raise OdqaBenchError(f"{self.name}: backend 'numba' needs numba: pip install numba")
        if self.prune not in PRUNE:
            raise OdqaBenchError(f"{self.name}: unknown prune {self.prune!r}; known: {', '.join(PRUNE)}")
        if self.backend == "auto":
            return "numba" if NUMBA_AVAILABLE else "numpy"
        return self.backend

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._wt is None:
            raise OdqaBenchError(f"{self.name}: search before index")
        if self._backend() == "numba":
            from .kernels import sparse_topk

            # raw counts need no scipy matrix: the kernel reads the CSR arrays as they are
            q = self.query_terms(queries) if self._raw_counts else self.query_matrix(queries).tocsr()
            return sparse_topk(q, self._wt, self._ties, k, self._bounds, self.prune)
        q = self.query_matrix(queries)
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        sc = np.full((len(queries), k), -np.inf)
        for s in range(0, len(queries), QUERY_CHUNK):
            dense = (q[s : s + QUERY_CHUNK] @ self._wt).toarray()
            idx[s : s + QUERY_CHUNK], sc[s : s + QUERY_CHUNK] = topk(dense, k, self._ties, positive_only=True)
        return idx, sc


@dataclass
class BM25(_Lexical):
    """Okapi BM25. ``variant``: lucene (default; Lucene/Anserini idf and tf), robertson
    (rank_bm25's BM25Okapi, epsilon-floored idf), atire. ``lucene_norms`` reproduces Lucene's
    one-byte document lengths for exact Anserini parity."""

    k1: float = 0.9
    b: float = 0.4
    variant: str = "lucene"
    lucene_norms: bool = False
    name: str = "bm25"

    def index(self, corpus: Corpus) -> BM25:
        if self.variant not in BM25_VARIANTS:
            raise OdqaBenchError(f"unknown bm25 variant {self.variant!r}; known: {', '.join(BM25_VARIANTS)}")
        counts, self._vocab = self._doc_counts(corpus)
        self._ties = tie_keys(corpus.ids)
        self._set_weights(self.weights(counts).T.tocsr())
        return self

    def weights(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """The BM25 weight of every (document, term) pair present in ``counts``."""
        idf_fn, robertson_tf = BM25_VARIANTS[self.variant]
        N = counts.shape[0]
        dl = np.asarray(counts.sum(axis=1)).ravel()
        avgdl = dl.mean() if N else 1.0
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
        idf = idf_fn(N, df)
        if self.lucene_norms:
            dl = lucene_length(dl)
        norm = self.k1 * (1.0 - self.b + self.b * dl / avgdl)
        rows = np.repeat(np.arange(N), np.diff(counts.indptr))
        tf = counts.data
        w = tf / (tf + norm[rows])
        if robertson_tf:
            w *= self.k1 + 1.0
        w *= idf[counts.indices]
        return sp.csr_matrix((w, counts.indices, counts.indptr), shape=counts.shape)


@dataclass
class TfIdf(_Lexical):
    """Cosine over l2-normalised sublinear tf-idf vectors (scikit-learn's TfidfTransformer)."""

    name: str = "tfidf"
    _raw_counts = False

    def index(self, corpus: Corpus) -> TfIdf:
        from sklearn.feature_extraction.text import TfidfTransformer

        counts, self._vocab = self._doc_counts(corpus)
        self._tf = TfidfTransformer(sublinear_tf=True, norm="l2").fit(counts)
        self._ties = tie_keys(corpus.ids)
        self._set_weights(self._tf.transform(counts).T.tocsr())
        return self

    def query_matrix(self, queries: list[str]) -> sp.csr_matrix:
        return self._tf.transform(super().query_matrix(queries))


@dataclass
class RankBM25:
    """rank_bm25's BM25Okapi as a peer: the slow reference we measure ``bm25`` against."""

    tokenizer: str = "regex"
    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25
    name: str = "bm25-rank"
    _bm25: object = field(default=None, repr=False)

    def index(self, corpus: Corpus) -> RankBM25:
        try:
            from rank_bm25 import BM25Okapi
        except ImportError:
            raise OdqaBenchError("retriever 'bm25-rank' needs rank-bm25: pip install rank-bm25") from None
        if len(corpus) == 0:
            raise OdqaBenchError(f"{self.name}: cannot index an empty corpus")
        docs = tokenize_cached(get_tokenizer(self.tokenizer), corpus.joined())
        self._bm25 = BM25Okapi(docs, k1=self.k1, b=self.b, epsilon=self.epsilon)
        self._ties = tie_keys(corpus.ids)
        return self

    def score_all(self, queries: list[str]) -> np.ndarray:
        if self._bm25 is None:
            raise OdqaBenchError(f"{self.name}: search before index")
        toks = get_tokenizer(self.tokenizer)(list(queries))
        return np.vstack([self._bm25.get_scores(t) for t in toks]) if toks else np.zeros((0, 0))

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return topk(self.score_all(queries), k, self._ties, positive_only=True)

