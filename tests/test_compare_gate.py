"""``odqa-bench compare`` as a CI gate for runs from any system (exit codes, JSON, markdown and
JUnit outputs, the project's tolerances), ``score --json``, and the warning for a run that shares
few queries with its qrels. Runs are written by hand: 300 queries, one gold document each."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from odqa_core.metrics import evaluate
from odqa_core.retrieval import Run

N = 300
TIMEOUT = 180


def _qrels(path: Path) -> None:
    path.write_text("".join(f"q{i} 0 g{i} 1\n" for i in range(N)))


def _run(path: Path, gold_first: np.ndarray, queries: range = range(N)) -> None:
    """Each query ranks its gold document first where ``gold_first`` says so, else third."""
    lines = []
    for i in queries:
        docs = [f"g{i}", "x1", "x2"] if gold_first[i] else ["x1", "x2", f"g{i}"]
        lines += [f"q{i} Q0 {d} {r} {10 - r} sys\n" for r, d in enumerate(docs, 1)]
    path.write_text("".join(lines))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "odqa_core.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, env=os.environ.copy())


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    base = np.random.default_rng(0).random(N) < 0.7
    _qrels(tmp_path / "qrels.txt")
    _run(tmp_path / "base.trec", base)
    worse = base.copy()
    worse[np.flatnonzero(base)[:30]] = False          # 10 points of hit@1 lost
    _run(tmp_path / "worse.trec", worse)
    noisy = base.copy()
    noisy[np.flatnonzero(base)[:1]] = False           # one query: within tolerance
    _run(tmp_path / "noisy.trec", noisy)
    _run(tmp_path / "half.trec", base, range(N // 2))  # a partial run
    return tmp_path


def _compare(d: Path, candidate: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli("compare", "--baseline", "base.trec", "--candidate", candidate, "--qrels", "qrels.txt",
                "--metrics", "hit@1", "mrr@10", *extra, cwd=d)


def test_a_regression_exits_1_and_writes_json_markdown_and_junit(runs: Path) -> None:
    proc = _compare(runs, "worse.trec", "--json", "gate.json", "--markdown", "gate.md", "--junit", "gate.xml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL ")]
    assert len(fails) == 2 and fails[0].startswith("FAIL REGRESSED compare::qrels hit@1: baseline ")
    assert "odqa-bench compare: 2 regression(s)" in proc.stdout
    gate = json.loads((runs / "gate.json").read_text())
    assert gate["ok"] is False and len(gate["failures"]) == 2
    by_metric = {c["metric"]: c for c in gate["comparisons"]}
    assert by_metric["hit@1"]["status"] == "regressed" and by_metric["hit@1"]["n"] == N
    assert by_metric["hit@1"]["delta"] == pytest.approx(-30 / N)
    assert by_metric["hit@1"]["p_value"] < 0.001 and by_metric["hit@1"]["p_adjusted"] >= by_metric["hit@1"]["p_value"]
    assert len(by_metric["hit@1"]["worse"]) == 10 and by_metric["hit@1"]["better"] == []
    assert "❌ 2 gate failure(s)" in (runs / "gate.md").read_text()
    suite = ET.parse(runs / "gate.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "2"
    for name in ("gate.json", "gate.md", "gate.xml"):
        assert f"wrote {name}" in proc.stdout


def test_unchanged_and_noise_exit_0(runs: Path) -> None:
    same = _compare(runs, "base.trec", "--json", "same.json")
    assert same.returncode == 0 and "odqa-bench compare: no regression" in same.stdout
    assert {c["status"] for c in json.loads((runs / "same.json").read_text())["comparisons"]} == {"unchanged"}
    noisy = _compare(runs, "noisy.trec")
    assert noisy.returncode == 0, noisy.stdout


def test_the_projects_tolerances_apply(runs: Path) -> None:
    """The rules of [tool.odqa_bench] decide, as in the plugin: a cell override for compare::qrels
    wide enough lets the 10-point drop pass."""
    (runs / "pyproject.toml").write_text('[tool.odqa_bench.cells."compare::qrels"]\n"*" = { abs = 0.2 }\n')
    assert _compare(runs, "worse.trec").returncode == 0
    assert _compare(runs, "worse.trec", "--cell", "other").returncode == 1
    (runs / "pyproject.toml").write_text('[tool.odqa_bench]\ncorrection = "nope"\n')
    bad = _compare(runs, "worse.trec")
    assert bad.returncode == 2 and "correction 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_score_json_and_the_few_shared_queries_warning(runs: Path) -> None:
    proc = _cli("score", "--run", "half.trec", "--qrels", "qrels.txt", "--metrics", "hit@1", "--json", "s.json",
                cwd=runs)
    assert proc.returncode == 0, proc.stderr
    assert "only 150 of the 300 judged queries are in the run (50%); the others score 0" in proc.stderr
    out = json.loads((runs / "s.json").read_text())
    expected = evaluate(Run.read_trec(runs / "half.trec"), {f"q{i}": {f"g{i}": 1} for i in range(N)}, ["hit@1"])
    assert out["queries"] == N and out["metrics"]["hit@1"] == pytest.approx(float(expected["hit@1"].mean()))
    assert out["per_query"]["hit@1"] == expected.by_query("hit@1")
    full = _cli("score", "--run", "base.trec", "--qrels", "qrels.txt", "--metrics", "hit@1", cwd=runs)
    assert full.returncode == 0 and "warning" not in full.stderr
    compare = _compare(runs, "half.trec")
    assert "half.trec: only 150 of the 300 judged queries" in compare.stderr
