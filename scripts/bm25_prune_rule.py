"""Time every query of a corpus one at a time, exhaustive and MaxScore (one thread, best of
``--repeat``), and print what bm25's ``auto`` rule picks against each path and against the
per-query oracle: the numbers behind ``PRUNE_MIN_POSTINGS`` and ``PRUNE_MIN_SKIP``.

    python scripts/bm25_prune_rule.py --corpus synthetic:100000 --k 10,100
    python scripts/bm25_prune_rule.py --corpus korquad-open --tokenizer kiwi --queries 400
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def per_query_times(r, texts: list[str], k: int, repeat: int) -> np.ndarray:
    """(n, 2) seconds per query: exhaustive, MaxScore."""
    from odqa_core.retrieval.kernels import sparse_topk

    out = np.zeros((len(texts), 2))
    for i in range(len(texts)):
        q = r.query_terms(texts[i:i + 1]) if r._raw_counts else r.query_matrix(texts[i:i + 1]).tocsr()
        for j, mode in enumerate(("never", "always")):
            sparse_topk(q, r._wt, r._ties, k, r._bounds, mode)
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                sparse_topk(q, r._wt, r._ties, k, r._bounds, mode)
                best = min(best, time.perf_counter() - t0)
            out[i, j] = best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="synthetic:N or a dataset name (korquad-open, scifact, ...)")
    ap.add_argument("--tokenizer", default="regex")
    ap.add_argument("--k", default="10,100")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import numba

    from odqa_core.retrieval import get_retriever
    from odqa_core.retrieval.kernels import prune_plan

    numba.set_num_threads(1)
    if args.corpus.startswith("synthetic:"):
        from odqa_core.synthetic import synthetic_dataset

        ds = synthetic_dataset(int(args.corpus.split(":")[1]), args.queries, seed=0)
        r = get_retriever("bm25", tokenizer=args.tokenizer, k1=0.9, b=0.4).index(ds.corpus)
    else:
        from odqa_core.bench import cached_dataset

        ds = cached_dataset(args.corpus)
        r = get_retriever("bm25", tokenizer=args.tokenizer).index(ds.corpus)
    texts = list(ds.query_texts)[: args.queries]
    print("| corpus | k | queries pruned by auto | auto / exhaustive | MaxScore always / exhaustive | auto / oracle |")
    print("|---|---|---|---|---|---|")
    for k in (int(x) for x in args.k.split(",")):
        t = per_query_times(r, texts, k, args.repeat)
        q = r.query_terms(texts) if r._raw_counts else r.query_matrix(texts).tocsr()
        pick = prune_plan(q, r._wt, k, r._bounds)
        auto = np.where(pick, t[:, 1], t[:, 0]).sum()
        print(f"| {args.corpus} | {k} | {int(pick.sum())}/{len(texts)} | {t[:, 0].sum() / auto:.2f}x "
              f"| {t[:, 0].sum() / t[:, 1].sum():.2f}x | {t.min(axis=1).sum() / auto:.2f}x |")
        print(f"<!-- ms per query: auto {auto / len(texts) * 1e3:.3f}, exhaustive {t[:, 0].mean() * 1e3:.3f} -->")


if __name__ == "__main__":
    main()
