"""Sparse retrieval speed on SciFact against rank_bm25 and bm25s, measured in the same run, at
top-10 and top-100 against bm25s (rank_bm25 scores every document whatever k: top-100 only), and
against PISA and tantivy where they are installed (``peers.py``; their ratios are ``info``, since
CI does not install them).

Every engine gets the same Lucene-English token lists, so each ratio measures the engine. Ratios
use the fastest of several interleaved rounds; absolute times go to pytest-benchmark and to
``kind="info"`` records only. Parity tests first show the engines compute the same scores.
"""
from __future__ import annotations

import contextlib
import importlib.util
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from odqa_core.perfstats import interleaved_latencies, interleaved_min, percentiles, speed_ratio
from odqa_core.retrieval import get_retriever

from .peers import ENGINES, build_peer, installed

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import TokenizedSet

K = 100                   # parity and index cells; the speed cells name their k
KS = (10, 100)
K1, B = 0.9, 0.4
RANK_SUBSET = 30          # rank_bm25 scores every document in Python: time it on a subset
LATENCY_SAMPLE = 60
RANK_LATENCY_SAMPLE = 15
PARITY_QUERIES = 20
SEED = 0
GOALS = {"qps_ratio_vs_rank_bm25": 100.0, "qps_ratio_vs_bm25s": 1.0, "qps_ratio_vs_pisa": 1.5}

HAS_NUMBA = importlib.util.find_spec("numba") is not None
_NEEDS_NUMBA = pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")


def _k_id(k: int) -> str:
    """Cell ids name k only where it is not the historical 100, so existing cells keep theirs."""
    return "" if k == K else f"-k{k}"


_ENGINE_MARKS = {name: [pytest.mark.skipif(not installed(name), reason=f"{ENGINES[name]} not installed (tox -e peers)")]
                 for name in ENGINES}
# korquad-open, full profile: against bm25s-numba and the other engines, one thread
OPEN_GOALS = {"bm25s": 2.0, "pisa": 1.5}
OPEN_CELLS = [pytest.param(peer, k, id=f"{peer}-k{k}", marks=_ENGINE_MARKS.get(peer, [_NEEDS_NUMBA]))
              for k in KS for peer in ("bm25s-numba", *ENGINES)]

QUERY_PEERS = [pytest.param("rank_bm25", K, id="rank_bm25")] + [
    pytest.param(peer, k, id=f"{peer}{_k_id(k)}", marks=[_NEEDS_NUMBA] if peer == "bm25s-numba" else [])
    for k in KS for peer in ("bm25s-numpy", "bm25s-numba")
]
# throughput is compared at equal thread counts: both engines serial, then both on two threads
THROUGHPUT_CELLS = [pytest.param("rank_bm25", 1, K, id="rank_bm25")] + [
    pytest.param(peer, threads, k, id=f"{peer}{tid}{_k_id(k)}",
                 marks=[_NEEDS_NUMBA] if peer == "bm25s-numba" else [])
    for k in KS for peer, threads, tid in (("bm25s-numpy", 1, ""), ("bm25s-numba", 1, "-1t"), ("bm25s-numba", 2, "-2t"))
] + [
    pytest.param(name, 1, k, id=f"{name}-k{k}", marks=_ENGINE_MARKS[name])
    for k in KS for name in ENGINES
]


@contextlib.contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run our numba kernel on ``n`` threads (1: its serial twin), as the peer is told to."""
    if not HAS_NUMBA:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _bm25s() -> Any:
    return pytest.importorskip("bm25s", reason="bm25s not installed")


def family(peer: str) -> str:
    """``bm25s-numba`` -> ``bm25s``: the metric name is per engine, the cell id per backend."""
    return peer.split("-")[0]


class Engines:
    """Indexes built once per module over the shared tokens: ours, and each peer on demand."""

    def __init__(self, ts: TokenizedSet, tokenizer: str, workdir: Path) -> None:
        self.ts = ts
        self.tokenizer = tokenizer
        self.workdir = workdir
        self._built: dict[str, Any] = {}

    def build(self, name: str) -> Callable[[], Any]:
        """A function that builds ``name``'s index from scratch (what index timings call)."""
        ts = self.ts
        if name == "ours":
            return lambda: get_retriever("bm25", tokenizer=self.tokenizer, k1=K1, b=B).index(ts.corpus)
        if name == "rank_bm25":
            return lambda: get_retriever("bm25-rank", tokenizer=self.tokenizer, k1=K1, b=B).index(ts.corpus)
        if name.startswith("bm25s"):
            bm25s = _bm25s()
            backend = name.partition("-")[2] or "numpy"

            def build() -> Any:
                r = bm25s.BM25(k1=K1, b=B, method="lucene", backend=backend)
                r.index(ts.doc_tokens, show_progress=False)
                return r

            return build
        if name in ENGINES:
            return lambda: build_peer(name, ts.doc_tokens, self.workdir, K1, B)
        raise ValueError(f"unknown engine {name}")

    def get(self, name: str) -> Any:
        if name not in self._built:
            self._built[name] = self.build(name)()
            if name == "bm25s-numba" or name in ENGINES:  # compile / load outside any timing
                self.searcher(name, [0])()
                self.searcher(name, [0, 1], 2)()
        return self._built[name]

    def searcher(self, name: str, positions: list[int] | np.ndarray, threads: int = 1, k: int = K) -> Callable[[], Any]:
        """A function that searches the queries at ``positions`` for their top ``k`` with ``name``
        on ``threads`` threads (1: serial)."""
        eng = self.get(name)
        pos = [int(p) for p in positions]
        if name in ENGINES:
            toks = [self.ts.query_tokens[p] for p in pos]
            return lambda: eng.search(toks, k)
        if name.startswith("bm25s"):
            toks = [self.ts.query_tokens[p] for p in pos]
            return lambda: eng.retrieve(toks, k=k, show_progress=False, n_threads=threads)
        texts = [self.ts.queries[p] for p in pos]

        def search() -> Any:
            with numba_threads(threads):
                return eng.search(texts, k)

        return search


