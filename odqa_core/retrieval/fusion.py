"""Lexical + dense combinations: ``hybrid`` (score fusion over the whole corpus),
``hybrid-rrf`` (reciprocal rank fusion of each part's top lists) and ``sequential`` (BM25
top-N re-scored by the dense model).

The fusion arithmetic lives in pure functions (:func:`normalize`, :func:`fuse_scores`,
:func:`rrf`) over arrays; the retrievers only fetch scores and call them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.types import Corpus
from ..errors import OdqaBenchError
from .base import Retriever, get_retriever
from .dense import DenseRetriever, dense, sort_rows
from .run import Run, tie_keys, topk

__all__ = ["NORMS", "normalize", "fuse_scores", "rrf", "Hybrid", "Sequential", "hybrid", "hybrid_rrf", "sequential"]

NORMS = ("none", "minmax", "zscore")
METHODS = ("scores", "rrf")
QUERY_CHUNK = 256


def normalize(scores: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Per-row score normalisation over the finite entries (-inf stays -inf). ``minmax`` maps
    a row to [0, 1], ``zscore`` to mean 0 / std 1; a constant row becomes all zeros."""
    if method not in NORMS:
        raise OdqaBenchError(f"unknown score normalisation {method!r}; known: {', '.join(NORMS)}")
    s = np.asarray(scores, dtype=np.float64)
    if method == "none" or s.size == 0:
        return s.copy()
    finite = np.isfinite(s)
    cnt = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    with np.errstate(invalid="ignore", over="ignore"):
        if method == "minmax":
            shift = np.where(finite, s, np.inf).min(axis=1, keepdims=True)
            scale = np.where(finite, s, -np.inf).max(axis=1, keepdims=True) - shift
        else:
            shift = np.where(finite, s, 0.0).sum(axis=1, keepdims=True) / cnt
            scale = np.sqrt(np.where(finite, (s - shift) ** 2, 0.0).sum(axis=1, keepdims=True) / cnt)
        ok = scale > 0
        out = np.where(ok, (s - np.where(ok, shift, 0.0)) / np.where(ok, scale, 1.0), 0.0)
    return np.where(finite, out, s)


def fuse_scores(dense: np.ndarray, sparse: np.ndarray, lam: float = 1.1, norm: str = "minmax") -> np.ndarray:
    """``lam * norm(dense) + norm(sparse)``, per query over the same documents (DPR's hybrid
    uses lam = 1.1 on raw scores, i.e. ``norm='none'``)."""
    dense = np.asarray(dense, dtype=np.float64)
    sparse = np.asarray(sparse, dtype=np.float64)
    if dense.shape != sparse.shape:
        raise OdqaBenchError(f"fuse_scores: dense {dense.shape} and sparse {sparse.shape} score matrices differ in shape")
    return lam * normalize(dense, norm) + normalize(sparse, norm)


