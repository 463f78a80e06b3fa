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
    """Restore the min-heap below ``pos`` by moving children up into a hole (no swaps)."""
    s, t, x = hs[pos], ht[pos], hi[pos]
    while True:
        left = 2 * pos + 1
        if left >= size:
            break
        worst = left
        right = left + 1
        if right < size and _worse(hs[right], ht[right], hs[left], ht[left]):
            worst = right
        if not _worse(hs[worst], ht[worst], s, t):
            break
        hs[pos], ht[pos], hi[pos] = hs[worst], ht[worst], hi[worst]
        pos = worst
    hs[pos], ht[pos], hi[pos] = s, t, x


def _sift_up(hs: np.ndarray, ht: np.ndarray, hi: np.ndarray, pos: int) -> None:
    s, t, x = hs[pos], ht[pos], hi[pos]
    while pos > 0:
        parent = (pos - 1) // 2
        if not _worse(s, t, hs[parent], ht[parent]):
            break
        hs[pos], ht[pos], hi[pos] = hs[parent], ht[parent], hi[parent]
        pos = parent
    hs[pos], ht[pos], hi[pos] = s, t, x


def _offer(hs: np.ndarray, ht: np.ndarray, hi: np.ndarray, size: int, k: int, s: float, t: int, d: int) -> int:
    """Offer document ``d`` (score ``s``, tie key ``t``) to the bounded min-heap; the new size."""
    if s <= 0.0:
        return size
    if size < k:
        hs[size], ht[size], hi[size] = s, t, d
        _sift_up(hs, ht, hi, size)
        return size + 1
    if s < hs[0] or (s == hs[0] and t > ht[0]):
        return size
    hs[0], ht[0], hi[0] = s, t, d
    _sift_down(hs, ht, hi, size, 0)
    return size


def _search(q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc, n_blocks):
    n = len(q_indptr) - 1
    for blk in _prange(n_blocks):
        # one accumulator per block, reset through the touched list: no O(n_docs) work per query
        acc = np.zeros(n_docs)
        seen = np.zeros(n_docs, dtype=np.bool_)
        touched = np.empty(n_docs + 1, dtype=np.int64)  # +1: the branch-free append writes one past
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
    touched = np.empty(n_docs + 1, dtype=np.int64)  # +1: the branch-free append writes one past
    hs = np.empty(k)
    ht = np.empty(k, dtype=np.int64)
    hi = np.empty(k, dtype=np.int64)
    for i in range(len(q_indptr) - 1):
        _one(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, k, out_idx, out_sc,
             acc, seen, touched, hs, ht, hi)


def _one(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, k, out_idx, out_sc,
         acc, seen, touched, hs, ht, hi):
    """Score query i into ``acc``, heap-select its top k into row i, then reset what it touched
    (no O(n_docs) work per query)."""
    n_touched = 0
    for p in range(q_indptr[i], q_indptr[i + 1]):
        t = q_indices[p]
        c = q_data[p]
        for r in range(w_indptr[t], w_indptr[t + 1]):
            d = w_indices[r]
            # branch-free first-touch bookkeeping: a mispredicted branch per posting costs more
            touched[n_touched] = d
            n_touched += 1 - seen[d]
            seen[d] = True
            acc[d] += c * w_data[r]
    # Seed the heap with the documents of the query's rarest terms: they tend to score highest,
    # so far fewer of the remaining documents displace the heap's worst. ``seen`` goes False
    # once a document is offered; the full pass skips those.
    size = 0
    q_lo, q_hi = q_indptr[i], q_indptr[i + 1]
    df = np.empty(q_hi - q_lo, dtype=np.int64)
    for p in range(q_lo, q_hi):
        t = q_indices[p]
        df[p - q_lo] = w_indptr[t + 1] - w_indptr[t]
    seeded = 0
    for o in np.argsort(df, kind="mergesort"):
        if seeded >= k:
            break
        t = q_indices[q_lo + o]
        for r in range(w_indptr[t], w_indptr[t + 1]):
            d = w_indices[r]
            if seen[d]:
                seen[d] = False
                seeded += 1
                size = _offer(hs, ht, hi, size, k, acc[d], ties[d], d)
    for j in range(n_touched):
        d = touched[j]
        if seen[d]:
            size = _offer(hs, ht, hi, size, k, acc[d], ties[d], d)
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
    _offer = numba.njit(cache=True, inline="always")(_offer)
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
