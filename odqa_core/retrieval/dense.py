"""``dense``: a bi-encoder over a FAISS index (exact ``flat`` inner product, ``hnsw`` or ``ivf``).

Passage embeddings are cached on disk under the encoder fingerprint and the texts' hash, so a
second run over the same corpus encodes nothing. FAISS hits are re-ordered by our tie rule
(score descending, then doc id descending) so equal scores rank the same way on every run.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache import cache_key, cached_array
from ..data.types import Corpus
from ..encoders.base import Encoder
from ..errors import OdqaBenchError
from ..text.cache import texts_sha256
from .run import tie_keys

if TYPE_CHECKING:
    from ..encoders.backends import ProbeTexts

__all__ = ["DenseRetriever", "INDEX_TYPES", "TEXT_FIELDS", "build_faiss_index", "sort_rows", "dense",
           "default_probe_texts"]

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw", "ivf")
TEXT_FIELDS = ("joined", "text")
# FAISS returns this many extra hits so a tie straddling rank k is still resolved by our rule.
TIE_MARGIN = 8
# Query batches at least this large have their embeddings cached too (suites reuse them).
QUERY_CACHE_MIN = 256
SCORE_CHUNK = 512

for _extra in ("faiss", "torch"):
    if importlib.util.find_spec(_extra) is None:  # leaves ``dense`` unregistered, sparse unharmed
        raise ImportError(f"the dense retriever needs {_extra}")


def _faiss() -> Any:
    import faiss

    return faiss


def sort_rows(indices: np.ndarray, scores: np.ndarray, ties: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by score descending then ``ties`` ascending, -1 padding last; cut or pad
    to width ``k`` (index -1, score -inf). Entries with index -1 never index ``ties``."""
    indices = np.asarray(indices, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64).copy()
    missing = indices < 0
    scores[missing] = -np.inf
    tk = np.where(missing, np.iinfo(np.int64).max, ties[np.where(missing, 0, indices)])
    order = np.lexsort((tk, -scores, missing), axis=-1)
    idx = np.take_along_axis(indices, order, axis=1)[:, :k]
    sc = np.take_along_axis(scores, order, axis=1)[:, :k]
    idx[idx < 0] = -1
    if idx.shape[1] < k:
        pad = k - idx.shape[1]
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, pad)), constant_values=-np.inf)
    return idx, sc


