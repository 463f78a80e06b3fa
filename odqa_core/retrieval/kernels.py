"""Optional numba kernels for lexical search, parallel over queries, two ways to one answer.

Exhaustive: accumulate each query's postings into a dense buffer, then keep the top k in a
bounded heap ordered by score, then tie key, offering only documents that reach the heap's
worst (one comparison each). Where the query's postings are few for the corpus, the documents
it touched are listed as it accumulates (a document is new while its sum is still 0, which
strictly positive weights guarantee) and only they are scanned; otherwise, or where some weight
is not positive, the whole buffer is.
Pruned (MaxScore): walk the postings in document order and skip documents whose upper bound
(per-term maximum weights) cannot reach the heap's worst; it pays per document what the
exhaustive kernel pays per posting, so it wins only where common terms have long postings.

Both sum a document's postings in the query row's order, as scipy's sparse product does, so
every path returns the same run, bit for bit (tested)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NUMBA_AVAILABLE", "TermBounds", "term_bounds", "sparse_topk", "prune_plan", "PRUNE_MODES"]

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


def _plan(q_indptr, q_indices, q_data, w_indptr, term_ub, term_kth, mode, min_postings, min_skip):
    """Per query, whether to prune: ``mode`` 0 never, 1 always, 2 where it pays: the query's
    postings number at least ``min_postings`` and the terms that are non-essential from the
    start (their bounds summed stay below the k-th-weight threshold) hold at least ``min_skip``
    of them. MaxScore pays per document for what exhaustive scoring pays per posting, so it wins
    only where it skips nearly all of the query's postings. Rows with a negative weight never prune."""
    n = len(q_indptr) - 1
    pruned = np.zeros(n, dtype=np.bool_)
    if mode == 0:
        return pruned
    for i in range(n):
        lo, hi = q_indptr[i], q_indptr[i + 1]
        ok = True
        for p in range(lo, hi):
            if q_data[p] < 0.0:
                ok = False
        if not ok or mode == 1:
            pruned[i] = ok
            continue
        m = hi - lo
        total = 0
        theta = 0.0
        ub = np.empty(m)
        df = np.empty(m, dtype=np.int64)
        for j in range(m):
            t = q_indices[lo + j]
            df[j] = w_indptr[t + 1] - w_indptr[t]
            total += df[j]
            ub[j] = q_data[lo + j] * term_ub[t]
            floor = q_data[lo + j] * term_kth[t]
            if floor > theta:
                theta = floor
        if total < min_postings:
            continue
        skipped = 0
        bound = 0.0
        for j in np.argsort(ub):
            bound += ub[j]
            if bound >= theta:
                break
            skipped += df[j]
        pruned[i] = skipped >= min_skip * total
    return pruned


def _search(q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc, n_blocks,
            term_ub, term_kth, mode, min_postings, min_skip, positive, dense_ratio):
    n = len(q_indptr) - 1
    pruned = _plan(q_indptr, q_indices, q_data, w_indptr, term_ub, term_kth, mode, min_postings, min_skip)
    # the dense buffers only where some query scores exhaustively: they cost O(n_docs) to make
    n_buf = n_docs if not pruned.all() else 0
    for blk in _prange(n_blocks):
        # one accumulator per block, reset through the touched list: no O(n_docs) work per query
        acc = np.zeros(n_buf)
        touched = np.empty(n_buf + 1, dtype=np.int64)  # +1: the branch-free append writes one past
        hs = np.empty(k)
        ht = np.empty(k, dtype=np.int64)
        hi = np.empty(k, dtype=np.int64)
        for i in range(blk, n, n_blocks):
            if pruned[i]:
                _one_pruned(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx,
                            out_sc, term_ub, term_kth, hs, ht, hi)
            else:
                _one(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc,
                     acc, touched, hs, ht, hi, positive, dense_ratio)


def _search_serial(q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc,
                   n_blocks, term_ub, term_kth, mode, min_postings, min_skip, positive, dense_ratio):
    """The serial twin of ``_search``: no thread-pool launch, which costs milliseconds per call."""
    pruned = _plan(q_indptr, q_indices, q_data, w_indptr, term_ub, term_kth, mode, min_postings, min_skip)
    # the dense buffers only where some query scores exhaustively: they cost O(n_docs) to make
    n_buf = n_docs if not pruned.all() else 0
    acc = np.zeros(n_buf)
    touched = np.empty(n_buf + 1, dtype=np.int64)  # +1: the branch-free append writes one past
    hs = np.empty(k)
    ht = np.empty(k, dtype=np.int64)
    hi = np.empty(k, dtype=np.int64)
    for i in range(len(q_indptr) - 1):
        if pruned[i]:
            _one_pruned(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc,
                        term_ub, term_kth, hs, ht, hi)
        else:
            _one(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc,
                 acc, touched, hs, ht, hi, positive, dense_ratio)


