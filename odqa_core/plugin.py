"""pytest plugin: the ``odqa_record`` fixture, baseline update and the regression gate.

Workers attach records to ``item.user_properties`` (xdist ships them with each report), the
controller collects them in ``pytest_runtest_logreport``; only the process without
``workerinput`` writes files or decides the gate, so ``-n 2`` and a serial run agree.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .baseline import GateConfig, Record, load_config, run_gate
from .baseline.config import CORRECTIONS
from .baseline.store import build_baseline, load_baseline, merge_cells, records_to_cells, write_baseline
from .errors import OdqaBenchError

__all__ = ["Recorder"]

_PROP = "odqa_record"
SESSION = pytest.StashKey["OdqaSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("odqa-bench", "odqa-bench regression gate")
    g.addoption("--odqa-profile", default="quick", metavar="NAME",
                help="baseline profile: baselines/<profile>/<suite>.json. Default: %(default)r")
    g.addoption("--odqa-baseline-dir", default=None, metavar="DIR",
                help="folder of baseline profiles. Default: <rootdir>/baselines")
    g.addoption("--odqa-strict", action="store_true", default=False,
                help="fail on cells with no baseline or a refused comparison (on in CI). Default: off")
    g.addoption("--odqa-update-baselines", action="store_true", default=False,
                help="write this run's records into the baseline files (refused if any test failed)")
    g.addoption("--odqa-no-gate", action="store_true", default=False, help="record only; do not compare")
    g.addoption("--odqa-correction", default=None, choices=CORRECTIONS,
                help="multiple-comparison correction across the run. Default: from [tool.odqa_bench], else 'holm'")
    g.addoption("--odqa-report", default=None, metavar="DIR",
                help="write markdown, HTML, CSV, JUnit XML and plots comparing the run with its baseline")
    g.addoption("--odqa-save-run", default=None, metavar="FILE",
                help="save this run's records (baseline format, all suites) for 'odqa-bench report'")
    g.addoption("--odqa-data-dir", default=None, metavar="DIR",
                help="data folder for named datasets. Default: $ODQA_DATA_DIR, else ../shared/data")
    g.addoption("--odqa-encoder-backend", default=None, metavar="NAME",
                help="the encoder backend that 'auto' stands for in this run (e.g. openvino-int8): the gate "
                     "then says whether it moves any dense cell. Default: $ODQA_ENCODER_BACKEND, else the built-in rule")


class Recorder:
    """Records metrics for the current test cell (its parametrized id)."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item
        self._dataset = ("", "")

    @property
    def suite(self) -> str:
        stem = Path(str(self._item.fspath)).stem
        return stem[5:] if stem.startswith("test_") else stem

    @property
    def cell(self) -> str:
        return self._item.name

    def dataset(self, ds: Any) -> None:
        """Attach a dataset's name and sha256 to the cell's records."""
        self._dataset = (str(getattr(ds, "name", ds)), str(getattr(ds, "sha256", "")))

    def __call__(self, name: str, value: float | None = None, *, per_query: Sequence[float] | np.ndarray | None = None,
                 query_ids: Sequence[str] | None = None, higher_is_better: bool = True, kind: str = "quality",
                 **extra: Any) -> float:
        if per_query is not None:
            pq = [float(x) for x in np.asarray(per_query, dtype=np.float64)]
            if value is None:
                value = float(np.mean(pq)) if pq else 0.0
        else:
            pq = None
        if value is None:
            raise ValueError("odqa_record: give a value or a per-query vector")
        rec = Record(self.suite, self.cell, name, float(value), higher_is_better, kind, pq,
                     list(query_ids) if query_ids is not None else None, self._dataset[0], self._dataset[1],
                     {k: v for k, v in extra.items()})
        self._item.user_properties.append((_PROP, rec.to_json()))
        return float(value)


@pytest.fixture
def odqa_record(request: pytest.FixtureRequest) -> Recorder:
    """Record a metric for this cell: ``odqa_record("ndcg@10", per_query=vec, query_ids=ids)``."""
    return Recorder(request.node)


@pytest.fixture(scope="session")
def odqa_data_dir(pytestconfig: pytest.Config) -> str | None:
    """The data folder chosen with ``--odqa-data-dir`` (else the loaders' default)."""
    return pytestconfig.getoption("--odqa-data-dir")


