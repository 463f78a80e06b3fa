"""pytest plugin: the ``odqa_record`` fixture, shared dataset/run fixtures, baseline update and the
regression gate.

Inert where unused: a session in which no test records a metric and no ``--odqa-*`` option is
given reads no baseline, parses no configuration and prints nothing. The plugin acts once an
``--odqa-*`` option is given (then configuration and baselines are checked before any test runs)
or a test records through ``odqa_record`` (then they are read when the session ends).

Workers attach records to ``item.user_properties`` (xdist ships them with each report), the
controller collects them in ``pytest_runtest_logreport``; only the process without
``workerinput`` writes files or decides the gate, so ``-n 2`` and a serial run agree.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from .errors import OdqaBenchError
from .options import add_pytest_options, given_pytest_options

if TYPE_CHECKING:
    from .baseline import GateConfig, GateResult, Record

__all__ = ["Recorder", "OdqaSession"]

_PROP = "odqa_record"
SESSION = pytest.StashKey["OdqaSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser.getgroup("odqa-bench", "odqa-bench regression gate"))


class Recorder:
    """Records metrics for the current test cell, keyed by the test's node id (its file's path
    relative to the rootdir, then the test name)."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item
        self._dataset = ("", "")
        self._settings: dict[str, str] = {}

    @property
    def suite(self) -> str:
        stem = Path(str(self._item.fspath)).stem
        return stem[5:] if stem.startswith("test_") else stem

    @property
    def cell(self) -> str:
        return self._item.nodeid

    def dataset(self, ds: Any) -> None:
        """Attach a dataset's name and sha256 to the cell's records."""
        self._dataset = (str(getattr(ds, "name", ds)), str(getattr(ds, "sha256", "")))

    def settings(self, obj: Any) -> None:
        """Attach what shapes the cell besides its data: a retriever (its encoder backend, max
        length and fingerprint are read after ``index``) or a mapping of setting -> value."""
        from .baseline.settings import settings_of

        self._settings.update(settings_of(obj))

    def scores(self, scores: Mapping[str, Any], **extra: Any) -> None:
        """Record every metric of an ``evaluate`` result with its query ids."""
        ids = getattr(scores, "query_ids", None)
        if ids is None:
            _refuse("odqa_record.scores: give the result of odqa_core.metrics.evaluate (it carries the query ids)")
        for name, vec in scores.items():
            self(name, per_query=vec, query_ids=ids, **extra)

    def __call__(self, name: str, value: float | None = None, *,
                 per_query: Sequence[float] | Mapping[str, float] | Any = None,
                 query_ids: Sequence[str] | None = None, higher_is_better: bool = True, kind: str = "quality",
                 **extra: Any) -> float:
        import numpy as np

        from .baseline.store import KINDS, Record

        if kind not in KINDS:
            _refuse(f"odqa_record({name!r}): kind {kind!r}; choose {', '.join(KINDS)}")
        pq = None
        if per_query is not None:
            if isinstance(per_query, Mapping):
                if query_ids is not None:
                    _refuse(f"odqa_record({name!r}): per_query is a mapping of query id -> value; drop query_ids")
                query_ids = [str(q) for q in per_query]
                per_query = list(per_query.values())
            pq = [float(x) for x in np.asarray(per_query, dtype=np.float64).ravel()]
            if query_ids is not None and len(query_ids) != len(pq):
                _refuse(f"odqa_record({name!r}): {len(pq)} per-query values but {len(query_ids)} query ids; "
                        "they must pair one to one (evaluate(...).query_ids gives the ids of its vectors)")
            if value is None:
                value = float(np.mean(pq)) if pq else 0.0
        if value is None:
            _refuse(f"odqa_record({name!r}): give a value or a per-query vector")
        settings = dict(self._settings)
        if kind == "speed":  # speed is compared only on the CPU class it was recorded on
            from .baseline.settings import CPU_ISA
            from .machine import cpu_isa

            settings[CPU_ISA] = cpu_isa()
        rec = Record(self.suite, self.cell, name, float(value), higher_is_better, kind, pq,
                     [str(q) for q in query_ids] if query_ids is not None else None, self._dataset[0],
                     self._dataset[1], dict(extra), settings)
        self._item.user_properties.append((_PROP, rec.to_json()))
        return float(value)