def _gallop(w_indices, lo, hi, d):
    """The first position in ``[lo, hi)`` whose document is >= ``d`` (doc-ordered postings):
    doubling steps, then bisection, so short skips cost little and long ones log."""
    if lo >= hi or w_indices[lo] >= d:
        return lo
    prev = lo
    step = 1
    nxt = lo + 1
    while nxt < hi and w_indices[nxt] < d:
        prev = nxt
        step *= 2
        nxt = prev + step
    left = prev + 1
    right = nxt if nxt < hi else hi
    while left < right:
        mid = (left + right) >> 1
        if w_indices[mid] < d:
            left = mid + 1
        else:
            right = mid
    return left


def _pruned_cursors(lo, m, q_indices, q_data, w_indptr, w_indices, n_docs, term_ub):
    """The query's terms sorted by upper bound (``order``), the bounds' prefix sums, and one
    posting cursor per term with its end and current document (``n_docs`` once exhausted)."""
    ub = np.empty(m)
    for j in range(m):
        ub[j] = q_data[lo + j] * term_ub[q_indices[lo + j]]
    order = np.argsort(ub, kind="mergesort")
    prefix = np.empty(m + 1)  # prefix[j]: the bounds of the j lowest-bound terms summed
    prefix[0] = 0.0
    cur = np.empty(m, dtype=np.int64)
    end = np.empty(m, dtype=np.int64)
    doc = np.empty(m, dtype=np.int64)
    for j in range(m):
        pos = order[j]
        prefix[j + 1] = prefix[j] + ub[pos]
        t = q_indices[lo + pos]
        cur[j] = w_indptr[t]
        end[j] = w_indptr[t + 1]
        doc[j] = w_indices[cur[j]] if cur[j] < end[j] else n_docs
    return order, prefix, cur, end, doc


def _score_candidate(d, e, m, lo, q_data, w_indices, w_data, n_docs, order, prefix, cur, end, doc, contrib, has,
                     theta, slack):
    """Document ``d``'s score: the essential terms' postings at ``d`` (their cursors advance),
    then the non-essential ones looked up, highest bound first, until the bound falls below
    ``theta`` (``alive`` False). The exact score sums the contributions in the row's order."""
    s = 0.0
    for j in range(e, m):
        if doc[j] == d:
            c = cur[j]
            pos = order[j]
            v = q_data[lo + pos] * w_data[c]
            contrib[pos] = v
            has[pos] = True
            s += v
            c += 1
            cur[j] = c
            doc[j] = w_indices[c] if c < end[j] else n_docs
    alive = True
    for j in range(e - 1, -1, -1):
        if (s + prefix[j + 1]) * slack < theta:
            alive = False
            break
        c = _gallop(w_indices, cur[j], end[j], d)
        cur[j] = c
        if c < end[j] and w_indices[c] == d:
            pos = order[j]
            v = q_data[lo + pos] * w_data[c]
            contrib[pos] = v
            has[pos] = True
            s += v
    exact = 0.0
    for pos in range(m):
        if has[pos]:
            exact += contrib[pos]
            has[pos] = False
    return exact, alive