class OdqaSession:
    """State of one pytest session: options read once, baselines loaded up front."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.profile = opt("--odqa-profile")
        root = Path(str(config.rootpath))
        self.base_dir = Path(opt("--odqa-baseline-dir") or root / "baselines") / self.profile
        self.strict = opt("--odqa-strict")
        self.update = opt("--odqa-update-baselines")
        self.no_gate = opt("--odqa-no-gate")
        self.correction = opt("--odqa-correction")
        self.report_dir = opt("--odqa-report")
        self.save_run = opt("--odqa-save-run")
        if self.update and self.no_gate:
            raise pytest.UsageError("--odqa-update-baselines and --odqa-no-gate contradict each other")
        try:
            self.cfg: GateConfig = load_config(root / "pyproject.toml")
            self.baselines: dict[str, dict[str, Any] | None] = {}
            if self.base_dir.is_dir():
                for p in sorted(self.base_dir.glob("*.json")):
                    self.baselines[p.stem] = load_baseline(p)
        except OdqaBenchError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.records: list[Record] = []
        self.failed_tests: list[str] = []
        self.result = None
        self.lines: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Runs in the controller for every report, local or shipped from an xdist worker."""
        if report.failed:
            self.failed_tests.append(report.nodeid)
        for key, payload in report.user_properties:
            if key == _PROP and report.when == "call":
                self.records.append(Record.from_json(payload))

    def finish(self, session: pytest.Session) -> None:
        if not self.records:
            return
        self.records.sort(key=lambda r: (r.suite, r.cell, r.metric))
        if self.save_run:
            from .report.runfile import save_run

            save_run(self.save_run, self.records, self.failed_tests)
        if self.update:
            self._update(session)
            return
        if self.no_gate:
            return
        self.result = run_gate(self.records, {s: self.baselines.get(s) for s in {r.suite for r in self.records}},
                               self.cfg, strict=self.strict, correction=self.correction)
        if self.report_dir:
            from .report import write_reports

            write_reports(self.result, self.report_dir, self.records)
        if not self.result.ok:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _update(self, session: pytest.Session) -> None:
        if self.failed_tests or session.testsfailed:
            self.lines.append(f"odqa-bench: baselines NOT updated: {len(self.failed_tests) or session.testsfailed} "
                              "test(s) failed or errored; fix them first")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        by_suite: dict[str, list[Record]] = {}
        for r in self.records:
            by_suite.setdefault(r.suite, []).append(r)
        for suite, recs in sorted(by_suite.items()):
            path = self.base_dir / f"{suite}.json"
            cells = merge_cells(self.baselines.get(suite), records_to_cells(recs))
            write_baseline(path, build_baseline(self.profile, suite, cells))
            self.lines.append(f"odqa-bench: wrote {path} ({len({r.cell for r in recs})} cells updated, {len(cells)} in all)")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    for marker in ("perf: speed benchmarks (pytest-benchmark), gated as ratios to a peer",
                   "cuda: needs a CUDA device; skipped with a reason when none is present",
                   "full: the full profile only (whole grid, large sweeps)",
                   "realdata: needs the data folder (../shared/data)"):
        config.addinivalue_line("markers", marker)
    if _is_worker(config) or config.option.collectonly:
        return
    sess = OdqaSession(config)
    config.stash[SESSION] = sess
    config.pluginmanager.register(sess, "odqa-session")
    if config.getoption("--odqa-data-dir"):
        os.environ["ODQA_DATA_DIR"] = config.getoption("--odqa-data-dir")
    backend = config.getoption("--odqa-encoder-backend")
    if backend:
        from .encoders.backends import BACKEND_ENV, check_backend_name

        try:
            check_backend_name(backend)
        except OdqaBenchError as exc:
            raise pytest.UsageError(str(exc)) from None
        os.environ[BACKEND_ENV] = backend  # xdist workers start later and inherit it


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    sess = session.config.stash.get(SESSION, None)
    if sess is None:
        return
    try:
        sess.finish(session)
    except OdqaBenchError as exc:
        sess.lines.append(f"odqa-bench: error: {exc}")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    sess = config.stash.get(SESSION, None)
    if sess is None:
        return
    try:
        from .report.terminal import summary_lines

        lines = summary_lines(sess)
    except Exception as exc:  # never raise from this hook
        lines = [f"odqa-bench: could not render the summary ({type(exc).__name__}: {exc})"]
    if lines:
        terminalreporter.section("odqa-bench")
        for line in lines:
            terminalreporter.write_line(line)
