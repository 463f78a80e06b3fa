"""Shared, process-cached objects for the benchmark suites: datasets and depth-100 runs, and
the one rule for real data that is missing: the test skips here and fails on CI.

Each pytest-xdist worker keeps its own copy (session fixtures run per worker); the expensive
parts underneath (token lists, embeddings) are cached on disk."""
from __future__ import annotations

import os
from functools import cache
from typing import NoReturn

from .data import Dataset, load_dataset
from .errors import OdqaBenchError
from .memory import forgettable
from .retrieval import Run, accepted_params, get_retriever, retrieve

__all__ = ["RUN_DEPTH", "cached_dataset", "cached_run", "dataset_run", "on_ci", "require_dataset", "skip_or_fail"]

# the deepest cut-off any quick cell asks for: one search serves the whole k sweep
RUN_DEPTH = 100


def on_ci() -> bool:
    """Whether this run is on CI (``CI`` set and not empty), where real data must be present."""
    return bool(os.environ.get("CI"))


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the calling test because ``reason`` (its data is missing); on CI fail it instead,
    so a real-data suite is never skipped silently there."""
    import pytest

    if on_ci():
        pytest.fail(f"{reason} (CI is set: real-data tests fail instead of skipping)", pytrace=False)
    pytest.skip(reason)


def require_dataset(name: str) -> Dataset:
    """Load a named dataset for a real-data test; one that cannot be loaded skips the test here
    and fails it on CI (see :func:`skip_or_fail`). Not cached: see :func:`cached_dataset`."""
    try:
        return load_dataset(name)
    except OdqaBenchError as exc:
        reason = f"dataset {name!r} unavailable here: {exc}"
    skip_or_fail(reason)  # outside the except block: the failure shows no chained traceback


@cache
def cached_dataset(name: str) -> Dataset:
    """Load a dataset once per process, as :func:`require_dataset` does; the embedded
    ``default`` needs no data folder, so an error there is never skipped."""
    return load_dataset(name) if name == "default" else require_dataset(name)


def dataset_run(retriever: str, tokenizer: str, dataset: str, depth: int = RUN_DEPTH) -> Run:
    """One retriever's run over a named dataset, computed afresh; ``tokenizer`` goes only to a
    retriever that takes one. For a suite that holds a deep run only while its cells need it."""
    ds = cached_dataset(dataset)
    r = get_retriever(retriever, **accepted_params(retriever, {"tokenizer": tokenizer})).index(ds.corpus)
    return retrieve(r, ds, depth)


@cache
def cached_run(retriever: str, tokenizer: str, dataset: str, depth: int = RUN_DEPTH) -> Run:
    """:func:`dataset_run`, once per process, shared by every k cell."""
    return dataset_run(retriever, tokenizer, dataset, depth)


forgettable(cached_run.cache_clear)
