"""Cost against corpus size on synthetic corpora (1k and 10k passages; 100k in the full profile).

Per retriever: index time, query time per query and index peak memory at each size, and the
growth exponent ``e`` of ``time per query ~ N ** e`` fitted over the sizes. Exponents are ratios
of times measured in one process, so they travel between machines; absolute times are reported
only. Sizes are timed round-robin so background load falls on all of them alike.
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from odqa_core.data.types import Dataset
from odqa_core.io import atomic_write_bytes
from odqa_core.perfstats import growth_exponent, peak_memory, time_call, torch_threads
from odqa_core.retrieval import get_retriever, retriever_names
from odqa_core.synthetic import synthetic_dataset

log = logging.getLogger(__name__)

SIZES = {"quick": (1_000, 10_000), "full": (1_000, 10_000, 100_000)}
N_QUERIES = 200
K = 100
SEED = 0
# the tiny random encoder with short inputs: the dense cost curve, not a model's quality
DENSE_TINY = {"model": "tiny", "size": "L1", "max_length": 32, "index": "flat"}
SANITY_MAX_EXPONENT = 1.5   # per-query cost growing faster than this is an algorithmic bug
GOALS = {"bm25": 1.0}       # aim (reported, not asserted): bm25 per-query time sub-linear in N


@dataclass
class ScalePoint:
    """What one corpus size cost one retriever."""

    n_docs: int
    index_s: float
    query_s: float            # seconds per query (batch of N_QUERIES / N_QUERIES)
    peak_bytes: int           # tracemalloc peak while indexing (0: not traced)
    rss_delta_bytes: int


_RESULTS: dict[str, list[ScalePoint]] = {}


@cache
def corpus(n_docs: int) -> Dataset:
    """The synthetic corpus of ``n_docs`` passages (built once per process)."""
    return synthetic_dataset(n_docs, N_QUERIES, seed=SEED)


def _builder(retriever: str, tokenizer: str) -> Callable[[], Any]:
    if retriever == "dense-tiny":
        if "dense" not in retriever_names():
            pytest.skip("dense retriever unavailable (needs torch and faiss)")
        return lambda: get_retriever("dense", **DENSE_TINY)
    return lambda: get_retriever(retriever, tokenizer=tokenizer)


def render_scale_plot(results: dict[str, list[ScalePoint]]) -> bytes:
    """Log-log PNG of index time and time per query against corpus size, one line per retriever."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, pts in sorted(results.items()):
        n = [p.n_docs for p in pts]
        for ax, ys in ((axes[0], [p.index_s for p in pts]), (axes[1], [p.query_s * 1e3 for p in pts])):
            e = growth_exponent(n, ys) if len(set(n)) > 1 else float("nan")
            ax.plot(n, ys, marker="o", label=f"{label} (e={e:.2f})")
    for ax, title, ylabel in ((axes[0], "index time", "seconds"), (axes[1], "time per query", "milliseconds")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("passages (N)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def measure(make: Callable[[], Any], data: dict[int, Dataset], dense: bool, cache_root: Path,
            monkeypatch: pytest.MonkeyPatch) -> tuple[list[ScalePoint], dict[int, Any]]:
    """Index and query every size, round-robin; the retrievers built for the largest timings."""
    sizes = tuple(sorted(data))
    fresh = iter(range(10**6))

    def build(n: int) -> Any:
        # a fresh cache folder per build: dense embeddings are encoded, never loaded
        monkeypatch.setenv("ODQA_CACHE_DIR", str(cache_root / f"cache{next(fresh)}"))
        return make().index(data[n].corpus)

    def timed_build(n: int) -> tuple[Any, float]:
        t0 = time.perf_counter()
        r = build(n)
        return r, time.perf_counter() - t0

    def round_robin(r: int) -> tuple[int, ...]:
        return sizes if r % 2 == 0 else sizes[::-1]

    index_s = {n: float("inf") for n in sizes}
    memory: dict[int, tuple[int, int]] = {}
    built: dict[int, Any] = {}
    if dense:
        # encoding dominates and torch memory is invisible to tracemalloc: one untraced build
        # per size gives the time and the RSS delta, after a warm-up that pays for imports
        monkeypatch.setenv("ODQA_CACHE_DIR", str(cache_root / "warmup"))
        make().index(synthetic_dataset(64, 0, seed=SEED).corpus)
        for n in sizes:
            (built[n], index_s[n]), _, rss = peak_memory(partial(timed_build, n), trace=False)
            memory[n] = (0, rss)
    else:
        for r in range(3 if max(sizes) <= 10_000 else 1):
            for n in round_robin(r):
                built[n], t = timed_build(n)
                index_s[n] = min(index_s[n], t)
        for n in sizes:
            _, peak, rss = peak_memory(partial(build, n))
            memory[n] = (peak, rss)

    query_s = {n: float("inf") for n in sizes}
    for r in range(2 if dense else 3):
        for n in round_robin(r):
            t = time_call(partial(built[n].search, data[n].query_texts, K))
            query_s[n] = min(query_s[n], t / N_QUERIES)
    return [ScalePoint(n, index_s[n], query_s[n], *memory[n]) for n in sizes], built


@pytest.mark.perf
@pytest.mark.parametrize("profile", ["quick", pytest.param("full", marks=pytest.mark.full)])
@pytest.mark.parametrize("retriever", ["bm25", "tfidf", "dense-tiny"])
def test_scale(retriever: str, profile: str, pretok: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               benchmark: Any, odqa_record: Any, odqa_report_dir: Path | None) -> None:
    make = _builder(retriever, pretok)
    dense = retriever == "dense-tiny"
    sizes = SIZES[profile]
    data = {n: corpus(n) for n in sizes}
    # one torch thread: the tiny model's small ops stall at thread barriers on a busy VM
    with torch_threads(1) if dense else contextlib.nullcontext():
        points, built = measure(make, data, dense, tmp_path, monkeypatch)
    _RESULTS[f"{retriever} [{profile}]"] = points
    ns = [p.n_docs for p in points]
    e_query = growth_exponent(ns, [p.query_s for p in points])
    e_index = growth_exponent(ns, [p.index_s for p in points])
    e_memory = growth_exponent(ns, [p.peak_bytes for p in points]) if not dense else None

    odqa_record.dataset(data[max(sizes)])
    extra = {"sizes": list(ns), **({"goal": GOALS[retriever]} if retriever in GOALS else {})}
    # Exponents are fitted slopes, not ratios: they hover near 0 when fixed costs dominate (the tiny
    # dense model's query encoding), where a relative tolerance means nothing. They are reported,
    # and the assertions below hold the goal (sub-linear bm25 queries) instead of the gate.
    odqa_record("growth_exponent", e_query, higher_is_better=False, kind="info", **extra)
    # the slope between the two largest sizes: fixed per-query costs flatten the fit at 1k, and
    # this says how the cost grows where the postings dominate
    e_tail = growth_exponent(ns[-2:], [p.query_s for p in points[-2:]])
    odqa_record("tail_growth_exponent", e_tail, higher_is_better=False, kind="info", sizes=list(ns[-2:]))
    odqa_record("index_growth_exponent", e_index, higher_is_better=False, kind="info")
    if e_memory is not None:
        odqa_record("memory_growth_exponent", e_memory, higher_is_better=False, kind="info")
    for p in points:
        odqa_record(f"index_s@{p.n_docs}", p.index_s, higher_is_better=False, kind="info")
        odqa_record(f"query_ms@{p.n_docs}", p.query_s * 1e3, higher_is_better=False, kind="info")
        if not dense:
            odqa_record(f"index_peak_mb@{p.n_docs}", p.peak_bytes / 2**20, higher_is_better=False, kind="info")
        odqa_record(f"index_rss_delta_mb@{p.n_docs}", p.rss_delta_bytes / 2**20, higher_is_better=False, kind="info")
    benchmark.extra_info.update({
        "sizes": ns, "growth_exponent": e_query, "tail_growth_exponent": e_tail, "index_growth_exponent": e_index, "memory_growth_exponent": e_memory,
        "index_s": [p.index_s for p in points], "query_ms": [p.query_s * 1e3 for p in points],
        "index_peak_mb": None if dense else [p.peak_bytes / 2**20 for p in points],
        "index_rss_delta_mb": [p.rss_delta_bytes / 2**20 for p in points],
    })
    png = render_scale_plot(_RESULTS)
    assert png.startswith(b"\x89PNG")
    if odqa_report_dir is not None:
        atomic_write_bytes(odqa_report_dir / "scale.png", png)
    log.info("%s: query growth exponent %.3f (%.3f over %s), index %.3f over %s", retriever, e_query, e_tail,
             ns[-2:], e_index, ns)

    assert np.isfinite(e_query) and e_query < SANITY_MAX_EXPONENT, (
        f"{retriever}: time per query grows as N^{e_query:.2f} over {ns}; expected at most linear growth")
    if retriever in GOALS:
        # a goal, not an invariant: exhaustive term-at-a-time scoring touches every posting of the
        # query's terms, and postings grow with N; the report and the warning say when it is missed
        met = e_query < GOALS[retriever]
        odqa_record("growth_goal_met", float(met), kind="info", goal=GOALS[retriever], sizes=list(ns))
        if not met:
            warnings.warn(f"{retriever}: time per query grows as N^{e_query:.2f} over {ns}; "
                          f"the goal is below N^{GOALS[retriever]:.1f}", stacklevel=1)
    largest = built[max(sizes)]
    queries = data[max(sizes)].query_texts
    with torch_threads(1) if dense else contextlib.nullcontext():
        benchmark.pedantic(lambda: largest.search(queries, K), rounds=2 if dense else 3, warmup_rounds=0, iterations=1)