def rrf(rank_lists: Sequence[np.ndarray | Run], k: int = 60, top: int | None = None,
        ties: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal rank fusion: document d scores ``sum over lists of 1 / (k + rank_d)`` (rank
    from 1; a list that lacks d adds nothing). Inputs are ``(n_q, depth)`` doc-index arrays
    (-1 padded) or :class:`Run` objects over the same corpus. Returns ``(indices, scores)``
    of width ``top`` (default: the longest fused row), ties by ``ties`` ascending (for Runs,
    the trec_eval doc-id rule; for arrays, the smaller index)."""
    if not rank_lists:
        raise OdqaBenchError("rrf: no rank lists to fuse")
    if k < 0:
        raise OdqaBenchError(f"rrf: k must be >= 0, got {k}")
    arrays: list[np.ndarray] = []
    doc_ids = None
    for r in rank_lists:
        if isinstance(r, Run):
            if doc_ids is None:
                doc_ids = r.doc_ids
            elif len(r.doc_ids) != len(doc_ids) or not np.array_equal(r.doc_ids, doc_ids):
                raise OdqaBenchError("rrf: the runs are over different document lists")
            arrays.append(np.asarray(r.indices, dtype=np.int64))
        else:
            arrays.append(np.asarray(r, dtype=np.int64))
    n_q = arrays[0].shape[0]
    if any(a.ndim != 2 or a.shape[0] != n_q for a in arrays):
        raise OdqaBenchError(f"rrf: rank lists must be 2-d with {n_q} rows each, got {[a.shape for a in arrays]}")
    rows_l, docs_l, contrib_l = [], [], []
    for a in arrays:
        depth = a.shape[1]
        valid = a >= 0
        rows_l.append(np.broadcast_to(np.arange(n_q)[:, None], a.shape)[valid])
        docs_l.append(a[valid])
        contrib_l.append(np.broadcast_to(1.0 / (k + np.arange(1, depth + 1, dtype=np.float64)), a.shape)[valid])
    rows = np.concatenate(rows_l)
    docs = np.concatenate(docs_l)
    contrib = np.concatenate(contrib_l)
    n_docs = len(doc_ids) if doc_ids is not None else (int(docs.max()) + 1 if docs.size else 1)
    if ties is None:
        ties = tie_keys(list(doc_ids)) if doc_ids is not None else np.arange(n_docs, dtype=np.int64)
    keys, inverse = np.unique(rows * n_docs + docs, return_inverse=True)
    fused = np.bincount(inverse, weights=contrib, minlength=len(keys))
    u_rows, u_docs = keys // n_docs, keys % n_docs
    order = np.lexsort((ties[u_docs], -fused, u_rows))
    u_rows, u_docs, fused = u_rows[order], u_docs[order], fused[order]
    counts = np.bincount(u_rows, minlength=n_q)
    width = int(counts.max(initial=0)) if top is None else int(top)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(u_rows)) - starts[u_rows]
    keep = rank < width
    idx = np.full((n_q, width), -1, dtype=np.int64)
    sc = np.full((n_q, width), -np.inf)
    idx[u_rows[keep], rank[keep]] = u_docs[keep]
    sc[u_rows[keep], rank[keep]] = fused[keep]
    return idx, sc


def _check_sparse(sparse: Retriever) -> None:
    if not hasattr(sparse, "score_all"):
        raise OdqaBenchError(f"hybrid: sparse retriever {getattr(sparse, 'name', sparse)!r} has no score_all()")


@dataclass
class Hybrid:
    """Dense + sparse fusion. ``method='scores'``: :func:`fuse_scores` over every document;
    ``method='rrf'``: :func:`rrf` over each part's top ``depth`` hits."""

    dense: DenseRetriever
    sparse: Retriever
    lam: float = 1.1
    norm: str = "minmax"
    method: str = "scores"
    k_rrf: int = 60
    depth: int = 1000
    name: str = "hybrid"
    _ties: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise OdqaBenchError(f"unknown score normalisation {self.norm!r}; known: {', '.join(NORMS)}")
        if self.method not in METHODS:
            raise OdqaBenchError(f"unknown hybrid method {self.method!r}; known: {', '.join(METHODS)}")
        if self.method == "scores":
            _check_sparse(self.sparse)
        if self.depth < 1 or self.k_rrf < 0:
            raise OdqaBenchError(f"hybrid: depth must be >= 1 and k_rrf >= 0 (got {self.depth}, {self.k_rrf})")

    def index(self, corpus: Corpus) -> Hybrid:
        self._ties = _index_pair(self.dense, self.sparse, corpus)
        return self

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        _check_indexed(self.name, self._ties)
        queries = list(queries)
        if self.method == "rrf":
            d_idx, _ = self.dense.search(queries, self.depth)
            s_idx, _ = self.sparse.search(queries, self.depth)
            return rrf([d_idx, s_idx], k=self.k_rrf, top=k, ties=self._ties)
        qemb = self.dense.embed_queries(queries)
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        sc = np.full((len(queries), k), -np.inf)
        for s in range(0, len(queries), QUERY_CHUNK):
            d = self.dense.score_embeddings(qemb[s : s + QUERY_CHUNK])
            sp = self.sparse.score_all(queries[s : s + QUERY_CHUNK])  # type: ignore[attr-defined]
            idx[s : s + QUERY_CHUNK], sc[s : s + QUERY_CHUNK] = topk(fuse_scores(d, sp, self.lam, self.norm), k, self._ties)
        return idx, sc


def _index_pair(dense: DenseRetriever, sparse: Retriever, corpus: Corpus) -> np.ndarray:
    """Index both halves of a two-stage retriever over one corpus; returns the corpus tie keys."""
    dense.index(corpus)
    sparse.index(corpus)
    return tie_keys(corpus.ids)


def _check_indexed(name: str, ties: np.ndarray | None) -> None:
    if ties is None:
        raise OdqaBenchError(f"{name}: search before index")


@dataclass
class Sequential:
    """Re-ranking: the sparse retriever's top ``depth`` hits re-scored by the dense model;
    documents outside that list never appear."""

    dense: DenseRetriever
    sparse: Retriever
    depth: int = 100
    name: str = "sequential"
    _ties: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise OdqaBenchError(f"sequential: depth must be a positive integer, got {self.depth!r}")

    def index(self, corpus: Corpus) -> Sequential:
        self._ties = _index_pair(self.dense, self.sparse, corpus)
        return self

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        _check_indexed(self.name, self._ties)
        cand, _ = self.sparse.search(list(queries), self.depth)
        scores = self.dense.score_docs(list(queries), cand)
        return sort_rows(cand, scores, self._ties, k)


def _parts(sparse: str, tokenizer: str, k1: float | None, b: float | None, dense_model: str, size: str | None,
           index: str, device: str, batch_size: int, max_length: int | None, encoder: Any,
           dense_options: dict[str, Any]) -> tuple[DenseRetriever, Retriever]:
    sparse_params: dict[str, Any] = {"tokenizer": tokenizer}
    if k1 is not None:
        sparse_params["k1"] = k1
    if b is not None:
        sparse_params["b"] = b
    sp = get_retriever(sparse, **sparse_params)
    dn = dense(model=dense_model, size=size, index=index, device=device, batch_size=batch_size,
               max_length=max_length, encoder=encoder, **dense_options)
    return dn, sp


def hybrid(lam: float = 1.1, norm: str = "minmax", method: str = "scores", sparse: str = "bm25",
           tokenizer: str = "regex", k1: float | None = None, b: float | None = None, dense_model: str = "minilm",
           size: str | None = None, index: str = "flat", device: str = "cpu", batch_size: int = 64,
           max_length: int | None = None, k_rrf: int = 60, depth: int = 1000, encoder: Any = None,
           **dense_options: Any) -> Hybrid:
    """Build ``hybrid``: ``sparse`` (+ ``tokenizer``, ``k1``, ``b``) fused with the ``dense``
    retriever built from ``dense_model``/``size``/``index`` (or a ready ``encoder``)."""
    if method not in METHODS:
        raise OdqaBenchError(f"unknown hybrid method {method!r}; known: {', '.join(METHODS)}")
    if norm not in NORMS:
        raise OdqaBenchError(f"unknown score normalisation {norm!r}; known: {', '.join(NORMS)}")
    dn, sp = _parts(sparse, tokenizer, k1, b, dense_model, size, index, device, batch_size, max_length, encoder, dense_options)
    return Hybrid(dense=dn, sparse=sp, lam=lam, norm=norm, method=method, k_rrf=k_rrf, depth=depth,
                  name="hybrid-rrf" if method == "rrf" else "hybrid")


def hybrid_rrf(k_rrf: int = 60, depth: int = 1000, **params: Any) -> Hybrid:
    """``hybrid`` with ``method='rrf'``."""
    if "method" in params:
        raise OdqaBenchError("hybrid-rrf: the method is fixed to 'rrf'")
    return hybrid(method="rrf", k_rrf=k_rrf, depth=depth, **params)


def sequential(depth: int = 100, sparse: str = "bm25", tokenizer: str = "regex", k1: float | None = None,
               b: float | None = None, dense_model: str = "minilm", size: str | None = None, device: str = "cpu",
               batch_size: int = 64, max_length: int | None = None, encoder: Any = None,
               **dense_options: Any) -> Sequential:
    """Build ``sequential``: ``sparse`` top-``depth`` re-scored by the dense model."""
    dn, sp = _parts(sparse, tokenizer, k1, b, dense_model, size, "flat", device, batch_size, max_length, encoder, dense_options)
    return Sequential(dense=dn, sparse=sp, depth=depth)
