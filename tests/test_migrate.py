"""``odqa-bench baseline migrate``: schema-1 cells (keyed by test name) re-keyed by test file path,
numbers untouched, ambiguity refused before anything is written; the plugin then matches them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TIMEOUT = 180

SUITE = """
import pytest


@pytest.mark.parametrize("k", [1, 5])
def test_a(k, odqa_record):
    odqa_record(f"hit@{k}", per_query=[1.0, 0.0, 1.0, 1.0] * 50, query_ids=[f"q{i}" for i in range(200)])


class TestB:
    def test_b(self, odqa_record):
        odqa_record("mrr@10", 0.25)
"""

PYPROJECT = """
[tool.pytest.ini_options]
addopts = "-p no:cacheprovider -p no:hypothesispytest -p no:anyio -p no:benchmark"
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "odqa_core.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, env=os.environ.copy())


def _as_schema_1(path: Path) -> dict:
    """Rewrite a schema-2 baseline as the schema-1 file an older odqa-bench wrote: test names as keys."""
    obj = json.loads(path.read_text())
    obj["schema_version"] = 1
    obj["cells"] = {k.rsplit("::", 1)[1]: v for k, v in obj["cells"].items()}
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))
    return obj


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "pyproject.toml").write_text(PYPROJECT)
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "test_x.py").write_text(SUITE)
    result = pytester.runpytest_subprocess("suites", "--odqa-update-baselines", timeout=TIMEOUT)
    assert result.ret == 0, result.stdout.str()
    return pytester


def test_migrate_rekeys_by_path_and_keeps_every_number(project: pytest.Pytester) -> None:
    path = project.path / "baselines" / "quick" / "x.json"
    current = json.loads(path.read_text())
    assert sorted(current["cells"]) == ["suites/test_x.py::TestB::test_b", "suites/test_x.py::test_a[1]",
                                        "suites/test_x.py::test_a[5]"]
    old = _as_schema_1(path)
    assert sorted(old["cells"]) == ["test_a[1]", "test_a[5]", "test_b"]
    refused = project.runpytest_subprocess("suites", "--odqa-strict", timeout=TIMEOUT)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*x.json: baseline schema version 1 (cells keyed by test name alone), this "
                                  "odqa-bench reads 2; rewrite it with: odqa-bench baseline migrate"])

    dry = _cli("baseline", "migrate", "--dry-run", cwd=project.path)
    assert dry.returncode == 0 and "3 cells re-keyed (dry run)" in dry.stdout
    assert json.loads(path.read_text())["schema_version"] == 1
    done = _cli("baseline", "migrate", cwd=project.path)
    assert done.returncode == 0, done.stderr
    assert "x.json: 3 cells re-keyed, e.g. test_a[1] -> suites/test_x.py::test_a[1]" in done.stdout
    assert json.loads(path.read_text()) == current  # the same file the plugin writes today, numbers and all
    again = _cli("baseline", "migrate", cwd=project.path)
    assert again.returncode == 0 and "already schema 2" in again.stdout
    rerun = project.runpytest_subprocess("suites", "--odqa-strict", timeout=TIMEOUT)
    assert rerun.ret == 0, rerun.stdout.str()
    rerun.stdout.fnmatch_lines(["odqa-bench gate (profile quick, correction holm, alpha 0.05): 3 unchanged"])


@pytest.mark.parametrize("other,why", [
    (("more", "test_x.py"), "is defined in more than one file (more/test_x.py, suites/test_x.py)"),
    (None, "no file defines 'test_gone'"),
], ids=["two-files", "no-file"])
def test_ambiguity_is_refused_and_nothing_is_written(project: pytest.Pytester, other, why: str) -> None:
    path = project.path / "baselines" / "quick" / "x.json"
    old = _as_schema_1(path)
    if other:
        (project.path / other[0]).mkdir()
        (project.path / other[0] / other[1]).write_text(SUITE)
    else:
        old["cells"]["test_gone[1]"] = old["cells"]["test_a[1]"]
        path.write_text(json.dumps(old, indent=1, sort_keys=True))
    # a second, unambiguous file in another profile must not be written either
    full = project.path / "baselines" / "full"
    full.mkdir()
    (full / "x.json").write_text(json.dumps({**old, "cells": {"test_b": old["cells"]["test_b"]}}))
    before = {p: p.read_bytes() for p in (path, full / "x.json")}
    proc = _cli("baseline", "migrate", cwd=project.path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and why in lines[0] and "refusing an ambiguous migration" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p: p.read_bytes() for p in before} == before
