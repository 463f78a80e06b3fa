"""Harness-wide fixtures for the suites. The gate's options live in the odqa-bench pytest
plugin (``pytest --help``, group 'odqa-bench'); shared objects live in ``odqa_core.bench``."""
from __future__ import annotations

import os

import pytest

# A spinning OpenMP worker (FAISS, torch) steals the only other core from the main thread on a
# busy 2-core runner, which turns speed ratios into noise (0.5x-3.8x instead of ~1.0x measured
# for the same FAISS overhead); waiting passively costs microseconds. Set before any OpenMP
# runtime starts; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from odqa_core.bench import cached_dataset, cached_run


@pytest.fixture(scope="session")
def dataset_loader():
    """``dataset_loader(name)``: a named dataset, loaded once per process."""
    return cached_dataset


@pytest.fixture(scope="session")
def run_cache():
    """``run_cache(retriever, tokenizer, dataset)``: a depth-100 run, computed once per process."""
    return cached_run
