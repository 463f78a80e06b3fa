"""``ray``: one retriever's corpus split into contiguous shards held by Ray actors, searched in
parallel and merged into exactly the single-process top-k.

Lexical retrievers (``bm25``, ``tfidf``) score with corpus-wide statistics (idf, average
length), so a shard indexed on its own slice would score differently. Here the driver indexes
the whole corpus once and hands each actor its column slice of the ``(V x N)`` weight matrix;
queries are turned into term vectors once on the driver, so actors need no tokenizer. Every
(query, document) score is then the same floating-point sum as in one process. Other inner
retrievers (dense) have no corpus statistics and index their own slice inside the actor.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.types import Corpus
from ..errors import OdqaBenchError
from ..memory import forgettable
from .base import get_retriever
from .run import tie_keys, topk
from .sparse import _Lexical

__all__ = ["RayShards", "ensure_ray", "merge_topk", "shard_bounds", "stop_started_ray"]

log = logging.getLogger(__name__)

# inner retrievers whose scores depend on the whole corpus but keep it inside a third-party
# object we cannot slice: sharding them would silently change their scores
_UNSHARDABLE = {"bm25-rank": "rank_bm25 keeps idf and average length inside its own object; shard 'bm25' instead"}
QUERY_CHUNK = 512


def shard_bounds(n_docs: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` document ranges, sizes differing by at most one."""
    edges = np.linspace(0, n_docs, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int, ties: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard ``(indices, scores)`` (global indices, -1 padded) into the global top-k:
    score descending, ties by ``ties`` of the global index (smaller first), padding last."""
    idx = np.concatenate([p[0] for p in parts], axis=1)
    sc = np.concatenate([p[1] for p in parts], axis=1)
    n = idx.shape[0]
    out_i = np.full((n, k), -1, dtype=np.int64)
    out_s = np.full((n, k), -np.inf, dtype=np.float64)
    if n == 0 or idx.shape[1] == 0:
        return out_i, out_s
    pad = idx < 0
    tkey = np.where(pad, len(ties), ties[np.where(pad, 0, idx)])
    order = np.lexsort((tkey, pad, -sc), axis=-1)[:, :k]
    kk = order.shape[1]
    out_i[:, :kk] = np.take_along_axis(idx, order, axis=1)
    out_s[:, :kk] = np.take_along_axis(sc, order, axis=1)
    out_s[out_i < 0] = -np.inf
    return out_i, out_s


@dataclass
class _MatrixShard:
    """A slice of a lexical weight matrix: columns ``[offset, offset + n)`` of the global one."""

    wt: sp.csr_matrix
    ties: np.ndarray
    offset: int

    def search(self, q: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = q.shape[0]
        idx = np.full((n, k), -1, dtype=np.int64)
        sc = np.full((n, k), -np.inf)
        for s in range(0, n, QUERY_CHUNK):
            dense = (q[s : s + QUERY_CHUNK] @ self.wt).toarray()
            idx[s : s + QUERY_CHUNK], sc[s : s + QUERY_CHUNK] = topk(dense, k, self.ties, positive_only=True)
        return np.where(idx >= 0, idx + self.offset, -1), sc


@dataclass
class _OffsetShard:
    """An inner retriever indexed on its own corpus slice, answering in global indices."""

    retriever: Any
    offset: int

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        idx, sc = self.retriever.search(queries, k)
        return np.where(idx >= 0, idx + self.offset, -1), sc


@dataclass(frozen=True)
class _IndexSpec:
    """What an actor needs to (re)build an :class:`_OffsetShard`: kept by Ray, so a restarted
    actor indexes its slice again."""

    retriever: Any
    corpus: Corpus
    offset: int

    def build(self) -> _OffsetShard:
        return _OffsetShard(copy.deepcopy(self.retriever).index(self.corpus), self.offset)


class _ShardActor:
    """The Ray actor body: holds one shard, searches it, reports its memory."""

    def __init__(self, shard: _MatrixShard | _IndexSpec) -> None:
        self.shard = shard.build() if isinstance(shard, _IndexSpec) else shard

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.shard.search(queries, k)

    def info(self) -> dict[str, int]:
        rss = _rss_bytes()
        # the kernel's high-water mark lags its live counters by a few pages: never report less than now
        return {"pid": os.getpid(), "rss": rss, "peak_rss": max(rss, _peak_rss_bytes())}


def _peak_rss_bytes() -> int:
    """The process's peak resident memory so far (``ru_maxrss``: kilobytes on Linux, bytes on macOS)."""
    import resource
    import sys

    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak_rss_bytes()


def _slice(corpus: Corpus, lo: int, hi: int) -> Corpus:
    return Corpus(corpus.ids[lo:hi], corpus.titles[lo:hi], corpus.texts[lo:hi], corpus.groups[lo:hi] if corpus.groups else [])


_ACTOR: Any = None


def _remote_actor() -> Any:
    """The Ray actor class, made once per process (``ray`` is imported only when used)."""
    global _ACTOR
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(_ShardActor)
    return _ACTOR


_STARTED = False  # whether ensure_ray started the Ray this process is connected to


def ensure_ray(num_cpus: int = 2) -> None:
    """Start a local, dashboard-free Ray when none is connected (an existing ``ray.init``, e.g.
    to a cluster, is left as is). The package root joins ``PYTHONPATH`` first, so the local
    workers Ray spawns import this package whatever the working directory."""
    global _STARTED
    try:
        import ray
    except ImportError:
        raise OdqaBenchError("retriever 'ray' needs ray: pip install 'ray[default]'") from None
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    _STARTED = True


@forgettable
def stop_started_ray() -> None:
    """Shut down a local Ray that :func:`ensure_ray` started, with its actors and helper
    processes; a Ray the caller connected to stays."""
    global _STARTED
    if not _STARTED:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _STARTED = False


@dataclass
class RayShards:
    """``inner`` (a registered retriever name) over ``shards`` contiguous corpus slices held by
    Ray actors. ``inner_params`` go to the inner retriever; ``num_cpus`` is reserved per actor
    (None: Ray's default); ``actor_options`` are further Ray actor options (``memory``,
    ``resources``, ``scheduling_strategy``); ``ray_cpus`` sizes a local Ray started here."""

    inner: str = "bm25"
    shards: int = 2
    inner_params: dict[str, Any] = field(default_factory=dict)
    num_cpus: float | None = None
    actor_options: dict[str, Any] = field(default_factory=dict)
    ray_cpus: int = 2
    name: str = ""
    _actors: list[Any] = field(default_factory=list, repr=False)
    _bounds: list[tuple[int, int]] = field(default_factory=list, repr=False)
    _ties: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _query_side: Any = field(default=None, repr=False)
    _payloads: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.inner, str):
            raise OdqaBenchError(f"retriever 'ray': inner must be a retriever name, got {self.inner!r}")
        if not isinstance(self.shards, int) or isinstance(self.shards, bool) or self.shards < 1:
            raise OdqaBenchError(f"retriever 'ray': shards must be a positive integer, got {self.shards!r}")
        if self.inner == "ray" or self.inner in _UNSHARDABLE:
            why = _UNSHARDABLE.get(self.inner, "cannot nest 'ray'")
            raise OdqaBenchError(f"retriever 'ray': inner {self.inner!r} cannot be sharded ({why})")
        self.inner_params = dict(self.inner_params or {})
        self.name = self.name or f"ray-{self.inner}"

    def index(self, corpus: Corpus) -> RayShards:
        if len(corpus) == 0:
            raise OdqaBenchError(f"{self.name}: cannot index an empty corpus")
        if self.shards > len(corpus):
            raise OdqaBenchError(f"{self.name}: {self.shards} shards for a corpus of {len(corpus)} documents")
        ensure_ray(self.ray_cpus)
        import ray

        self.close()
        self._ties = tie_keys(corpus.ids)
        self._bounds = shard_bounds(len(corpus), self.shards)
        inner = get_retriever(self.inner, **self.inner_params)
        if isinstance(inner, _Lexical):
            inner.index(corpus)
            wt = inner._wt.tocsc()
            payloads = [ray.put(_MatrixShard(wt[:, lo:hi].tocsr(), self._ties[lo:hi], lo)) for lo, hi in self._bounds]
            inner._wt = None  # the driver keeps only what turns queries into term vectors
            self._query_side = inner
        else:
            payloads = [ray.put(_IndexSpec(inner, _slice(corpus, lo, hi), lo)) for lo, hi in self._bounds]
            self._query_side = None
        opts: dict[str, Any] = {**(self.actor_options or {}), "max_restarts": 1, "max_task_retries": 1}
        if self.num_cpus is not None:
            opts["num_cpus"] = self.num_cpus
        actor_cls = _remote_actor().options(**opts)
        self._payloads = payloads  # held so a restarted actor can rebuild its shard
        self._actors = [actor_cls.remote(p) for p in payloads]
        self._get([a.info.remote() for a in self._actors])  # surface build errors here, not at search
        return self

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        import ray

        if not self._actors:
            raise OdqaBenchError(f"{self.name}: search before index")
        q: Any = list(queries)
        if self._query_side is not None:
            q = ray.put(self._query_side.query_matrix(q))
        parts = self._get([a.search.remote(q, k) for a in self._actors])
        return merge_topk(parts, k, self._ties)

    @property
    def actors(self) -> list[Any]:
        """The shard actor handles, in shard order (for monitoring and fault tests)."""
        return list(self._actors)

    def actor_info(self) -> list[dict[str, int]]:
        """Per shard: the actor's pid, resident memory now (``rss``) and at its peak
        (``peak_rss``), in bytes."""
        return self._get([a.info.remote() for a in self._actors])

    def close(self) -> None:
        """Stop this retriever's actors (Ray itself keeps running)."""
        if self._actors:
            import ray

            for a in self._actors:
                ray.kill(a, no_restart=True)
        self._actors = []
        self._payloads = []

    def _get(self, refs: list[Any]) -> list[Any]:
        """All shard results or an error naming the shard: never a partial merge."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        out = []
        for s, ref in enumerate(refs):
            lo, hi = self._bounds[s]
            try:
                out.append(ray.get(ref))
            except RayActorError as exc:
                why = (str(exc).strip().splitlines() or [""])[0][:200]
                raise OdqaBenchError(
                    f"{self.name}: shard {s} (documents {lo}..{hi - 1}) is lost; its one restart did not "
                    f"recover it ({type(exc).__name__}: {why})") from None
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, OdqaBenchError):
                    raise OdqaBenchError(f"{self.name}: shard {s}: {cause}") from None
                raise
        return out

