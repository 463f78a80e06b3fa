"""Retrievers by name over one contract: ``index(corpus)``, ``search(queries, k)`` -> arrays."""
from __future__ import annotations

from .base import Retriever, accepts, get_retriever, parse_spec, register, retrieve, retriever_names
from .run import Run, tie_keys, topk

__all__ = ["Retriever", "Run", "accepts", "get_retriever", "parse_spec", "register", "retrieve", "retriever_names", "tie_keys", "topk"]