def _one_pruned(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc,
                term_ub, term_kth, hs, ht, hi):
    """MaxScore for query i: terms sorted by upper bound; the lowest ones whose bounds sum below
    the heap's worst are non-essential (a document found only there cannot enter), so documents
    are enumerated from the essential terms' postings and the rest are looked up by galloping,
    lowest bound last, giving up once the bound falls below the heap's worst.
    The threshold starts at the best of the terms' k-th largest weights (``term_kth``): each term
    alone gives k documents scoring at least that much.
    Needs non-negative weights; the row's exact score is summed in the row's own order."""
    lo = q_indptr[i]
    m = q_indptr[i + 1] - lo
    if m == 0:
        return
    order, prefix, cur, end, doc = _pruned_cursors(lo, m, q_indices, q_data, w_indptr, w_indices, n_docs, term_ub)
    # bounds and partial sums are summed in other orders than the exact score: inflate them past
    # any rounding (at most m units in the last place each, all terms being non-negative)
    slack = 1.0 + 4.0 * (m + 1) * 2.220446049250313e-16
    contrib = np.zeros(m)
    has = np.zeros(m, dtype=np.bool_)
    size = 0
    theta = 0.0
    for j in range(m):
        floor = q_data[lo + j] * term_kth[q_indices[lo + j]]
        if floor > theta:
            theta = floor
    e = 0  # terms order[:e] are non-essential: their bounds sum below theta
    while e < m and prefix[e + 1] * slack < theta:
        e += 1
    while e < m:
        d = n_docs
        for j in range(e, m):
            if doc[j] < d:
                d = doc[j]
        if d == n_docs:
            break
        exact, alive = _score_candidate(d, e, m, lo, q_data, w_indices, w_data, n_docs, order, prefix, cur, end,
                                        doc, contrib, has, theta, slack)
        if alive:
            size = _offer(hs, ht, hi, size, k, exact, ties[d], d)
            if size == k and hs[0] > theta:
                theta = hs[0]
                while e < m and prefix[e + 1] * slack < theta:
                    e += 1
    _drain(i, out_idx, out_sc, hs, ht, hi, size)


def _drain(i, out_idx, out_sc, hs, ht, hi, size):
    """Pop the heap from worst to best into row i's first ``size`` slots, best first."""
    for r in range(size - 1, -1, -1):
        out_idx[i, r] = hi[0]
        out_sc[i, r] = hs[0]
        size -= 1
        hs[0], ht[0], hi[0] = hs[size], ht[size], hi[size]
        _sift_down(hs, ht, hi, size, 0)


def _above(hs, k, size, thr):
    """The offer threshold once the heap is full: just below its worst, so ties at the worst
    still reach ``_offer``, which breaks them by tie key."""
    return np.nextafter(hs[0], -np.inf) if size == k else thr


def _seed(lo, hi_q, q_indices, w_indptr, w_indices, acc, ties, k, hs, ht, hi):
    """Offer first up to k documents of the query's rarest terms, which tend to score highest,
    so the scans start from a high threshold; their sums are zeroed, so the scans skip them.
    The heap's size."""
    m = hi_q - lo
    df = np.empty(m, dtype=np.int64)
    for j in range(m):
        t = q_indices[lo + j]
        df[j] = w_indptr[t + 1] - w_indptr[t]
    size = 0
    seeded = 0
    for o in np.argsort(df, kind="mergesort"):
        t = q_indices[lo + o]
        for r in range(w_indptr[t], w_indptr[t + 1]):
            if seeded >= k:
                return size
            d = w_indices[r]
            s = acc[d]
            if s > 0.0:
                size = _offer(hs, ht, hi, size, k, s, ties[d], d)
                acc[d] = 0.0
                seeded += 1
    return size


def _scan_listed(docs, n, acc, ties, k, hs, ht, hi, size):
    """Offer the documents ``docs[:n]`` whose sums exceed the threshold, zeroing each sum."""
    thr = _above(hs, k, size, 0.0)
    for j in range(n):
        d = docs[j]
        s = acc[d]
        if s > thr:
            size = _offer(hs, ht, hi, size, k, s, ties[d], d)
            thr = _above(hs, k, size, thr)
        acc[d] = 0.0
    return size


def _scan_all(n, acc, ties, k, hs, ht, hi, size):
    """Offer every document whose sum exceeds the threshold, then zero the sums."""
    thr = _above(hs, k, size, 0.0)
    for d in range(n):
        s = acc[d]
        if s > thr:
            size = _offer(hs, ht, hi, size, k, s, ties[d], d)
            thr = _above(hs, k, size, thr)
    acc[:n] = 0.0
    return size