def _refuse(message: str) -> NoReturn:
    """Fail the calling test with one line (no traceback): a misuse of ``odqa_record``."""
    pytest.fail(message, pytrace=False)


@pytest.fixture
def odqa_record(request: pytest.FixtureRequest) -> Recorder:
    """Record a metric for this cell: ``odqa_record("ndcg@10", per_query=vec, query_ids=ids)``."""
    return Recorder(request.node)


@pytest.fixture(scope="session")
def odqa_data_dir(pytestconfig: pytest.Config) -> str | None:
    """The data folder chosen with ``--odqa-data-dir`` (else the loaders' default)."""
    return pytestconfig.getoption("--odqa-data-dir")


@pytest.fixture(scope="session")
def odqa_dataset() -> Callable[[str], Any]:
    """``odqa_dataset(name)``: a named dataset, loaded once per process (each xdist worker
    keeps its own). A missing data folder skips the cell outside CI and fails it on CI."""
    from .bench import cached_dataset

    return cached_dataset


@pytest.fixture(scope="session")
def odqa_run() -> Callable[..., Any]:
    """``odqa_run(retriever, tokenizer, dataset, depth=100)``: a retriever's run over a named
    dataset, computed once per process and shared by every cut-off cell."""
    from .bench import cached_run

    return cached_run


@pytest.fixture(scope="session")
def odqa_report_dir(pytestconfig: pytest.Config) -> Path | None:
    """The ``--odqa-report`` folder, or None: suites write tables and plots only when asked."""
    out = pytestconfig.getoption("--odqa-report")
    return Path(out) if out else None


