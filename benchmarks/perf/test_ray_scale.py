"""The Ray-sharded retriever over 1, 2 and 4 shards: bm25 on SciFact, all 300 queries, top 100.

Each cell first checks that the shards return exactly the single-process ranking (indices and
scores), then times the sharded search against single-process bm25 in the same process,
interleaved, fastest of several rounds: once against bm25 as it ships (the numba kernel) and
once against its numpy path, the kernel every shard runs, so the second ratio isolates what
sharding itself costs. Everything timed is reported, not gated (``kind="info"``): with two or
four actor processes and the driver on two cores, inter-process latency under any background
load moved the 2-shard ratio tenfold between runs, which no tolerance can tell from a
regression. The exact-equality check is what fails. One local Ray per module
(``num_cpus=2``, no dashboard), shut down at the end; the module skips when ray is missing.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from odqa_core.data.types import Dataset
from odqa_core.perfstats import interleaved_min
from odqa_core.retrieval import get_retriever

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'odqa-bench[dist]')")

SHARDS = (1, 2, 4)
K = 100
RAY_CPUS = 2
ROUNDS = 11
PARAMS = {"tokenizer": "regex-stem", "k1": 0.9, "b": 0.4}  # Lucene-English tokens, Anserini's SciFact bm25
MB = 2**20


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """A local Ray for this module (an already connected one is used as is and left running)."""
    from odqa_core.retrieval.ray_shards import ensure_ray

    started = not ray.is_initialized()
    ensure_ray(RAY_CPUS)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def singles(scifact: Dataset) -> dict[str, Any]:
    """Single-process bm25 indexed once: as it ships (``auto``: numba when installed) and numpy."""
    return {b: get_retriever("bm25", backend=b, **PARAMS).index(scifact.corpus) for b in ("auto", "numpy")}


@pytest.mark.perf
@pytest.mark.parametrize("shards", SHARDS, ids=lambda s: f"shards={s}")
def test_ray_scale(shards: int, scifact: Dataset, singles: dict[str, Any], local_ray: Any, benchmark: Any,
                   odqa_record: Any) -> None:
    queries = list(scifact.query_texts)
    n = len(queries)
    sharded = get_retriever("ray", inner="bm25", shards=shards, inner_params=PARAMS, ray_cpus=RAY_CPUS)
    sharded.index(scifact.corpus)
    try:
        want_i, want_s = singles["auto"].search(queries, K)
        got_i, got_s = sharded.search(queries, K)
        np.testing.assert_array_equal(got_i, want_i, err_msg=f"{shards} shards: indices differ from one process")
        np.testing.assert_array_equal(got_s, want_s, err_msg=f"{shards} shards: scores differ from one process")

        def ray_search() -> Any:
            return sharded.search(queries, K)

        t_ray, t_auto = interleaved_min(ray_search, lambda: singles["auto"].search(queries, K), rounds=ROUNDS)
        t_ray2, t_numpy = interleaved_min(ray_search, lambda: singles["numpy"].search(queries, K), rounds=ROUNDS)
        t_ray = min(t_ray, t_ray2)
        info = sharded.actor_info()
        assert len(info) == shards and len({a["pid"] for a in info}) == shards, info
        rss = [a["rss"] / MB for a in info]
        peak = [a["peak_rss"] / MB for a in info]

        odqa_record.dataset(scifact)
        odqa_record("qps_ratio_vs_bm25", t_auto / t_ray, kind="info", shards=shards, k=K, peer="bm25 (auto backend)")
        odqa_record("qps_ratio_vs_bm25_numpy", t_numpy / t_ray, kind="info", shards=shards, k=K,
                    peer="bm25 (numpy backend)")
        odqa_record("qps", n / t_ray, kind="info", shards=shards)
        odqa_record("bm25_qps", n / t_auto, kind="info")
        odqa_record("bm25_numpy_qps", n / t_numpy, kind="info")
        odqa_record("actor_rss_mb", float(np.mean(rss)), kind="info", higher_is_better=False,
                    per_actor=[round(x, 1) for x in rss])
        odqa_record("actor_peak_rss_mb", float(np.max(peak)), kind="info", higher_is_better=False,
                    per_actor=[round(x, 1) for x in peak])
        benchmark.extra_info.update({"shards": shards, "n_queries": n, "k": K, "qps": n / t_ray,
                                     "bm25_qps": n / t_auto, "bm25_numpy_qps": n / t_numpy,
                                     "actor_rss_mb": rss, "actor_peak_rss_mb": peak})
        assert all(p >= r > 0 for p, r in zip(peak, rss)), (rss, peak)
        benchmark.pedantic(ray_search, rounds=3, warmup_rounds=0, iterations=1)
    finally:
        sharded.close()
