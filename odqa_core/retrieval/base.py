"""The retriever contract and the registry by name: registered in this process, built in (imported
on first use) or installed through ``odqa_bench.retrievers`` entry points."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..data.types import Corpus, Dataset
from ..errors import OdqaBenchError, warn
from ..extensions import RETRIEVER_GROUP, describe, entry_points, load_entry_point, load_reference
from .params import FactoryParams, check_params, factory_params, parse_params
from .run import Run

__all__ = ["BUILTIN", "Retriever", "RetrieverInfo", "accepted_params", "accepts", "get_retriever", "known_retrievers",
           "parse_spec", "register", "retrieve", "retriever_catalog", "retriever_names", "retriever_parameters"]


class Retriever(Protocol):
    """Index a corpus once, then search batches of queries for their top-k documents."""

    name: str

    def index(self, corpus: Corpus) -> Retriever: ...

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(n, k)`` doc indices (-1 padded) and scores, rows in trec_eval order."""
        ...


_REGISTRY: dict[str, Callable[..., Retriever]] = {}

# The built-in retrievers, named like entry points (``module:attribute``) and imported on first
# use: optional extras (torch, faiss, ray) stay optional, and retrieval never imports training.
BUILTIN: dict[str, str] = {
    "bm25": "odqa_core.retrieval.sparse:BM25",
    "tfidf": "odqa_core.retrieval.sparse:TfIdf",
    "bm25-rank": "odqa_core.retrieval.sparse:RankBM25",
    "ray": "odqa_core.retrieval.ray_shards:RayShards",
    "dense": "odqa_core.retrieval.dense:dense",
    "hybrid": "odqa_core.retrieval.fusion:hybrid",
    "hybrid-rrf": "odqa_core.retrieval.fusion:hybrid_rrf",
    "sequential": "odqa_core.retrieval.fusion:sequential",
    "dpr": "odqa_core.training.dpr:dpr_retriever",
}
_LOADED: dict[str, Callable[..., Retriever]] = {}
_UNAVAILABLE: dict[str, str] = {}  # name -> why it cannot be built here (asked once per process)
_WARNED: set[str] = set()


def register(name: str) -> Callable[[Callable[..., Retriever]], Callable[..., Retriever]]:
    """Decorator: make ``factory`` the retriever called ``name`` in this process (it takes
    precedence over a built-in or an entry point of the same name)."""

    def deco(factory: Callable[..., Retriever]) -> Callable[..., Retriever]:
        _REGISTRY[name] = factory
        return factory

    return deco


def _entry_points() -> dict[str, Any]:
    """Installed ``odqa_bench.retrievers`` entry points; one that reuses a built-in name is
    ignored with a warning (an installed package never replaces ``bm25`` unseen)."""
    eps = entry_points(RETRIEVER_GROUP)
    out = {}
    for name, ep in eps.items():
        if name in BUILTIN:
            if f"shadow:{name}" not in _WARNED:
                _WARNED.add(f"shadow:{name}")
                warn(f"entry point {describe(ep)} ({RETRIEVER_GROUP}) reuses the built-in name {name!r}; ignored")
            continue
        out[name] = ep
    return out


def known_retrievers() -> list[str]:
    """Every retriever name this process knows, without importing any of them: built-in,
    installed through entry points, or registered."""
    return sorted({*BUILTIN, *_entry_points(), *_REGISTRY})