def faiss_topk(index: Any, qemb: np.ndarray, k: int, ties: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS top-k in trec_eval order at little more than one bare ``index.search``.

    FAISS already returns rows by score descending; only equal scores need reordering by tie key.
    One extra hit per row shows whether a tie crosses the cut-off; only those rows are searched
    again with a margin, and only rows holding ties are re-sorted."""
    n_total = index.ntotal
    kk = min(k + 1, n_total)
    scores, indices = index.search(qemb, kk)
    if kk > k:
        boundary = (scores[:, k] == scores[:, k - 1]) & (indices[:, k] >= 0)
        if boundary.any():
            rows = np.flatnonzero(boundary)
            margin = TIE_MARGIN
            while True:  # widen until no tie crosses the cut-off of any re-searched row
                wide = min(k + margin, n_total)
                s_w, i_w = index.search(qemb[rows], wide)
                open_tie = (s_w[:, -1] == s_w[:, k - 1]) & (i_w[:, -1] >= 0)
                if wide == n_total or not open_tie.any():
                    break
                margin *= 4
            idx_w, sc_w = sort_rows(i_w, s_w, ties, k)
    idx = indices[:, :k].astype(np.int64, copy=True)
    sc = scores[:, :k].astype(np.float64)
    missing = idx < 0
    if missing.any():
        idx[missing] = -1
        sc[missing] = -np.inf
    tied = (sc[:, 1:] == sc[:, :-1]) & (idx[:, 1:] >= 0)
    tied_rows = np.flatnonzero(tied.any(axis=1))
    if len(tied_rows):
        idx[tied_rows], sc[tied_rows] = sort_rows(idx[tied_rows], sc[tied_rows], ties, idx.shape[1])
    if kk > k and boundary.any():
        idx[rows], sc[rows] = idx_w, sc_w
    if idx.shape[1] < k:
        pad = k - idx.shape[1]
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, pad)), constant_values=-np.inf)
    return idx, sc


def build_faiss_index(emb: np.ndarray, kind: str = "flat", *, M: int = 32, ef_construction: int = 200,
                      ef_search: int = 128, nlist: int | None = None, nprobe: int = 16, seed: int = 0) -> Any:
    """An inner-product FAISS index over L2-normalised ``emb``. IVF k-means is seeded; the HNSW
    graph is built on one thread, since parallel insertion order changes the graph."""
    faiss = _faiss()
    n, d = emb.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(emb)
        return index
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            index.add(emb)
        finally:
            faiss.omp_set_num_threads(threads)
        return index
    if kind == "ivf":
        if nlist is None:
            nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        if not 1 <= nlist <= n:
            raise OdqaBenchError(f"dense index 'ivf': nlist must be between 1 and the number of passages ({n}), got {nlist}")
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(emb)
        index.add(emb)
        index.nprobe = min(nprobe, nlist)
        return index
    raise OdqaBenchError(f"unknown dense index {kind!r}; known: {', '.join(INDEX_TYPES)}")


@dataclass
class DenseRetriever:
    """Encoder + FAISS index. ``faiss_index`` is the raw index (perf suites time our overhead
    over a bare ``faiss_index.search``)."""

    encoder: Encoder
    index_type: str = "flat"
    M: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 16
    batch_size: int = 64
    text: str = "joined"
    threads: int | None = None
    seed: int = 0
    show_progress: bool = False
    name: str = "dense"
    faiss_index: Any = field(default=None, repr=False)
    _emb: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _ties: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise OdqaBenchError(f"unknown dense index {self.index_type!r}; known: {', '.join(INDEX_TYPES)}")
        if self.text not in TEXT_FIELDS:
            raise OdqaBenchError(f"dense: unknown text field {self.text!r}; known: {', '.join(TEXT_FIELDS)}")
        for label, v in (("M", self.M), ("ef_search", self.ef_search), ("ef_construction", self.ef_construction),
                         ("nprobe", self.nprobe), ("batch_size", self.batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OdqaBenchError(f"dense: {label} must be a positive integer, got {v!r}")
        if self.threads is not None:
            if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
                raise OdqaBenchError(f"dense: threads must be a positive integer, got {self.threads!r}")
            _faiss().omp_set_num_threads(self.threads)

    # ------------------------------------------------------------------ indexing

    def passage_embeddings(self, texts: list[str]) -> np.ndarray:
        """``(n, dim)`` float32 passage embeddings, from the disk cache when present."""
        key = cache_key("passage", self.encoder.fingerprint, texts_sha256(texts), len(texts))
        return self._cached(key, texts, "passage")

    def _cached(self, key: str, texts: list[str], kind: str) -> np.ndarray:
        def build() -> np.ndarray:
            log.info("encoding %d %s texts with %s", len(texts), kind, self.encoder.name)
            return self.encoder.encode(texts, kind=kind, batch_size=self.batch_size, show_progress=self.show_progress)

        emb = cached_array("embeddings", key, build)
        if emb.ndim != 2 or emb.shape != (len(texts), self.encoder.dim) or emb.dtype != np.float32:
            log.warning("cached embeddings %s have shape %s, expected %s; re-encoding", key, emb.shape, (len(texts), self.encoder.dim))
            emb = build()
        return np.ascontiguousarray(emb, dtype=np.float32)

    def index(self, corpus: Corpus) -> DenseRetriever:
        if len(corpus) == 0:
            raise OdqaBenchError(f"{self.name}: cannot index an empty corpus")
        texts = corpus.joined() if self.text == "joined" else list(corpus.texts)
        self._emb = self.passage_embeddings(texts)
        self._ties = tie_keys(corpus.ids)
        self.faiss_index = build_faiss_index(self._emb, self.index_type, M=self.M, ef_construction=self.ef_construction,
                                             ef_search=self.ef_search, nlist=self.nlist, nprobe=self.nprobe, seed=self.seed)
        return self

    @property
    def embeddings(self) -> np.ndarray:
        self._check_indexed()
        return self._emb

    def _check_indexed(self) -> None:
        if self.faiss_index is None:
            raise OdqaBenchError(f"{self.name}: search before index")

    # ------------------------------------------------------------------ searching

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        """``(n, dim)`` float32 query embeddings (cached on disk for large batches)."""
        queries = list(queries)
        if len(queries) < QUERY_CACHE_MIN:
            emb = self.encoder.encode(queries, kind="query", batch_size=self.batch_size, show_progress=self.show_progress)
            return np.ascontiguousarray(emb, dtype=np.float32)
        key = cache_key("query", self.encoder.fingerprint, texts_sha256(queries), len(queries))
        return self._cached(key, queries, "query")

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_indexed()
        return self.search_embeddings(self.embed_queries(queries), k)

    def search_embeddings(self, qemb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS top-k for query embeddings, rows in trec_eval order, -1/-inf padded."""
        self._check_indexed()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise OdqaBenchError(f"{self.name}: k must be a positive integer, got {k!r}")
        qemb = np.ascontiguousarray(qemb, dtype=np.float32)
        if qemb.ndim != 2 or qemb.shape[1] != self._emb.shape[1]:
            raise OdqaBenchError(f"{self.name}: query embeddings have shape {qemb.shape}, expected (n, {self._emb.shape[1]})")
        if qemb.shape[0] == 0:
            return np.full((0, k), -1, dtype=np.int64), np.full((0, k), -np.inf)
        return faiss_topk(self.faiss_index, qemb, int(k), self._ties)

    def score_embeddings(self, qemb: np.ndarray, doc_indices: np.ndarray | None = None) -> np.ndarray:
        """Inner products of query embeddings with every passage ``(n_q, n_docs)``, or with
        the candidates ``doc_indices`` ``(n_q, m)`` (-1 entries score -inf)."""
        self._check_indexed()
        qemb = np.asarray(qemb, dtype=np.float32)
        if doc_indices is None:
            return (qemb @ self._emb.T).astype(np.float64)
        doc_indices = np.asarray(doc_indices, dtype=np.int64)
        if doc_indices.ndim != 2 or doc_indices.shape[0] != qemb.shape[0]:
            raise OdqaBenchError(f"{self.name}: doc_indices shape {doc_indices.shape} does not match {qemb.shape[0]} queries")
        if doc_indices.size and doc_indices.max() >= len(self._emb):
            raise OdqaBenchError(f"{self.name}: doc index {int(doc_indices.max())} is beyond the {len(self._emb)} passages")
        out = np.full(doc_indices.shape, -np.inf)
        for s in range(0, len(qemb), SCORE_CHUNK):
            cand = doc_indices[s : s + SCORE_CHUNK]
            docs = self._emb[np.maximum(cand, 0)]
            sc = np.einsum("qd,qmd->qm", qemb[s : s + SCORE_CHUNK], docs).astype(np.float64)
            out[s : s + SCORE_CHUNK] = np.where(cand >= 0, sc, -np.inf)
        return out

    def score_all(self, queries: list[str]) -> np.ndarray:
        """Dense ``(n_queries, n_docs)`` inner products over the full corpus (exact)."""
        return self.score_embeddings(self.embed_queries(queries))

    def score_docs(self, queries: list[str], doc_indices: np.ndarray) -> np.ndarray:
        """Scores of each query's candidate documents ``(n_q, m)``; -1 candidates get -inf."""
        return self.score_embeddings(self.embed_queries(queries), doc_indices)


@cache
def default_probe_texts() -> ProbeTexts:
    """The int8 probe's texts for dense retrieval: the embedded bilingual sample's passages (title
    and text) and its first 20 questions."""
    from ..data import load_dataset
    from ..encoders.backends import ProbeTexts

    ds = load_dataset("default")
    return ProbeTexts(tuple(ds.corpus.joined()), tuple(ds.query_texts[:20]))


def dense(model: str = "minilm", size: str | None = None, index: str = "flat", device: str = "cpu",
          max_length: int | None = None, batch_size: int = 64, text: str = "joined", M: int = 32,
          ef_construction: int = 200, ef_search: int = 128, nlist: int | None = None, nprobe: int = 16,
          threads: int | None = None, seed: int = 0, show_progress: bool = False, backend: str = "auto",
          encoder: Encoder | None = None, **encoder_options: Any) -> DenseRetriever:
    """Build the ``dense`` retriever: ``model``/``size`` pick the encoder (or pass ``encoder``),
    ``index`` the FAISS index; other options go to the encoder (``pooling``, prefixes...).
    ``max_length`` None keeps the family's default (256 tokens, as in every results table).
    ``backend`` runs the encoder (``auto``: OpenVINO int8 on the CPU, which keeps rankings within
    0.005 of ``torch-fp32``, the reference; see :mod:`odqa_core.encoders.backends`)."""
    if index not in INDEX_TYPES:
        raise OdqaBenchError(f"unknown dense index {index!r}; known: {', '.join(INDEX_TYPES)}")
    if encoder is None:
        from ..encoders import get_encoder

        if max_length is not None:
            encoder_options["max_length"] = max_length
        encoder = get_encoder(model, size, device=device, backend=backend, probe_texts=default_probe_texts,
                              **encoder_options)
    elif encoder_options or max_length is not None:
        raise OdqaBenchError("dense: encoder options cannot be combined with a ready-made encoder")
    return DenseRetriever(encoder=encoder, index_type=index, M=M, ef_construction=ef_construction, ef_search=ef_search,
                          nlist=nlist, nprobe=nprobe, batch_size=batch_size, text=text, threads=threads, seed=seed,
                          show_progress=show_progress)
