"""The Ray-sharded retriever returns exactly the single-process top-k, and an actor killed
mid-search yields the full result (after the retry) or an error naming the shard, never a
partial merge. One local Ray per module; the merge itself is also tested without Ray."""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from odqa_core.bench import require_dataset
from odqa_core.data import load_dataset
from odqa_core.data.types import Corpus
from odqa_core.errors import OdqaBenchError
from odqa_core.retrieval import get_retriever, tie_keys, topk
from odqa_core.retrieval.ray_shards import merge_topk, shard_bounds

ray = pytest.importorskip("ray")


# --- without Ray -------------------------------------------------------------------------------

def test_shard_bounds_cover_the_corpus_contiguously() -> None:
    for n, s in [(10, 3), (7, 7), (5183, 4), (1, 1)]:
        b = shard_bounds(n, s)
        assert b[0][0] == 0 and b[-1][1] == n and len(b) == s
        assert all(hi == lo2 for (_, hi), (lo2, _) in zip(b, b[1:]))
        assert max(hi - lo for lo, hi in b) - min(hi - lo for lo, hi in b) <= 1


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_merge_of_shard_topks_equals_global_topk_with_ties(shards: int) -> None:
    rng = np.random.default_rng(shards)
    n_docs, k = 40, 7
    scores = rng.integers(0, 4, size=(25, n_docs)).astype(float)  # many ties and zeros
    ids = [f"d{rng.integers(0, 10**6):07d}" for _ in range(n_docs)]
    ties = tie_keys(ids)
    want = topk(scores, k, ties, positive_only=True)
    parts = []
    for lo, hi in shard_bounds(n_docs, shards):
        i, s = topk(scores[:, lo:hi], k, ties[lo:hi], positive_only=True)
        parts.append((np.where(i >= 0, i + lo, -1), s))
    got = merge_topk(parts, k, ties)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("params, match", [
    ({"shards": 0}, "shards"), ({"shards": "2"}, "shards"), ({"inner": "bm25-rank"}, "rank_bm25"),
    ({"inner": "ray"}, "nest"), ({"bogus": 1}, "bad parameters"),
])
def test_bad_parameters_are_user_errors(params: dict[str, Any], match: str) -> None:
    with pytest.raises(OdqaBenchError, match=match):
        get_retriever("ray", **params)


# --- with one local Ray for the module ----------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray() -> Any:
    """Ray for the module; the root conftest's drop_caches stops it when the module ends."""
    from odqa_core.retrieval.ray_shards import ensure_ray

    ensure_ray(2)
    return ray


def _check_same(ds: Any, inner: str, params: dict[str, Any], shard_counts: list[int], k: int = 100) -> None:
    single = get_retriever(inner, **params).index(ds.corpus)
    want_i, want_s = single.search(ds.query_texts, k)
    for s in shard_counts:
        r = get_retriever("ray", inner=inner, shards=s, inner_params=params).index(ds.corpus)
        try:
            got_i, got_s = r.search(ds.query_texts, k)
        finally:
            r.close()
        assert r.name == f"ray-{inner}"
        np.testing.assert_array_equal(got_i, want_i, err_msg=f"{s} shards")
        np.testing.assert_array_equal(got_s, want_s, err_msg=f"{s} shards")


def test_bm25_default_identical_for_1_2_3_shards(local_ray: Any) -> None:
    _check_same(load_dataset("default"), "bm25", {"tokenizer": "regex"}, [1, 2, 3], k=20)


def test_tfidf_default_identical(local_ray: Any) -> None:
    _check_same(load_dataset("default"), "tfidf", {"tokenizer": "regex"}, [2], k=20)


def test_actor_info_reports_current_and_peak_memory(local_ray: Any) -> None:
    r = get_retriever("ray", inner="bm25", shards=2, inner_params={"tokenizer": "regex"}).index(load_dataset("default").corpus)
    try:
        info = r.actor_info()
    finally:
        r.close()
    assert len({a["pid"] for a in info}) == 2
    for a in info:
        assert a["peak_rss"] >= a["rss"] > 10 * 2**20  # a Ray worker with numpy holds tens of MB at least


@pytest.fixture(scope="module")
def scifact() -> Any:
    """SciFact, asked for before ``local_ray``: where the data is missing, the test stops before
    Ray starts its processes."""
    return require_dataset("scifact")


def test_bm25_scifact_identical_for_1_2_3_shards(scifact: Any, local_ray: Any) -> None:
    _check_same(scifact, "bm25", {"tokenizer": "regex-stem", "k1": 0.9, "b": 0.4}, [1, 2, 3])


class _CharHash:
    """A corpus-statistics-free scorer (hashed character bigrams, cosine): stands in for a
    dense retriever, whose shards index their own slices inside the actors."""

    name = "charhash"

    def _vec(self, texts: list[str]) -> np.ndarray:
        m = np.zeros((len(texts), 64))
        for i, t in enumerate(texts):
            for a, b in zip(t, t[1:]):
                m[i, (ord(a) * 31 + ord(b)) % 64] += 1.0
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    def index(self, corpus: Corpus) -> _CharHash:
        self._m, self._ties = self._vec(corpus.joined()), tie_keys(corpus.ids)
        return self

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return topk(self._vec(queries) @ self._m.T, k, self._ties)


def test_statistics_free_inner_indexes_per_shard(local_ray: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from odqa_core.retrieval import base

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    monkeypatch.setitem(base._REGISTRY, "charhash", _CharHash)
    ds = load_dataset("default")
    _check_same(ds, "charhash", {}, [2], k=15)


def test_actor_killed_mid_search_gives_full_result_or_error(scifact: Any, local_ray: Any) -> None:
    ds = scifact
    params = {"tokenizer": "regex"}
    queries = ds.query_texts * 10
    want = get_retriever("bm25", **params).index(ds.corpus).search(queries, 50)
    r = get_retriever("ray", inner="bm25", shards=2, inner_params=params).index(ds.corpus)
    try:
        out: dict[str, Any] = {}

        def run() -> None:
            try:
                out["result"] = r.search(queries, 50)
            except OdqaBenchError as exc:
                out["error"] = exc

        th = threading.Thread(target=run)
        th.start()
        time.sleep(0.2)
        ray.kill(r.actors[1], no_restart=False)
        th.join(120)
        assert not th.is_alive()
        if "error" in out:
            assert "shard 1" in str(out["error"])
        else:
            np.testing.assert_array_equal(out["result"][0], want[0])
            np.testing.assert_array_equal(out["result"][1], want[1])
        # the restarted actor rebuilt its shard: a later search is whole again
        again = r.search(queries[:300], 50)
        np.testing.assert_array_equal(again[0], want[0][:300])
        # a second death exhausts the one restart: an error naming the shard, no partial merge
        ray.kill(r.actors[0], no_restart=True)
        with pytest.raises(OdqaBenchError, match="shard 0"):
            r.search(queries[:10], 50)
    finally:
        r.close()


def test_drop_caches_stops_the_ray_it_started_and_keeps_a_connected_one() -> None:
    from odqa_core.memory import drop_caches
    from odqa_core.retrieval.ray_shards import ensure_ray

    ensure_ray(1)
    assert ray.is_initialized()
    drop_caches()
    assert not ray.is_initialized()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)  # the caller's own Ray
    try:
        ensure_ray(1)
        drop_caches()
        assert ray.is_initialized()
    finally:
        ray.shutdown()