def _one(i, q_indptr, q_indices, q_data, w_indptr, w_indices, w_data, ties, n_docs, k, out_idx, out_sc,
         acc, touched, hs, ht, hi, positive, dense_ratio):
    """Score query i into ``acc`` and heap-select its top k into row i, then zero ``acc``. With
    strictly positive weights and few postings for the corpus (``dense_ratio``), only the
    documents it touched are listed and scanned; otherwise every document is."""
    lo, hi_q = q_indptr[i], q_indptr[i + 1]
    postings = 0
    listed = positive
    for p in range(lo, hi_q):
        t = q_indices[p]
        postings += w_indptr[t + 1] - w_indptr[t]
        if not q_data[p] > 0.0:
            listed = False
    if postings * dense_ratio >= n_docs:
        listed = False
    n_touched = 0
    for p in range(lo, hi_q):
        t = q_indices[p]
        c = q_data[p]
        for r in range(w_indptr[t], w_indptr[t + 1]):
            d = w_indices[r]
            a = acc[d]
            if listed:  # branch-free append: a document is new while its sum is still 0
                touched[n_touched] = d
                n_touched += a == 0.0
            acc[d] = a + c * w_data[r]
    size = _seed(lo, hi_q, q_indices, w_indptr, w_indices, acc, ties, k, hs, ht, hi)
    if listed:
        size = _scan_listed(touched, n_touched, acc, ties, k, hs, ht, hi, size)
    else:
        size = _scan_all(n_docs, acc, ties, k, hs, ht, hi, size)
    _drain(i, out_idx, out_sc, hs, ht, hi, size)


def _row_kth(indptr, data, ks):
    """``out[a, t]``: row t's ``ks[a]``-th largest value (0 where the row is shorter)."""
    out = np.zeros((len(ks), len(indptr) - 1))
    for t in range(len(indptr) - 1):
        n = indptr[t + 1] - indptr[t]
        if n < ks[0]:
            continue
        row = data[indptr[t]:indptr[t + 1]].copy()
        for a in range(len(ks)):
            if ks[a] <= n:
                out[a, t] = np.partition(row, n - ks[a])[n - ks[a]]
    return out


if NUMBA_AVAILABLE:
    _row_kth = numba.njit(cache=True)(_row_kth)
    _prange = numba.prange
    _worse = numba.njit(cache=True, inline="always")(_worse)
    _sift_down = numba.njit(cache=True)(_sift_down)
    _sift_up = numba.njit(cache=True)(_sift_up)
    _offer = numba.njit(cache=True, inline="always")(_offer)
    _drain = numba.njit(cache=True)(_drain)
    _gallop = numba.njit(cache=True, inline="always")(_gallop)
    _plan = numba.njit(cache=True)(_plan)
    _above = numba.njit(cache=True, inline="always")(_above)
    _seed = numba.njit(cache=True)(_seed)
    _scan_listed = numba.njit(cache=True)(_scan_listed)
    _scan_all = numba.njit(cache=True)(_scan_all)
    _one = numba.njit(cache=True)(_one)
    _pruned_cursors = numba.njit(cache=True)(_pruned_cursors)
    _score_candidate = numba.njit(cache=True, inline="always")(_score_candidate)
    _one_pruned = numba.njit(cache=True)(_one_pruned)
    _search_par = numba.njit(cache=True, parallel=True)(_search)
    _search_ser = numba.njit(cache=True)(_search_serial)
else:  # pragma: no cover
    _prange = range
    _search_par = _search_ser = None

# below this many queries a parallel launch costs more than it saves
PARALLEL_MIN_QUERIES = 64
PRUNE_MODES = {"never": 0, "always": 1, "auto": 2}
# ``auto`` prunes a query whose terms hold at least PRUNE_MIN_POSTINGS postings, at least the
# PRUNE_MIN_SKIP share of them in terms non-essential from the start: the first share for k up
# to KTH_DEPTHS[0], the second for deeper k, whose threshold rises later (see ``_plan``)
PRUNE_MIN_POSTINGS = 5_000
PRUNE_MIN_SKIP = (0.95, 0.97)
# an exhaustive query scans every document's sum, instead of listing those it touched, once its
# postings times this reach the corpus size (the listing costs per posting what the scan costs
# per document)
DENSE_DOCS_PER_POSTING = 2.0


# the depths whose per-term k-th largest weight is kept: a search for top k starts its threshold
# from the smallest kept depth >= k
KTH_DEPTHS = (10, 100, 1000)


