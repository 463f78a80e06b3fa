"""Shared, process-cached objects for the benchmark suites: datasets and depth-100 runs.

Each pytest-xdist worker keeps its own copy (session fixtures run per worker); the expensive
parts underneath (token lists, embeddings) are cached on disk."""
from __future__ import annotations

import os
from functools import cache

from .data import Dataset, load_dataset
from .errors import OdqaBenchError
from .retrieval import Run, accepted_params, get_retriever, retrieve

__all__ = ["RUN_DEPTH", "cached_dataset", "cached_run"]

# the deepest cut-off any quick cell asks for: one search serves the whole k sweep
RUN_DEPTH = 100


@cache
def cached_dataset(name: str) -> Dataset:
    """Load a dataset once per process. Outside CI a missing data folder skips the cell; on CI
    (``CI`` set) it fails, so real-data suites are never skipped silently."""
    try:
        return load_dataset(name)
    except OdqaBenchError as exc:
        if name != "default" and not os.environ.get("CI"):
            import pytest

            pytest.skip(f"dataset {name!r} unavailable here: {exc}")
        raise


@cache
def cached_run(retriever: str, tokenizer: str, dataset: str, depth: int = RUN_DEPTH) -> Run:
    """One retriever's run over a dataset, shared by every k cell in this process; ``tokenizer``
    goes only to a retriever that takes one."""
    ds = cached_dataset(dataset)
    r = get_retriever(retriever, **accepted_params(retriever, {"tokenizer": tokenizer})).index(ds.corpus)
    return retrieve(r, ds, depth)