class OdqaSession:
    """State of one pytest session. Built in every session from the options alone; reads
    configuration and baselines only once it is active."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.root = Path(str(config.rootpath))
        self.profile: str = opt("--odqa-profile")
        self.base_dir = Path(opt("--odqa-baseline-dir") or self.root / "baselines") / self.profile
        self.strict: bool = opt("--odqa-strict")
        self.update: bool = opt("--odqa-update-baselines")
        self.no_gate: bool = opt("--odqa-no-gate")
        self.correction: str | None = opt("--odqa-correction")
        self.report_dir: str | None = opt("--odqa-report")
        self.save_run: str | None = opt("--odqa-save-run")
        self.given = given_pytest_options(opt)
        self.active = bool(self.given)
        self.started = time.time()
        self.cfg: GateConfig | None = None
        self.baselines: dict[str, dict[str, Any] | None] = {}
        self.records: list[Record] = []
        self.failed_tests: list[str] = []
        self.result: GateResult | None = None
        self.lines: list[str] = []
        if self.update and self.no_gate:
            raise pytest.UsageError("--odqa-update-baselines and --odqa-no-gate contradict each other")

    def load(self, suites: Sequence[str] | None = None) -> None:
        """Read ``[tool.odqa_bench]`` and the profile's baselines (all, or those of ``suites``)."""
        from .baseline import load_baseline, load_config

        if self.cfg is None:
            self.cfg = load_config(self.root / "pyproject.toml")
        if suites is None:
            paths = sorted(self.base_dir.glob("*.json")) if self.base_dir.is_dir() else []
        else:
            paths = [self.base_dir / f"{s}.json" for s in suites if s not in self.baselines]
        for p in paths:
            self.baselines[p.stem] = load_baseline(p)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Runs in the controller for every report, local or shipped from an xdist worker. The
        records move out of the report (the terminal reporter keeps every report until the
        session ends, and a record's per-query vectors would otherwise be held twice)."""
        if report.failed:
            self.failed_tests.append(report.nodeid)
        if report.when != "call" or not any(key == _PROP for key, _ in report.user_properties):
            return
        from .baseline import Record

        kept = []
        for key, payload in report.user_properties:
            if key == _PROP:
                self.records.append(Record.from_json(payload))
                self.active = True
            else:
                kept.append((key, payload))
        report.user_properties = kept

    def _wrote(self, path: str | Path, what: str = "") -> None:
        self.lines.append(f"odqa-bench: wrote {path}" + (f" ({what})" if what else ""))

    def finish(self, session: pytest.Session) -> None:
        if not self.active or not self.records:
            return
        self.records.sort(key=lambda r: (r.suite, r.cell, r.metric))
        suites = sorted({r.suite for r in self.records})
        self.load(suites)
        if self.save_run:
            from .report.runfile import save_run

            save_run(self.save_run, self.records, self.failed_tests)
            self._wrote(self.save_run, f"{len(self.records)} records; odqa-bench report --run {self.save_run}")
        if self.update:
            from .baseline import update_baselines

            failed = self.failed_tests or ([f"{session.testsfailed} failed"] if session.testsfailed else [])
            try:
                for line in update_baselines(self.records, self.base_dir, self.profile, failed,
                                             prune=bool(self.config.getoption("--odqa-prune"))):
                    self.lines.append(f"odqa-bench: {line}")
            except OdqaBenchError as exc:
                self.lines.append(f"odqa-bench: {exc}")
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        if self.no_gate:
            return
        from .baseline import run_gate

        assert self.cfg is not None
        regenerate = f"pytest {{file}} --odqa-profile {self.profile} --odqa-update-baselines"
        # an explicit encoder backend asks what switching does: cells whose settings moved are compared
        asked = "--odqa-encoder-backend" if self.config.getoption("--odqa-encoder-backend") else ""
        self.result = run_gate(self.records, {s: self.baselines.get(s) for s in suites}, self.cfg,
                               strict=self.strict, correction=self.correction, regenerate=regenerate,
                               compare_changed_settings=asked)
        if self.report_dir:
            from .report import write_reports

            written = write_reports(self.result, self.report_dir, self.records)
            for p in written:
                self._wrote(p)
            for p in _new_files(Path(self.report_dir), self.started, set(written)):
                self.lines.append(f"odqa-bench: a suite wrote {p}")
        if not self.result.ok:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _summary(sess: OdqaSession, verbose: bool) -> list[str]:
    """The session's own lines, then the gate's verdict (or the count recorded with the gate off)."""
    lines = list(sess.lines)
    if sess.result is not None:
        from .report.terminal import summary_lines

        lines += summary_lines(sess.result, sess.profile, sess.report_dir, verbose)
    elif sess.records and not sess.update and sess.no_gate:
        lines.append(f"odqa-bench: {len(sess.records)} metrics recorded (gate off)")
    return lines


def _new_files(folder: Path, since: float, known: set[Path]) -> list[Path]:
    """Files under ``folder`` modified since the session started, other than ``known``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p not in known and not p.name.startswith(".")
                  and p.stat().st_mtime >= since)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_worker(config) or config.option.collectonly:
        return
    sess = OdqaSession(config)
    config.stash[SESSION] = sess
    config.pluginmanager.register(sess, "odqa-session")
    if not sess.active:
        return
    try:
        sess.load()
    except OdqaBenchError as exc:
        raise pytest.UsageError(str(exc)) from None
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """A test's records leave it once its reports are out (sent to the xdist controller, or
    collected by this process's session): items live until the session ends."""
    try:
        return (yield)
    finally:
        if any(key == _PROP for key, _ in item.user_properties):
            item.user_properties[:] = [(k, v) for k, v in item.user_properties if k != _PROP]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    sess = session.config.stash.get(SESSION, None)
    if sess is None or not sess.active:
        return
    try:
        sess.finish(session)
    except OdqaBenchError as exc:
        sess.lines.append(f"odqa-bench: error: {exc}")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    sess = config.stash.get(SESSION, None)
    if sess is None or not sess.active:
        return
    try:
        lines = _summary(sess, verbose=config.getoption("verbose") > 0)
    except Exception as exc:  # never raise from this hook
        lines = [f"odqa-bench: could not render the summary ({type(exc).__name__}: {exc})"]
    if lines:
        terminalreporter.section("odqa-bench")
        for line in lines:
            terminalreporter.write_line(line)