@dataclass(frozen=True)
class TermBounds:
    """What pruning needs from an index, per term: its largest weight (its score bound for a
    query count of 1) and its ``KTH_DEPTHS``-th largest weights (a threshold to start from);
    and whether every weight is non-negative (the bounds assume it)."""

    term_max: np.ndarray
    term_kth: np.ndarray  # (len(KTH_DEPTHS), n_terms)
    nonnegative: bool
    positive: bool = False  # every weight > 0: the exhaustive kernel may list touched documents

    @property
    def nbytes(self) -> int:
        return int(self.term_max.nbytes + self.term_kth.nbytes)

    def floor(self, k: int) -> np.ndarray:
        """Per-term weights that at least k documents reach (zeros beyond the kept depths)."""
        for a, depth in enumerate(KTH_DEPTHS):
            if k <= depth:
                return self.term_kth[a]
        return np.zeros_like(self.term_max)


def term_bounds(wt) -> TermBounds:
    """Per-term maxima and k-th largest weights of a CSR term-document weight matrix, in a few
    linear passes over its weights."""
    data = np.asarray(wt.data, dtype=np.float64)
    term_max = np.zeros(wt.shape[0])
    rows = np.flatnonzero(np.diff(wt.indptr))
    if len(rows):
        term_max[rows] = np.maximum.reduceat(data, wt.indptr[rows])
    if NUMBA_AVAILABLE:
        term_kth = _row_kth(np.asarray(wt.indptr, dtype=np.int64), data, np.asarray(KTH_DEPTHS, dtype=np.int64))
    else:  # pragma: no cover - the kernels that read them need numba
        term_kth = np.zeros((len(KTH_DEPTHS), wt.shape[0]))
    low = float(data.min()) if len(data) else 1.0
    return TermBounds(term_max, term_kth, low >= 0.0, low > 0.0)


def _plan_args(k: int, bounds: TermBounds | None, prune: str) -> tuple[int, np.ndarray, np.ndarray, int, float]:
    """What ``_plan`` reads besides the query and index: the prune mode (never where bounds are
    missing or some weight is negative), per-term bounds and k-th weights, and the thresholds."""
    if prune not in PRUNE_MODES:
        raise ValueError(f"prune must be one of {', '.join(PRUNE_MODES)}, got {prune!r}")
    usable = bounds is not None and bounds.nonnegative  # rows with a negative weight: see _plan
    mode = PRUNE_MODES[prune] if usable else 0
    term_max = bounds.term_max if usable else np.zeros(0)
    term_kth = bounds.floor(k) if usable else np.zeros(0)
    min_skip = PRUNE_MIN_SKIP[0] if k <= KTH_DEPTHS[0] else PRUNE_MIN_SKIP[1]
    return mode, term_max, term_kth, int(PRUNE_MIN_POSTINGS), float(min_skip)


def prune_plan(q, wt, k: int, bounds: TermBounds | None, prune: str = "auto") -> np.ndarray:
    """Which rows of ``q`` :func:`sparse_topk` scores with MaxScore (the rest exhaustively)."""
    mode, term_max, term_kth, min_postings, min_skip = _plan_args(k, bounds, prune)
    return _plan(q.indptr, q.indices, np.asarray(q.data, dtype=np.float64), wt.indptr, term_max, term_kth, mode,
                 min_postings, min_skip)


def sparse_topk(q, wt, ties: np.ndarray, k: int, bounds: TermBounds | None = None,
                prune: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``q @ wt`` (CSR query-term weights times CSR term-document weights with
    doc-sorted rows), positive scores only, ordered by score then ``ties``; -1 / -inf padding.
    ``bounds`` (from :func:`term_bounds`) allows MaxScore pruning, by ``prune``: never, always,
    or auto (per query, by its posting count); every choice returns the same run."""
    mode, term_max, term_kth, min_postings, min_skip = _plan_args(k, bounds, prune)
    n, n_docs = q.shape[0], wt.shape[1]
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_sc = np.full((n, k), -np.inf)
    if n == 0 or k == 0:
        return out_idx, out_sc
    q_data = np.asarray(q.data, dtype=np.float64)
    blocks = max(1, min(numba.get_num_threads(), n))
    run = _search_par if (blocks > 1 and n >= PARALLEL_MIN_QUERIES) else _search_ser
    run(q.indptr, q.indices, q_data, wt.indptr, wt.indices, np.asarray(wt.data, dtype=np.float64),
        np.asarray(ties, dtype=np.int64), n_docs, k, out_idx, out_sc, blocks, term_max, term_kth, mode,
        min_postings, min_skip,
        bool(bounds is not None and bounds.positive), float(DENSE_DOCS_PER_POSTING))
    return out_idx, out_sc
