"""Real data that is missing: a test skips here and fails on CI, through the one helper in
``odqa_core.bench``, in the shared fixtures and in the suites that load real datasets."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

USES = """
from odqa_core.bench import cached_dataset, require_dataset, skip_or_fail

def test_require():
    require_dataset("scifact")

def test_cached():
    cached_dataset("korquad-dev")

def test_reason():
    skip_or_fail("no GPU data here")

def test_default_needs_no_data_folder():
    assert cached_dataset("default").n_queries > 0
"""


@pytest.mark.parametrize("ci", ["", "true"])
def test_missing_data_skips_here_and_fails_on_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                 ci: str) -> None:
    monkeypatch.setenv("ODQA_DATA_DIR", str(pytester.mkdir("no-data")))
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_uses=USES)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-rsf")
    if ci:
        result.assert_outcomes(passed=1, failed=3)
        result.stdout.fnmatch_lines(["FAILED test_uses.py::test_require - Failed: dataset 'scifact' unavailable here: "
                                     "*no-data*file not found* (CI is set: real-data tests fail instead of skipping)"])
        assert "Traceback" not in result.stdout.str() and "During handling" not in result.stdout.str()
    else:
        result.assert_outcomes(passed=1, skipped=3)
        result.stdout.fnmatch_lines(["SKIPPED * dataset 'korquad-dev' unavailable here: *file not found*"])


def _present(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


# Tests that load real data in each module that used to skip on its own; each must fail on CI.
REAL_DATA_TESTS = [
    ("benchmarks/perf/test_sparse_perf.py::test_bm25_robertson_scores_match_rank_bm25", ("rank_bm25",)),
    ("benchmarks/perf/test_encoder_speed.py::test_encoder_speed", ("torch", "transformers")),
    ("tests/test_ray_shards.py::test_bm25_scifact_identical_for_1_2_3_shards", ("ray",)),
]


def test_real_data_suites_fail_on_ci_without_their_data(tmp_path: Path) -> None:
    ids = [node for node, needs in REAL_DATA_TESTS if _present(*needs)]
    if not ids:
        pytest.skip("none of the real-data suites' packages is installed")
    env = dict(os.environ, CI="1", ODQA_DATA_DIR=str(tmp_path), PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "-m", "pytest", *ids, "-p", "no:randomly", "-p", "no:xdist", "-q", "-rfEs"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    summary = out.strip().splitlines()[-1]
    assert " passed" not in summary and "skipped" not in summary, summary
    for node in ids:
        lines = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR")) and node in line]
        assert lines and all("(CI is set: real-data tests fail instead of skipping)" in line for line in lines), node
