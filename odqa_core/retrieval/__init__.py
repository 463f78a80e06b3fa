"""Retrievers by name over one contract: ``index(corpus)``, ``search(queries, k)`` -> arrays."""
from __future__ import annotations

from .base import Retriever, get_retriever, register, retrieve, retriever_names
from .run import Run, tie_keys, topk

__all__ = ["Retriever", "Run", "get_retriever", "register", "retrieve", "retriever_names", "tie_keys", "topk"]
