"""The retriever contract and the registry by name."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..data.types import Corpus, Dataset
from ..errors import OdqaBenchError
from .run import Run

__all__ = ["Retriever", "register", "get_retriever", "retriever_names", "retrieve", "parse_spec", "accepts"]


class Retriever(Protocol):
    """Index a corpus once, then search batches of queries for their top-k documents."""

    name: str

    def index(self, corpus: Corpus) -> Retriever: ...

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(n, k)`` doc indices (-1 padded) and scores, rows in trec_eval order."""
        ...


_REGISTRY: dict[str, Callable[..., Retriever]] = {}


def register(name: str) -> Callable[[Callable[..., Retriever]], Callable[..., Retriever]]:
    def deco(factory: Callable[..., Retriever]) -> Callable[..., Retriever]:
        _REGISTRY[name] = factory
        return factory

    return deco


def retriever_names() -> list[str]:
    _load_optional()
    return sorted(_REGISTRY)


def get_retriever(name: str, **params: Any) -> Retriever:
    """Build a retriever by name; unknown names list the known ones."""
    _load_optional()
    if name not in _REGISTRY:
        raise OdqaBenchError(f"unknown retriever {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as exc:
        raise OdqaBenchError(f"retriever {name!r}: bad parameters ({exc})") from None


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"dense:model=e5-small,size=L12,max_length=256"`` -> ``("dense", {...})``: one retriever
    setting on a command line. Values become int, float or bool where they read as one."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise OdqaBenchError(f"retriever spec {spec!r}: empty name; expected NAME[:key=value,...]")
    params: dict[str, Any] = {}
    for item in rest.split(",") if rest else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise OdqaBenchError(f"retriever spec {spec!r}: {item!r} is not key=value; expected NAME[:key=value,...]")
        if key in params:
            raise OdqaBenchError(f"retriever spec {spec!r}: {key!r} given twice")
        params[key] = _value(value.strip())
    return name, params


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def accepts(name: str, param: str) -> bool:
    """Whether retriever ``name``'s factory takes ``param`` by name (e.g. ``tokenizer``)."""
    import inspect

    _load_optional()
    try:
        return param in inspect.signature(_REGISTRY[name]).parameters
    except (KeyError, TypeError, ValueError):
        return False


def _load_optional() -> None:
    """Import modules whose retrievers register themselves (dense needs torch/faiss, which
    stay optional: a missing extra leaves those names out rather than breaking the sparse ones)."""
    from . import ray_shards, sparse  # noqa: F401  (ray itself is imported only when used)

    for module in ("odqa_core.retrieval.dense", "odqa_core.retrieval.fusion", "odqa_core.training.dpr"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass


def retrieve(retriever: Retriever, dataset: Dataset, k: int) -> Run:
    """Search all of ``dataset``'s queries and wrap the hits as a :class:`Run`."""
    idx, sc = retriever.search(dataset.query_texts, k)
    return Run(list(dataset.query_ids), np.asarray(dataset.corpus.ids, dtype=object), idx, sc,
               getattr(retriever, "name", "run"))
