"""Harness-wide fixtures for the suites. The gate's options live in the odqa-bench pytest
plugin (``pytest --help``, group 'odqa-bench'); this file shares expensive objects."""
from __future__ import annotations

import os
from functools import lru_cache

import pytest

from odqa_core.data import Dataset, load_dataset
from odqa_core.errors import OdqaBenchError
from odqa_core.retrieval import Run, get_retriever, retrieve

# the deepest cut-off any quick cell asks for: one search serves the whole k sweep
RUN_DEPTH = 100


@lru_cache(maxsize=None)
def cached_dataset(name: str) -> Dataset:
    try:
        return load_dataset(name)
    except OdqaBenchError as exc:
        if name != "default" and not os.environ.get("CI"):
            pytest.skip(f"dataset {name!r} unavailable here: {exc}")
        raise


@lru_cache(maxsize=None)
def cached_run(retriever: str, tokenizer: str, dataset: str) -> Run:
    """One retriever's depth-100 run over a dataset, shared by every k cell in this process."""
    ds = cached_dataset(dataset)
    r = get_retriever(retriever, tokenizer=tokenizer).index(ds.corpus)
    return retrieve(r, ds, RUN_DEPTH)


@pytest.fixture(scope="session")
def dataset_loader():
    return cached_dataset


@pytest.fixture(scope="session")
def run_cache():
    return cached_run
