"""The plugin in projects that are not odqa-bench's: inert where unused, active once a test records
or an ``--odqa-*`` option is given; cells keyed by test path; ``odqa_record`` misuse; recorded
settings refused like a changed dataset; the shipped dataset/run fixtures; announced writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TIMEOUT = 180

# A project with its own ideas: a [tool.odqa_bench] table odqa-bench would refuse, other tools'
# tables, and a baselines/quick folder of unrelated JSON.
FOREIGN_PYPROJECT = """
[tool.pytest.ini_options]
addopts = "-p no:cacheprovider -p no:hypothesispytest -p no:anyio -p no:benchmark"

[tool.odqa_bench]
correction = "bonferroni"
tolerance = "tight"

[tool.black]
line-length = 88

[tool.mypy]
strict = true
"""

FOREIGN_TESTS = """
import pytest

def test_adds():
    assert 1 + 1 == 2

@pytest.mark.parametrize("n", [1, 2, 3])
def test_squares(n, tmp_path):
    (tmp_path / "out.txt").write_text(str(n * n))
    assert (tmp_path / "out.txt").read_text() == str(n * n)

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass
"""

# Logs every file or folder access under baselines/ once the project's conftest is imported
# (before any plugin's pytest_configure runs).
AUDIT_CONFTEST = """
import os
import sys

LOG = os.environ["ODQA_AUDIT_LOG"]


