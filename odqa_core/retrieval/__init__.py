"""Retrievers by name over one contract: ``index(corpus)``, ``search(queries, k)`` -> arrays."""
from __future__ import annotations

from .base import (
    Retriever,
    RetrieverInfo,
    accepted_params,
    accepts,
    get_retriever,
    known_retrievers,
    parse_spec,
    register,
    retrieve,
    retriever_catalog,
    retriever_names,
    retriever_parameters,
)
from .run import Run, tie_keys, topk

__all__ = ["Retriever", "RetrieverInfo", "Run", "accepted_params", "accepts", "get_retriever", "known_retrievers",
           "parse_spec", "register", "retrieve", "retriever_catalog", "retriever_names", "retriever_parameters", "tie_keys",
           "topk"]
