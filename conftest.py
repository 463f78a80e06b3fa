"""Harness-wide fixtures for the suites. The gate's options live in the odqa-bench pytest
plugin (``pytest --help``, group 'odqa-bench'); shared objects live in ``odqa_core.bench``."""
from __future__ import annotations

import pytest

from odqa_core.bench import cached_dataset, cached_run


@pytest.fixture(scope="session")
def dataset_loader():
    """``dataset_loader(name)``: a named dataset, loaded once per process."""
    return cached_dataset


@pytest.fixture(scope="session")
def run_cache():
    """``run_cache(retriever, tokenizer, dataset)``: a depth-100 run, computed once per process."""
    return cached_run