def _hook(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if "baselines" in path:
            with open(LOG, "a") as fh:
                fh.write(f"{event} {path}\\n")


sys.addaudithook(_hook)
"""


def _foreign(p: pytest.Pytester) -> None:
    (p.path / "pyproject.toml").write_text(FOREIGN_PYPROJECT)
    (p.path / "test_foreign.py").write_text(FOREIGN_TESTS)
    (p.path / "conftest.py").write_text(AUDIT_CONFTEST)
    quick = p.path / "baselines" / "quick"
    quick.mkdir(parents=True)
    (quick / "foreign.json").write_text(json.dumps({"rows": [1, 2, 3], "owner": "another tool"}))
    (quick / "other.json").write_text("not even JSON")


@pytest.fixture
def foreign(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
            monkeypatch: pytest.MonkeyPatch) -> tuple[pytest.Pytester, Path]:
    audit = tmp_path_factory.mktemp("audit") / "audit.log"
    monkeypatch.setenv("ODQA_AUDIT_LOG", str(audit))
    _foreign(pytester)
    return pytester, audit


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_unrelated_project_runs_as_without_the_plugin(foreign: tuple[pytest.Pytester, Path], xdist: list[str]) -> None:
    p, audit = foreign
    # the test file named, so that pytest's own collection does not walk baselines/
    with_plugin = p.runpytest_subprocess("test_foreign.py", *xdist, timeout=TIMEOUT)
    audit_with = audit.read_text() if audit.exists() else ""
    without = p.runpytest_subprocess("test_foreign.py", *xdist, "-p", "no:odqa_bench", timeout=TIMEOUT)
    assert with_plugin.ret == without.ret == 0, with_plugin.stdout.str() + with_plugin.stderr.str()
    assert with_plugin.parseoutcomes() == without.parseoutcomes() == {"passed": 4, "skipped": 1}
    assert "odqa-bench" in with_plugin.stdout.str()  # the plugin is loaded (its name in the header) ...
    assert "odqa-bench" not in without.stdout.str()
    out = with_plugin.stdout.str().replace("odqa-bench-0.1.0", "")
    assert "odqa" not in out and "odqa" not in with_plugin.stderr.str()  # ... but prints nothing
    assert audit_with == ""  # no baseline opened or listed


def test_a_test_that_records_activates_the_plugin(foreign: tuple[pytest.Pytester, Path]) -> None:
    p, audit = foreign
    p.makepyfile(test_uses="""
def test_uses(odqa_record):
    odqa_record("hit@1", per_query=[1.0, 0.0], query_ids=["a", "b"])
""")
    result = p.runpytest_subprocess(timeout=TIMEOUT)
    # now [tool.odqa_bench] is read: its foreign content is one clear error, not a traceback
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["odqa-bench: error: *pyproject.toml [[]tool.odqa_bench]: correction 'bonferroni'*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert "foreign.json" not in (audit.read_text() if audit.exists() else "")  # only its own suite's file


def test_an_odqa_option_activates_the_plugin_before_any_test_runs(foreign: tuple[pytest.Pytester, Path]) -> None:
    p, audit = foreign
    result = p.runpytest_subprocess("test_foreign.py", "--odqa-strict", timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pyproject.toml [[]tool.odqa_bench]: correction 'bonferroni'*"])
    (p.path / "pyproject.toml").write_text("[tool.black]\nline-length = 88\n")
    result = p.runpytest_subprocess("test_foreign.py", "--odqa-strict", timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*foreign.json: baseline schema version None, this odqa-bench reads 2*"])
    assert "baselines/quick" in audit.read_text()


SUITE = """
import os

import pytest

VALUE = float(os.environ.get("SUITE_VALUE", "1"))


@pytest.mark.parametrize("k", [1, 5])
def test_cell(k, odqa_record):
    ids = [f"q{i}" for i in range(200)]
    vec = [1.0 if i < 100 * VALUE else 0.0 for i in range(200)]
    odqa_record("hit@%d" % k, per_query=vec, query_ids=ids)
"""

PLAIN_PYPROJECT = """
[tool.pytest.ini_options]
addopts = "-p no:cacheprovider -p no:hypothesispytest -p no:anyio -p no:benchmark --import-mode=importlib"
"""


def test_same_file_name_in_two_folders_never_shares_a_baseline(pytester: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "pyproject.toml").write_text(PLAIN_PYPROJECT)
    for folder in ("a", "b"):
        (pytester.path / folder).mkdir()
        (pytester.path / folder / "test_x.py").write_text(SUITE)
    monkeypatch.setenv("SUITE_VALUE", "1")
    assert pytester.runpytest_subprocess("--odqa-update-baselines", timeout=TIMEOUT).ret == 0
    cells = json.loads((pytester.path / "baselines" / "quick" / "x.json").read_text())["cells"]
    assert sorted(cells) == ["a/test_x.py::test_cell[1]", "a/test_x.py::test_cell[5]",
                             "b/test_x.py::test_cell[1]", "b/test_x.py::test_cell[5]"]
    # folder b alone drops: only b's cells regress, and a's are not "missing" since they ran
    monkeypatch.setenv("SUITE_VALUE", "0.5")
    result = pytester.runpytest_subprocess("b", "--odqa-strict", timeout=TIMEOUT)
    assert result.ret == 1
    fails = [line for line in result.outlines if line.startswith("FAIL ")]
    assert len(fails) == 2 and all(" x::b/test_x.py::test_cell[" in line for line in fails)
    monkeypatch.setenv("SUITE_VALUE", "1")
    assert pytester.runpytest_subprocess("--odqa-strict", timeout=TIMEOUT).ret == 0


def test_per_query_and_query_ids_must_pair(pytester: pytest.Pytester) -> None:
    (pytester.path / "pyproject.toml").write_text(PLAIN_PYPROJECT)
    pytester.makepyfile(test_bad="""
import pytest

def test_short_ids(odqa_record):
    odqa_record("hit@5", per_query=[1.0, 0.0, 1.0], query_ids=["a", "b"])

def test_mapping(odqa_record):
    assert odqa_record("hit@5", per_query={"a": 1.0, "b": 0.0}) == 0.5

def test_scores_need_ids(odqa_record):
    odqa_record.scores({"hit@5": [1.0]})
""")
    result = pytester.runpytest_subprocess("--odqa-no-gate", timeout=TIMEOUT)
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert "odqa_record('hit@5'): 3 per-query values but 2 query ids; they must pair one to one" in text
    assert "odqa_record.scores: give the result of odqa_core.metrics.evaluate" in text
    assert "Traceback" not in text and "def test_short_ids" not in text  # one line, no code listing


SETTINGS_SUITE = """
import os


def test_dense(odqa_record):
    odqa_record.settings({"backend": os.environ["SUITE_BACKEND"], "max_length": 256, "encoder": "tiny|fp"})
    odqa_record("hit@5", per_query=[1.0, 0.0] * 100, query_ids=[f"q{i}" for i in range(200)])
"""


def test_changed_settings_are_refused_with_the_regenerate_command(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "pyproject.toml").write_text(PLAIN_PYPROJECT)
    (pytester.path / "test_dense.py").write_text(SETTINGS_SUITE)
    monkeypatch.setenv("SUITE_BACKEND", "onnx-int8")
    assert pytester.runpytest_subprocess("--odqa-update-baselines", timeout=TIMEOUT).ret == 0
    cell = json.loads((pytester.path / "baselines" / "quick" / "dense.json").read_text())["cells"][
        "test_dense.py::test_dense"]
    assert cell["settings"] == {"backend": "onnx-int8", "encoder": "tiny|fp", "max_length": "256"}
    assert pytester.runpytest_subprocess("--odqa-strict", timeout=TIMEOUT).ret == 0
    monkeypatch.setenv("SUITE_BACKEND", "openvino-int8")
    strict = pytester.runpytest_subprocess("--odqa-strict", timeout=TIMEOUT)
    assert strict.ret == 1
    strict.stdout.fnmatch_lines([
        "FAIL REFUSED dense::test_dense.py::test_dense hit@5: *settings differ from the baseline's "
        "(backend onnx-int8 → openvino-int8): comparison refused; regenerate the baseline: "
        "pytest test_dense.py --odqa-profile quick --odqa-update-baselines; or compare like with like: "
        "--odqa-encoder-backend onnx-int8"])
    assert "REGRESSED" not in strict.stdout.str()
    # an explicit backend asks "what would switching do?": the same cell is compared, and says so
    asked = pytester.runpytest_subprocess("--odqa-strict", "--odqa-encoder-backend", "openvino-int8",
                                          "--odqa-report", "out", timeout=TIMEOUT)
    assert asked.ret == 0, asked.stdout.str()
    asked.stdout.fnmatch_lines(["odqa-bench gate (profile quick, correction holm, alpha 0.05): 1 unchanged"])
    assert "settings differ from the baseline's (backend onnx-int8 → openvino-int8): compared as asked by " \
           "--odqa-encoder-backend" in (pytester.path / "out" / "comparison.csv").read_text()


def test_shipped_fixtures_and_announced_writes(pytester: pytest.Pytester) -> None:
    (pytester.path / "pyproject.toml").write_text(PLAIN_PYPROJECT)
    pytester.makepyfile(test_shipped="""
from odqa_core.metrics import evaluate


def test_bm25(odqa_dataset, odqa_run, odqa_record, odqa_report_dir):
    ds = odqa_dataset("default")
    assert odqa_dataset("default") is ds  # cached per session
    run = odqa_run("bm25", "regex", "default")
    assert odqa_run("bm25", "regex", "default") is run
    odqa_record.dataset(ds)
    scores = evaluate(run, ds.qrels, ["hit@5", "ndcg@10"])
    odqa_record.scores(scores)
    if odqa_report_dir is not None:
        odqa_report_dir.mkdir(parents=True, exist_ok=True)
        (odqa_report_dir / "suite_table.md").write_text("| a |")
""")
    plain = pytester.runpytest_subprocess("--odqa-update-baselines", timeout=TIMEOUT)
    assert plain.ret == 0, plain.stdout.str()
    plain.stdout.fnmatch_lines(["odqa-bench: wrote *quick/shipped.json (1 cells updated, 1 in all)"])
    assert not (pytester.path / "reports").exists()
    stored = json.loads((pytester.path / "baselines" / "quick" / "shipped.json").read_text())
    metrics = stored["cells"]["test_shipped.py::test_bm25"]["metrics"]
    assert set(metrics) == {"hit@5", "ndcg@10"} and metrics["hit@5"]["n"] > 0
    assert "query_ids_sha256" in metrics["hit@5"]
    asked = pytester.runpytest_subprocess("--odqa-strict", "--odqa-report", "out", "--odqa-save-run", "run.json",
                                          timeout=TIMEOUT)
    assert asked.ret == 0, asked.stdout.str()
    asked.stdout.fnmatch_lines(["odqa-bench: wrote run.json (2 records; odqa-bench report --run run.json)",
                                "odqa-bench: wrote out/summary.md", "odqa-bench: wrote out/comparison.csv",
                                "odqa-bench: wrote out/junit.xml", "odqa-bench: wrote out/report.html",
                                "odqa-bench: a suite wrote out/suite_table.md"])
    assert (pytester.path / "run.json").is_file() and (pytester.path / "out" / "summary.md").is_file()


def test_cli_update_writes_what_the_plugin_writes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """One update function behind both: the baseline from ``odqa-bench baseline update --run`` is
    byte-for-byte the plugin's; a run with a failed test is refused by both in the same words."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setenv("SUITE_VALUE", "1")
    (pytester.path / "pyproject.toml").write_text(PLAIN_PYPROJECT)
    (pytester.path / "test_x.py").write_text(SUITE + "\n\ndef test_broken():\n    assert False\n")
    plugin = pytester.runpytest_subprocess("-k", "cell", "--odqa-update-baselines", "--odqa-save-run", "run.json",
                                           timeout=TIMEOUT)
    assert plugin.ret == 0
    by_plugin = (pytester.path / "baselines" / "quick" / "x.json").read_bytes()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "odqa_core.cli", *args], cwd=pytester.path, capture_output=True,
                              text=True, timeout=TIMEOUT, env=dict(os.environ))

    proc = cli("baseline", "update", "--run", "run.json", "--baseline-dir", "other")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wrote other/quick/x.json (2 cells updated, 2 in all)"
    assert (pytester.path / "other" / "quick" / "x.json").read_bytes() == by_plugin
    report = cli("report", "--run", "run.json", "--out", "rep", "--strict")
    assert report.returncode == 0 and "wrote rep/summary.md" in report.stdout

    failing = pytester.runpytest_subprocess("--odqa-no-gate", "--odqa-save-run", "bad.json", timeout=TIMEOUT)
    assert failing.ret == 1
    refused = cli("baseline", "update", "--run", "bad.json", "--baseline-dir", "other")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("odqa-bench: error: baselines NOT updated: 1 test(s) failed or errored "
                                      "(e.g. test_x.py::test_broken); fix them first")