def _factory(name: str) -> Callable[..., Retriever]:
    """The factory of ``name``: registered, else built-in, else an entry point. One error line when
    it is unknown or cannot be imported (a missing extra, a broken extension)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _LOADED:
        return _LOADED[name]
    if name in _UNAVAILABLE:
        raise OdqaBenchError(_UNAVAILABLE[name])
    if name in BUILTIN:
        try:
            factory = load_reference(BUILTIN[name])
        except ImportError as exc:
            _UNAVAILABLE[name] = f"retriever {name!r} is not available here ({exc})"
            raise OdqaBenchError(_UNAVAILABLE[name]) from None
    else:
        ep = _entry_points().get(name)
        if ep is None:
            raise OdqaBenchError(f"unknown retriever {name!r}; known: {', '.join(known_retrievers())}")
        try:
            factory = load_entry_point(RETRIEVER_GROUP, ep)
        except OdqaBenchError as exc:
            _UNAVAILABLE[name] = str(exc)
            raise
    _LOADED[name] = factory
    return factory


def _resolve(name: str) -> Callable[..., Retriever] | None:
    try:
        return _factory(name)
    except OdqaBenchError:
        return None


def _available(name: str) -> tuple[Callable[..., Retriever] | None, str]:
    """(factory, "") or (None, why not); an extension that fails to import warns once."""
    try:
        return _factory(name), ""
    except OdqaBenchError as exc:
        if name not in BUILTIN and name not in _REGISTRY and name not in _WARNED:
            _WARNED.add(name)
            warn(f"{exc}; skipped")
        return None, str(exc)


def retriever_names() -> list[str]:
    """The retrievers that can be built here. A built-in whose extra is missing is left out; an
    installed extension that fails to import is left out with one warning naming it."""
    return [name for name in known_retrievers() if _available(name)[0] is not None]


@dataclass(frozen=True)
class RetrieverInfo:
    """One retriever for a listing: where it comes from, its docstring's first sentence, and its
    parameters (None, with ``error``, when it cannot be built here)."""

    name: str
    source: str
    summary: str
    params: FactoryParams | None
    error: str = ""


def _summary(factory: Callable[..., Any]) -> str:
    doc = re.sub(r":\w+:`([^`]*)`", r"\1", " ".join((factory.__doc__ or "").split())).replace("``", "")
    end = doc.find(". ")
    return doc if end < 0 else doc[: end + 1]


def retriever_catalog() -> list[RetrieverInfo]:
    """Every known retriever with its parameters, types and defaults, read from its factory."""
    out = []
    eps = _entry_points()
    for name in known_retrievers():
        source = ("registered" if name in _REGISTRY else "built-in" if name in BUILTIN
                  else f"entry point {describe(eps[name])}")
        factory, error = _available(name)
        if factory is None:
            out.append(RetrieverInfo(name, source, "", None, error))
        else:
            out.append(RetrieverInfo(name, source, _summary(factory), factory_params(factory)))
    return out


def get_retriever(name: str, **params: Any) -> Retriever:
    """Build a retriever by name. Parameters are checked against the factory's signature first:
    an unknown name lists the accepted ones, a wrong type names the parameter, type and value."""
    factory = _factory(name)
    check_params(name, factory, params, _resolve)
    try:
        return factory(**params)
    except (TypeError, ValueError) as exc:  # a factory refusing its arguments, built-in or installed
        raise OdqaBenchError(f"retriever {name!r}: bad parameters ({exc})") from None


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"dense:model=e5-small,size=L12,max_length=256"`` -> ``("dense", {...})``: one retriever
    setting on a command line. Each value is parsed to the type the retriever's factory declares
    for it (a value it cannot be is one error line); ``head.key=value`` sets a nested parameter,
    e.g. ``ray:inner=bm25,inner.tokenizer=kiwi`` puts ``{"tokenizer": "kiwi"}`` in ``inner_params``."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise OdqaBenchError(f"retriever spec {spec!r}: empty name; expected NAME[:key=value,...]")
    raw: dict[str, str] = {}
    for item in rest.split(",") if rest else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not all(part.isidentifier() for part in key.split(".")):
            raise OdqaBenchError(f"retriever spec {spec!r}: {item!r} is not key=value; expected NAME[:key=value,...]")
        if key in raw:
            raise OdqaBenchError(f"retriever spec {spec!r}: {key!r} given twice")
        raw[key] = value.strip()
    return name, parse_params(name, _factory(name), raw, _resolve)


def retriever_parameters(name: str) -> FactoryParams:
    """The parameters retriever ``name`` takes by name, with their types and defaults."""
    return factory_params(_factory(name))


def accepts(name: str, param: str) -> bool:
    """Whether retriever ``name``'s factory takes ``param`` by name (e.g. ``tokenizer``)."""
    factory = _resolve(name)
    return factory is not None and param in factory_params(factory).params


def accepted_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` retriever ``name`` takes by name: shared helpers offer every
    retriever the same settings (a tokenizer) and each gets only what it declares."""
    factory = _factory(name)
    fp = factory_params(factory)
    return {k: v for k, v in params.items() if k in fp.params}


def retrieve(retriever: Retriever, dataset: Dataset, k: int) -> Run:
    """Search all of ``dataset``'s queries and wrap the hits as a :class:`Run`."""
    idx, sc = retriever.search(dataset.query_texts, k)
    return Run(list(dataset.query_ids), np.asarray(dataset.corpus.ids, dtype=object), idx, sc,
               getattr(retriever, "name", "run"))