@pytest.fixture(scope="module")
def engines(scifact_tokens: TokenizedSet, pretok: str, tmp_path_factory: pytest.TempPathFactory) -> Engines:
    return Engines(scifact_tokens, pretok, tmp_path_factory.mktemp("engines"))


def _sample(n: int, size: int) -> np.ndarray:
    return np.sort(np.random.default_rng(SEED).choice(n, size=min(size, n), replace=False))


# --- parity: the engines compared below compute the same scores --------------------------------

def test_bm25_robertson_scores_match_rank_bm25(scifact_tokens: TokenizedSet, pretok: str) -> None:
    from rank_bm25 import BM25Okapi

    ts = scifact_tokens
    ours = get_retriever("bm25", tokenizer=pretok, variant="robertson", k1=1.5, b=0.75).index(ts.corpus)
    okapi = BM25Okapi(ts.doc_tokens, k1=1.5, b=0.75, epsilon=0.25)
    pos = _sample(len(ts.queries), PARITY_QUERIES)
    got = ours.score_all([ts.queries[p] for p in pos])
    want = np.vstack([okapi.get_scores(ts.query_tokens[p]) for p in pos])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert (want > 0).sum() > 100  # the comparison is not over empty rows


def test_bm25_lucene_scores_match_bm25s(engines: Engines) -> None:
    ts = engines.ts
    pos = _sample(len(ts.queries), PARITY_QUERIES)
    _, ours_sc = engines.searcher("ours", pos)()
    _, peer_sc = engines.searcher("bm25s-numpy", pos)()
    ours_sc = np.where(np.isfinite(ours_sc), ours_sc, 0.0)  # bm25s pads with score 0
    np.testing.assert_allclose(ours_sc, np.asarray(peer_sc, dtype=np.float64), rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("name", [pytest.param(n, marks=_ENGINE_MARKS[n]) for n in ENGINES])
def test_peer_engines_rank_like_bm25(name: str, engines: Engines) -> None:
    """PISA and tantivy answer the queries they are timed on: most of their top 10 is ours (their
    BM25 formulas differ slightly, and tantivy's k1 and b are fixed)."""
    ts = engines.ts
    pos = _sample(len(ts.queries), 200)
    mine, _ = engines.searcher("ours", pos, k=10)()
    theirs = engines.searcher(name, pos, k=10)()
    overlap = np.mean([len(set(a[a >= 0].tolist()) & set(b.tolist())) / max(1, min(10, (a >= 0).sum()))
                       for a, b in zip(mine, theirs)])
    assert overlap > 0.6, f"{name} shares {overlap:.2f} of bm25's top 10 on SciFact"


# --- speed --------------------------------------------------------------------------------------

@pytest.mark.perf
@pytest.mark.parametrize("peer", ["rank_bm25", "bm25s"])
def test_index_throughput(peer: str, engines: Engines, benchmark: Any, odqa_record: Any) -> None:
    ts = engines.ts
    n_docs = len(ts.corpus)
    build_ours, build_peer = engines.build("ours"), engines.build(peer)
    t_ours, t_peer = interleaved_min(build_ours, build_peer, rounds=3)
    ratio = speed_ratio(t_peer, t_ours)
    odqa_record.dataset(ts.dataset)
    odqa_record(f"index_ratio_vs_{peer}", ratio, kind="speed")
    odqa_record("index_docs_per_s", n_docs / t_ours, kind="info")
    odqa_record(f"{peer}_index_docs_per_s", n_docs / t_peer, kind="info")
    benchmark.extra_info.update({"n_docs": n_docs, "docs_per_s": n_docs / t_ours,
                                 "peer_docs_per_s": n_docs / t_peer, f"index_ratio_vs_{peer}": ratio})
    benchmark.pedantic(build_ours, rounds=2, warmup_rounds=0, iterations=1)


def _throughput(engines: Engines, peer: str, threads: int, k: int, benchmark: Any, odqa_record: Any,
                goal: float | None) -> None:
    """Our batch queries/s against ``peer``'s over the same queries, fastest of interleaved rounds."""
    ts = engines.ts
    n_all = len(ts.queries)
    n_peer = RANK_SUBSET if peer == "rank_bm25" else n_all
    ours = engines.searcher("ours", range(n_all), threads, k)
    other = engines.searcher(peer, range(n_peer), threads, k)
    t_ours, t_peer = interleaved_min(ours, other, rounds=3 if peer == "rank_bm25" else 7)
    qps, peer_qps = n_all / t_ours, n_peer / t_peer
    ratio = qps / peer_qps
    name = f"qps_ratio_vs_{family(peer)}"
    odqa_record.dataset(ts.dataset)
    odqa_record(name, ratio, kind="info" if peer in ENGINES else "speed", peer=peer, k=k, threads=threads,
                **({"goal": goal} if goal is not None else {}))
    odqa_record("qps", qps, kind="info", threads=threads)
    odqa_record(f"{family(peer)}_qps", peer_qps, kind="info", threads=threads)
    benchmark.extra_info.update({"k": k, "n_queries": n_all, "qps": qps, "peer": peer, "peer_queries": n_peer,
                                 "threads": threads, "peer_qps": peer_qps, name: ratio, "goal": goal})
    if peer == "rank_bm25":
        assert ratio > 1.0, f"bm25 answers {qps:.0f} queries/s, slower than pure-Python rank_bm25 ({peer_qps:.0f}/s)"
    benchmark.pedantic(ours, rounds=5, warmup_rounds=1, iterations=1)


@pytest.mark.perf
@pytest.mark.parametrize("peer,threads,k", THROUGHPUT_CELLS)
def test_query_throughput(peer: str, threads: int, k: int, engines: Engines, benchmark: Any, odqa_record: Any) -> None:
    _throughput(engines, peer, threads, k, benchmark, odqa_record, GOALS.get(f"qps_ratio_vs_{family(peer)}"))


@pytest.fixture(scope="module")
def open_engines(korquad_open_tokens: TokenizedSet, pretok: str, tmp_path_factory: pytest.TempPathFactory) -> Engines:
    return Engines(korquad_open_tokens, pretok, tmp_path_factory.mktemp("open-engines"))


@pytest.mark.perf
@pytest.mark.full
@pytest.mark.parametrize("peer,k", OPEN_CELLS)
def test_open_query_throughput(peer: str, k: int, open_engines: Engines, benchmark: Any, odqa_record: Any) -> None:
    """korquad-open (30.8k Wikipedia passages and KorQuAD's paragraphs, Kiwi morphemes), one
    thread: the open-domain corpus the goals against bm25s and PISA are set for."""
    _throughput(open_engines, peer, 1, k, benchmark, odqa_record, OPEN_GOALS.get(family(peer)))


@pytest.mark.perf
@pytest.mark.parametrize("peer,k", QUERY_PEERS)
def test_query_latency(peer: str, k: int, engines: Engines, benchmark: Any, odqa_record: Any) -> None:
    ts = engines.ts
    sample = _sample(len(ts.queries), RANK_LATENCY_SAMPLE if peer == "rank_bm25" else LATENCY_SAMPLE)
    ours_one = {int(p): engines.searcher("ours", [p], 1, k) for p in sample}
    peer_one = {int(p): engines.searcher(peer, [p], 1, k) for p in sample}
    lat_ours, lat_peer = interleaved_latencies(lambda p: ours_one[p](), lambda p: peer_one[p](),
                                               [int(p) for p in sample], repeats=2)
    p50, p95 = percentiles(lat_ours, (50, 95))
    peer_p50, peer_p95 = percentiles(lat_peer, (50, 95))
    fam = family(peer)
    odqa_record.dataset(ts.dataset)
    odqa_record(f"p50_latency_ratio_vs_{fam}", speed_ratio(peer_p50, p50), kind="speed", peer=peer, k=k,
                **({"goal": GOALS["qps_ratio_vs_bm25s"]} if fam == "bm25s" else {}))
    odqa_record(f"p95_latency_ratio_vs_{fam}", speed_ratio(peer_p95, p95), kind="speed", peer=peer, k=k)
    for label, v in (("p50_ms", p50), ("p95_ms", p95), (f"{fam}_p50_ms", peer_p50), (f"{fam}_p95_ms", peer_p95)):
        odqa_record(label, v * 1e3, kind="info", higher_is_better=False)
    benchmark.extra_info.update({"k": k, "sample": len(sample), "peer": peer, "p50_ms": p50 * 1e3, "p95_ms": p95 * 1e3,
                                 "peer_p50_ms": peer_p50 * 1e3, "peer_p95_ms": peer_p95 * 1e3})
    cycle = itertools.cycle(ours_one.values())
    benchmark.pedantic(lambda: next(cycle)(), rounds=len(sample), warmup_rounds=1, iterations=1)
