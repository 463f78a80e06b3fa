"""Optional numba kernels for lexical search: accumulate each query's postings into a dense
buffer, then keep the top k of the touched documents in a bounded heap ordered by score, then
tie key. Parallel over queries. Scores are summed in the same order as scipy's sparse product,
so both backends return identical runs (tested)."""
from __future__ import annotations

import numpy as np

__all__ = ["NUMBA_AVAILABLE", "sparse_topk"]

try:  # numba is optional: the scipy backend is the reference and the fallback
    import numba

    NUMBA_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    NUMBA_AVAILABLE = False


def _worse(s_a: float, t_a: int, s_b: float, t_b: int) -> bool:
    """True when (s_a, t_a) ranks below (s_b, t_b): lower score, or equal score and larger tie key."""
    return s_a < s_b or (s_a == s_b and t_a > t_b)


def _sift_down(hs: np.ndarray, ht: np.ndarray, hi: np.ndarray, size: int, pos: int) -> None:
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        worst = left
        right = left + 1
        if right < size and _worse(hs[right], ht[right], hs[left], ht[left]):
            worst = right
        if _worse(hs[worst], ht[worst], hs[pos], ht[pos]):
            hs[pos], hs[worst] = hs[worst], hs[pos]
            ht[pos], ht[worst] = ht[worst], ht[pos]
            hi[pos], hi[worst] = hi[worst], hi[pos]
            pos = worst
        else:
            return


def _sift_up(hs: np.ndarray, ht: np.ndarray, hi: np.ndarray, pos: int) -> None:
    while pos > 0:
        parent = (pos - 1) // 2
        if _worse(hs[pos], ht[pos], hs[parent], ht[parent]):
            hs[pos], hs[parent] = hs[parent], hs[pos]
            ht[pos], ht[parent] = ht[parent], ht[pos]
            hi[pos], hi[parent] = hi[parent], hi[pos]
            pos = parent
        else:
            return


def _search(q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc, n_blocks):
    n = len(q_indptr) - 1
    for blk in _prange(n_blocks):
        # one accumulator per block, reset through the touched list: no O(n_docs) work per query
        acc = np.zeros(n_docs)
        seen = np.zeros(n_docs, dtype=np.bool_)
        touched = np.empty(n_docs, dtype=np.int64)
        hs = np.empty(k)
        ht = np.empty(k, dtype=np.int64)
        hi = np.empty(k, dtype=np.int64)
        for i in range(blk, n, n_blocks):
            _one(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, k, out_idx, out_sc,
                 acc, seen, touched, hs, ht, hi)


def _search_serial(q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc,
                   n_blocks):
    """The serial twin of ``_search``: no thread-pool launch, which costs milliseconds per call."""
    acc = np.zeros(n_docs)
    seen = np.zeros(n_docs, dtype=np.bool_)
    touched = np.empty(n_docs, dtype=np.int64)
    hs = np.empty(k)
    ht = np.empty(k, dtype=np.int64)
    hi = np.empty(k, dtype=np.int64)
    for i in range(len(q_indptr) - 1):
        _one(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, k, out_idx, out_sc,
             acc, seen, touched, hs, ht, hi)


def _one(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, k, out_idx, out_sc,
         acc, seen, touched, hs, ht, hi):
    """Score query i into ``acc``, heap-select its top k into row i, then reset what it touched."""
    n_touched = 0
    for p in range(q_indptr[i], q_indptr[i + 1]):
        t = q_indices[p]
        c = q_data[p]
        for r in range(w_indptr[t], w_indptr[t + 1]):
            d = w_indices[r]
            if not seen[d]:
                seen[d] = True
                touched[n_touched] = d
                n_touched += 1
            acc[d] += c * w_data[r]
    size = 0
    for j in range(n_touched):
        d = touched[j]
        s = acc[d]
        if s <= 0.0:
            continue
        if size < k:
            hs[size] = s
            ht[size] = ties[d]
            hi[size] = d
            _sift_up(hs, ht, hi, size)
            size += 1
        elif _worse(hs[0], ht[0], s, ties[d]):
            hs[0] = s
            ht[0] = ties[d]
            hi[0] = d
            _sift_down(hs, ht, hi, size, 0)
    # pop the heap from worst to best into the row's tail
    for r in range(size - 1, -1, -1):
        out_idx[i, r] = hi[0]
        out_sc[i, r] = hs[0]
        size -= 1
        hs[0], ht[0], hi[0] = hs[size], ht[size], hi[size]
        _sift_down(hs, ht, hi, size, 0)
    for j in range(n_touched):
        d = touched[j]
        acc[d] = 0.0
        seen[d] = False


if NUMBA_AVAILABLE:
    _prange = numba.prange
    _worse = numba.njit(cache=True, inline="always")(_worse)
    _sift_down = numba.njit(cache=True)(_sift_down)
    _sift_up = numba.njit(cache=True)(_sift_up)
    _one = numba.njit(cache=True)(_one)
    _search_par = numba.njit(cache=True, parallel=True)(_search)
    _search_ser = numba.njit(cache=True)(_search_serial)
else:  # pragma: no cover
    _prange = range
    _search_par = _search_ser = None

# below this many queries a parallel launch costs more than it saves
PARALLEL_MIN_QUERIES = 64


def sparse_topk(q, wt, ties: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``q @ wt`` (CSR query-term weights times CSR term-document weights), positive
    scores only, ordered by score then ``ties``; -1 / -inf padding."""
    n, n_docs = q.shape[0], wt.shape[1]
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_sc = np.full((n, k), -np.inf)
    if n == 0 or k == 0:
        return out_idx, out_sc
    blocks = max(1, min(numba.get_num_threads(), n))
    run = _search_par if (blocks > 1 and n >= PARALLEL_MIN_QUERIES) else _search_ser
    run(q.indptr, q.indices, np.asarray(q.data, dtype=np.float64), wt.indptr, wt.indices,
                np.asarray(wt.data, dtype=np.float64), np.asarray(ties, dtype=np.int64), n_docs, k, out_idx, out_sc,
                blocks)
    return out_idx, out_sc
