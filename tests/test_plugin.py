"""End-to-end tests of the pytest plugin: synthetic suites record per-query vectors, degradations
are injected through $SYNTH_SPEC, and pytest runs in a subprocess against stored baselines."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest_plugins = ["pytester"]

TIMEOUT = 180
EPOCH = "1700000000"

PYPROJECT = """
[tool.pytest.ini_options]
addopts = "-p no:cacheprovider -p no:hypothesispytest -p no:anyio -p no:benchmark"

[tool.odqa_bench]
alpha = 0.05
correction = "holm"
permutations = 10000
bootstrap = 300

[tool.odqa_bench.tolerance]
"*" = { abs = 0.005 }
"""

# Six retrieval cells (hit@k and recall@k over 400 queries) and five folds of 80 queries each.
# $SYNTH_SPEC: {"down"/"up": {"<cell> <metric>": n}} flips the first n hits to misses (or misses
# to hits); "extra": more cells; "sha": {"<cell>": sha256}; "fail": cells whose test fails.
SYNTH = '''
import json, os, zlib
from types import SimpleNamespace

import numpy as np
import pytest

N = 400
SPEC = json.loads(os.environ.get("SYNTH_SPEC") or "{}")
CELLS = [f"{r}-regex/toy/k={k}" for r in ("bm25", "tfidf") for k in (5, 10, 20)] + SPEC.get("extra", [])


def vector(cell, metric, n=N):
    rng = np.random.default_rng(zlib.crc32(f"{cell} {metric}".encode()))
    v = (rng.random(n) < 0.6).astype(float)
    hits, misses = np.flatnonzero(v == 1), np.flatnonzero(v == 0)
    key = f"{cell} {metric}"
    v[hits[: SPEC.get("down", {}).get(key, 0)]] = 0.0
    v[misses[: SPEC.get("up", {}).get(key, 0)]] = 1.0
    return v


@pytest.mark.parametrize("cell", CELLS)
def test_retrieval(cell, odqa_record):
    odqa_record.dataset(SimpleNamespace(name="toy", sha256=SPEC.get("sha", {}).get(cell, "0" * 64)))
    k = int(cell.rsplit("=", 1)[1])
    for metric in (f"hit@{k}", f"recall@{k}"):
        odqa_record(metric, per_query=vector(cell, metric), query_ids=[f"q{i}" for i in range(N)])
    assert cell not in SPEC.get("fail", []), "injected failure"


@pytest.mark.parametrize("fold", range(1, 6), ids=lambda f: f"bm25-regex/toy/fold={f}")
def test_folds(fold, odqa_record):
    cell = f"bm25-regex/toy/fold={fold}"
    odqa_record.dataset(SimpleNamespace(name="toy", sha256="0" * 64))
    odqa_record("hit@5", per_query=vector(cell, "hit@5", 80), query_ids=[f"f{fold}q{i}" for i in range(80)])
'''

# Forty noise-only cells: with $MANY_NOISE set, each cell loses Poisson(6) hits and gains Poisson(6).
MANY = '''
import os, zlib

import numpy as np
import pytest

N = 400
NOISE = os.environ.get("MANY_NOISE")


@pytest.mark.parametrize("cell", [f"c{i:02d}" for i in range(40)])
def test_many(cell, odqa_record):
    v = (np.random.default_rng(zlib.crc32(cell.encode())).random(N) < 0.6).astype(float)
    if NOISE is not None:
        rng = np.random.default_rng([int(NOISE), int(cell[1:])])
        hits, misses = np.flatnonzero(v == 1), np.flatnonzero(v == 0)
        v[rng.choice(hits, rng.poisson(6), replace=False)] = 0.0
        v[rng.choice(misses, rng.poisson(6), replace=False)] = 1.0
    odqa_record("hit@10", per_query=v, query_ids=[f"q{i}" for i in range(N)])
'''

# a noise seed under which uncorrected testing flags chance drops among the 40 cells
MANY_NOISE_SEED = "8"

FAIL_LINE = re.compile(r"^FAIL REGRESSED (?P<suite>\w+)::(?P<cell>\S+) (?P<metric>\S+): baseline (?P<base>[\d.]+), "
                       r"current (?P<cur>[\d.]+), delta (?P<delta>[+-][\d.]+), p (?P<p>[\d.e-]+) ")


def _write_project(root: Path) -> None:
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "test_synth.py").write_text(SYNTH)
    (root / "test_many.py").write_text(MANY)


@pytest.fixture(scope="module")
def stored_baselines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Baselines of both synthetic suites, written once by an unchanged run."""
    root = tmp_path_factory.mktemp("odqa_base_project")
    _write_project(root)
    env = {k: v for k, v in os.environ.items() if k not in ("SYNTH_SPEC", "MANY_NOISE", "PYTEST_ADDOPTS")}
    env["SOURCE_DATE_EPOCH"] = EPOCH
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "test_synth.py", "test_many.py",
                           "--odqa-baseline-dir", "bl", "--odqa-update-baselines"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "bl" / "quick"


@pytest.fixture
def project(pytester: pytest.Pytester, stored_baselines: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A synthetic project with its baselines in ``bl/quick``."""
    _write_project(pytester.path)
    shutil.copytree(stored_baselines, pytester.path / "bl" / "quick")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    for var in ("SYNTH_SPEC", "MANY_NOISE"):
        monkeypatch.delenv(var, raising=False)
    return pytester


def _run(p: pytest.Pytester, *args: str, spec: dict[str, Any] | None = None, base: str = "bl") -> pytest.RunResult:
    os.environ.pop("SYNTH_SPEC", None)
    if spec:
        os.environ["SYNTH_SPEC"] = json.dumps(spec)
    try:
        return p.runpytest_subprocess("test_synth.py", "--odqa-baseline-dir", base, *args, timeout=TIMEOUT)
    finally:
        os.environ.pop("SYNTH_SPEC", None)


def _lines(result: pytest.RunResult, *patterns: str, stream: str = "stdout") -> None:
    """fnmatch_lines with literal brackets (cell ids hold ``[...]``)."""
    getattr(result, stream).fnmatch_lines([p.replace("[", "[[]") for p in patterns])


def _text(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def _regressed(result: pytest.RunResult) -> dict[tuple[str, str], dict[str, float]]:
    out = {}
    for line in result.outlines:
        if m := FAIL_LINE.match(line):
            out[(m["cell"], m["metric"])] = {k: float(m[k]) for k in ("base", "cur", "delta", "p")}
    return out


N_SYNTH_TESTS = 11  # six retrieval cells and five folds


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help", timeout=TIMEOUT)
    assert result.ret == 0
    _lines(result, "odqa-bench regression gate:", "*--odqa-baseline-dir*", "*--odqa-strict*",
           "*--odqa-update-baselines*", "*--odqa-correction*", "*--odqa-report*")


def test_encoder_backend_option_sets_auto_and_refuses_unknown_names(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_env="""
import os

def test_env():
    from odqa_core.encoders.backends import auto_backend
    assert os.environ["ODQA_ENCODER_BACKEND"] == "torch-bf16"
    assert auto_backend("cpu") == "torch-bf16"
""")
    ok = pytester.runpytest_subprocess("test_env.py", "--odqa-no-gate", "--odqa-encoder-backend", "torch-bf16",
                                       timeout=TIMEOUT)
    assert ok.ret == 0, ok.stdout.str()
    bad = pytester.runpytest_subprocess("test_env.py", "--odqa-encoder-backend", "tensorrt", timeout=TIMEOUT)
    assert bad.ret != 0
    assert "unknown encoder backend 'tensorrt'" in bad.stderr.str() + bad.stdout.str()
    assert "Traceback" not in bad.stderr.str() + bad.stdout.str()


def test_fresh_baseline_then_unchanged_reruns_never_fail(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _write_project(pytester.path)
    monkeypatch.delenv("SYNTH_SPEC", raising=False)
    first = _run(pytester)
    assert first.ret == 0
    _lines(first, "odqa-bench: 7 warning(s): 7 no baseline; details with -v or --odqa-report DIR")
    written = _run(pytester, "--odqa-update-baselines")
    assert written.ret == 0
    _lines(written, "*odqa-bench: wrote *synth.json (11 cells updated, 11 in all)*")
    path = pytester.path / "bl" / "quick" / "synth.json"
    stored = path.read_bytes()
    for _ in range(5):
        rerun = _run(pytester, "--odqa-strict")
        assert rerun.ret == 0, _text(rerun)
        rerun.assert_outcomes(passed=N_SYNTH_TESTS)
        assert not _regressed(rerun) and "FAIL" not in rerun.stdout.str()
        _lines(rerun, "*odqa-bench gate (profile quick, correction holm, alpha 0.05): 13 unchanged*")
    assert path.read_bytes() == stored


def test_injected_regression_fails_exactly_its_cells_and_writes_reports(project: pytest.Pytester) -> None:
    spec = {"down": {"bm25-regex/toy/k=5 hit@5": 12, "tfidf-regex/toy/k=20 recall@20": 12,  # 3 % of 400
                     "tfidf-regex/toy/k=10 hit@10": 1},                                    # noise: 0.25 %
            "up": {"bm25-regex/toy/k=10 recall@10": 12}}
    result = _run(project, "--odqa-report", "out", spec=spec)
    assert result.ret == 1
    result.assert_outcomes(passed=N_SYNTH_TESTS)  # the tests pass; the gate fails the session
    got = _regressed(result)
    assert set(got) == {("test_synth.py::test_retrieval[bm25-regex/toy/k=5]", "hit@5"),
                        ("test_synth.py::test_retrieval[tfidf-regex/toy/k=20]", "recall@20")}
    for v in got.values():
        assert v["delta"] == pytest.approx(-0.03, abs=1e-4)
        assert v["cur"] == pytest.approx(v["base"] - 0.03, abs=2e-4)
        assert v["p"] < 0.001
    assert sum(line.startswith("FAIL ") for line in result.outlines) == 2
    _lines(result, "*worst queries of test_synth.py::test_retrieval[bm25-regex/toy/k=5] hit@5: q* (1 -> 0)*",
           "improved synth::test_synth.py::test_retrieval[bm25-regex/toy/k=10] recall@10*")

    out = project.path / "out"
    assert {"summary.md", "comparison.csv", "junit.xml", "report.html"} <= {p.name for p in out.iterdir()}
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["curves_toy.png"]
    assert pngs[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    frame = pd.read_csv(out / "comparison.csv")
    assert len(frame) == 13
    status = {(r.cell, r.metric): r.status for r in frame.itertuples()}
    assert {k for k, s in status.items() if s == "regressed"} == set(got)
    assert status[("test_synth.py::test_retrieval[bm25-regex/toy/k=10]", "recall@10")] == "improved"
    assert status[("test_synth.py::test_retrieval[tfidf-regex/toy/k=10]", "hit@10")] == "unchanged"
    assert (frame["p_adjusted"] >= frame["p_value"]).all()

    suite = ET.parse(out / "junit.xml").getroot()
    cases = suite.findall("testcase")
    assert len(cases) == len(frame) == int(suite.get("tests"))
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {f"{cell} {metric}" for cell, metric in got}
    assert suite.get("failures") == "2"

    summary = (out / "summary.md").read_text()
    assert "2 gate failure(s)" in summary and "Worst-hit queries" in summary
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    assert html.count('<tr class="regressed"') == 2 and "Worst-hit queries" in html
    assert "http://" not in html and "https://" not in html


def test_improvement_and_noise_pass_and_print_the_accept_command(project: pytest.Pytester) -> None:
    spec = {"up": {"bm25-regex/toy/k=20 hit@20": 20, "tfidf-regex/toy/k=5 recall@5": 12},
            "down": {"bm25-regex/toy/k=5 hit@5": 1, "tfidf-regex/toy/k=5 hit@5": 2}}
    result = _run(project, "--odqa-strict", spec=spec)
    assert result.ret == 0, _text(result)
    assert not _regressed(result)
    _lines(result, "improved synth::test_synth.py::test_retrieval[bm25-regex/toy/k=20] hit@20*",
           "improved synth::test_synth.py::test_retrieval[tfidf-regex/toy/k=5] recall@5*",
           "accept improvements with: pytest <same args> --odqa-update-baselines*")


def test_new_cell_warns_locally_and_fails_strict(project: pytest.Pytester) -> None:
    spec = {"extra": ["bm25-regex/toy/k=30"]}
    local = _run(project, spec=spec)
    assert local.ret == 0
    # warnings fold into one line; -v lists them
    _lines(local, "odqa-bench: 14 warning(s): 13 tolerance below the minimum detectable effect, 1 no baseline; "
                  "details with -v or --odqa-report DIR")
    assert "warning: synth::" not in local.stdout.str()
    verbose = _run(project, "-v", spec=spec)
    _lines(verbose, "warning: synth::test_synth.py::test_retrieval[bm25-regex/toy/k=30] has no baseline*")
    strict = _run(project, "--odqa-strict", spec=spec)
    assert strict.ret == 1
    _lines(strict, "FAIL NEW synth::test_synth.py::test_retrieval[bm25-regex/toy/k=30] hit@30*",
           "FAIL NEW synth::test_synth.py::test_retrieval[bm25-regex/toy/k=30] recall@30*")
    assert not _regressed(strict)


def test_changed_dataset_is_refused_not_regressed(project: pytest.Pytester) -> None:
    cell = "tfidf-regex/toy/k=10"
    spec = {"sha": {cell: "f" * 64}, "down": {f"{cell} hit@10": 40}}  # a large drop on the changed data
    local = _run(project, "-v", spec=spec)
    assert local.ret == 0
    _lines(local, f"warning: synth::test_synth.py::test_retrieval[{cell}] was not compared: dataset sha256 "
           "differs from the baseline's*comparison refused; if the data change is intended, regenerate the "
           "baseline: pytest test_synth.py --odqa-profile quick --odqa-update-baselines*")
    assert "REGRESSED" not in local.stdout.str()
    strict = _run(project, "--odqa-strict", spec=spec)
    assert strict.ret == 1
    _lines(strict, f"FAIL REFUSED synth::test_synth.py::test_retrieval[{cell}] hit@10*dataset sha256 differs*")
    assert "REGRESSED" not in strict.stdout.str()


def _corrupt_json(text: str) -> str:
    return text[: len(text) // 2]


def _bad_schema(text: str) -> str:
    obj = json.loads(text)
    obj["schema_version"] = 99
    return json.dumps(obj)


def _no_value(text: str) -> str:
    obj = json.loads(text)
    del obj["cells"]["test_synth.py::test_retrieval[bm25-regex/toy/k=5]"]["metrics"]["hit@5"]["value"]
    return json.dumps(obj)


def _bad_vector(text: str) -> str:
    obj = json.loads(text)
    obj["cells"]["test_synth.py::test_retrieval[tfidf-regex/toy/k=5]"]["metrics"]["recall@5"]["per_query"] = "not*a*vector!"
    return json.dumps(obj)


@pytest.mark.parametrize("damage,message,update", [
    (_corrupt_json, "*synth.json: corrupted baseline (malformed JSON*", False),
    (_bad_schema, "*synth.json: baseline schema version 99, this odqa-bench reads 2*", False),
    (_no_value, "*corrupted baseline (cell 'test_synth.py::test_retrieval[bm25-regex/toy/k=5]' metric 'hit@5' has no numeric "
                 "value)*",
     True),
    (_bad_vector, "*corrupted baseline (cell 'test_synth.py::test_retrieval[tfidf-regex/toy/k=5]' metric 'recall@5' "
                  "per-query vector unreadable)*", True),
], ids=["malformed-json", "schema-version", "no-value", "bad-per-query"])
def test_bad_baseline_is_one_clear_error(project: pytest.Pytester, damage, message: str, update: bool) -> None:
    path = project.path / "bl" / "quick" / "synth.json"
    path.write_text(damage(path.read_text()))
    before = path.read_bytes()
    result = _run(project, *(["--odqa-update-baselines"] if update else []))
    assert result.ret != 0
    text = _text(result)
    assert "Traceback" not in text
    assert sum(("corrupted baseline" in line or "schema version" in line) for line in result.outlines + result.errlines) == 1
    _lines(result, message, stream="stderr")
    assert path.read_bytes() == before


def test_update_is_refused_when_a_test_fails(project: pytest.Pytester) -> None:
    path = project.path / "bl" / "quick" / "synth.json"
    before = path.read_bytes()
    spec = {"fail": ["tfidf-regex/toy/k=20"], "down": {"bm25-regex/toy/k=5 hit@5": 30}}
    result = _run(project, "--odqa-update-baselines", spec=spec)
    assert result.ret != 0
    result.assert_outcomes(passed=N_SYNTH_TESTS - 1, failed=1)
    _lines(result, "*odqa-bench: baselines NOT updated: 1 test(s) failed or errored (e.g. test_synth.py::test_retrieval[tfidf-regex/toy/k=20]); fix them first*")
    assert path.read_bytes() == before


def test_update_merges_with_cells_that_did_not_run(project: pytest.Pytester) -> None:
    path = project.path / "bl" / "quick" / "synth.json"
    old = json.loads(path.read_text())
    spec = {"down": {"bm25-regex/toy/k=5 hit@5": 30}}
    result = _run(project, "-k", "test_retrieval and bm25", "--odqa-update-baselines", spec=spec)
    assert result.ret == 0, _text(result)
    result.assert_outcomes(passed=3, deselected=8)
    _lines(result, "*wrote *synth.json (3 cells updated, 11 in all)*")
    new = json.loads(path.read_text())
    assert set(new["cells"]) == set(old["cells"])
    changed = {c for c in old["cells"] if old["cells"][c] != new["cells"][c]}
    assert changed == {"test_synth.py::test_retrieval[bm25-regex/toy/k=5]"}
    m_old = old["cells"]["test_synth.py::test_retrieval[bm25-regex/toy/k=5]"]["metrics"]
    m_new = new["cells"]["test_synth.py::test_retrieval[bm25-regex/toy/k=5]"]["metrics"]
    assert m_new["hit@5"]["value"] == pytest.approx(m_old["hit@5"]["value"] - 30 / 400)
    assert m_new["recall@5"] == m_old["recall@5"]


def test_serial_and_xdist_write_identical_baselines(project: pytest.Pytester) -> None:
    serial = _run(project, "--odqa-update-baselines", base="serial")
    parallel = _run(project, "--odqa-update-baselines", "-n", "2", base="parallel")
    assert serial.ret == 0 and parallel.ret == 0, _text(parallel)
    _lines(parallel, "*2 workers*")
    a = (project.path / "serial" / "quick" / "synth.json").read_bytes()
    b = (project.path / "parallel" / "quick" / "synth.json").read_bytes()
    assert a == b
    assert json.loads(a)["created"] == "2023-11-14T22:13:20+00:00"


def test_folds_are_judged_as_one_group(project: pytest.Pytester) -> None:
    group = "test_synth.py::test_folds[bm25-regex/toy/fold=*]"
    # three hits lost in one fold: 0.75 points pooled, beyond tolerance but p = 1/8
    one = _run(project, "--odqa-report", "one", spec={"down": {"bm25-regex/toy/fold=3 hit@5": 3}})
    assert one.ret == 0, _text(one)
    rows = pd.read_csv(project.path / "one" / "comparison.csv")
    fold_rows = rows[rows["cell"].str.startswith("test_synth.py::test_folds")]
    assert list(fold_rows["cell"]) == [group]
    (row,) = fold_rows.itertuples()
    assert row.status == "unchanged" and row.delta == pytest.approx(-3 / 400) and row.n == 400
    assert "not significant" in row.note
    # three hits lost in every fold: no fold is significant alone (p = 1/8), the group is
    every = _run(project, spec={"down": {f"bm25-regex/toy/fold={f} hit@5": 3 for f in range(1, 6)}})
    assert every.ret == 1
    got = _regressed(every)
    assert list(got) == [(group, "hit@5")]
    assert got[(group, "hit@5")]["delta"] == pytest.approx(-15 / 400, abs=1e-4)


def test_multiple_comparisons_correction(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANY_NOISE", MANY_NOISE_SEED)
    frames = {}
    for corr in ("none", "holm"):
        res = project.runpytest_subprocess("test_many.py", "--odqa-baseline-dir", "bl", "--odqa-correction", corr,
                                           "--odqa-report", f"r_{corr}", timeout=TIMEOUT)
        frame = pd.read_csv(project.path / f"r_{corr}" / "comparison.csv")
        assert len(frame) == 40 and frame["p_value"].notna().all()
        assert (frame["p_adjusted"] >= frame["p_value"] - 1e-12).all()
        # the verdicts follow the rule: drop beyond tolerance and adjusted p below alpha
        rule = (-frame["delta"] > 0.005 + 1e-12) & (frame["p_adjusted"] < 0.05)
        assert list(frame["status"] == "regressed") == list(rule)
        assert res.ret == (1 if rule.any() else 0)
        frames[corr] = frame
    none, holm = frames["none"], frames["holm"]
    assert list(none["p_value"]) == list(holm["p_value"])
    flagged_none = set(none.loc[none["status"] == "regressed", "cell"])
    flagged_holm = set(holm.loc[holm["status"] == "regressed", "cell"])
    assert flagged_none, "noise-only drops should reach p < 0.05 somewhere among 40 uncorrected cells"
    assert flagged_holm <= flagged_none
    assert not flagged_holm


def test_plots_and_html_render_from_records(tmp_path: Path) -> None:
    """The report renderers on hand-built records, without a pytest subprocess."""
    from odqa_core.baseline import Record, build_baseline, load_config, records_to_cells, run_gate
    from odqa_core.report.html import to_html
    from odqa_core.report.plots import curve_points, parse_cell, write_plots
    from odqa_core.report.tables import comparison_frame

    assert parse_cell("test_retrieval[bm25-kiwi/korquad-dev/k=20]") == ("bm25-kiwi", "korquad-dev", 20)
    assert parse_cell("sub/test_x.py::test_retrieval[bm25-kiwi/korquad-dev/k=20]") == ("bm25-kiwi", "korquad-dev", 20)
    assert parse_cell("test_folds[bm25/x/fold=2]") is None
    qids = [f"q{i}" for i in range(40)]

    def rec(cell: str, metric: str, hits: int) -> Record:
        vec = [1.0] * hits + [0.0] * (40 - hits)
        return Record("retrieval", cell, metric, hits / 40, per_query=vec, query_ids=qids, dataset="toy")

    old = [rec(f"test_retrieval[bm25-regex/{ds}/k={k}]", f"{m}@{k}", 20 + k) for ds in ("a", "b")
           for k in (5, 10) for m in ("hit", "recall")]
    new = [rec("test_retrieval[bm25-regex/a/k=5]", "hit@5", 10)] + old[1:]
    new.append(rec("test_retrieval[<script>/a/k=5]", "mrr@5", 3))
    res = run_gate(new, {"retrieval": build_baseline("quick", "retrieval", records_to_cells(old))},
                   load_config(None))
    curves = curve_points(res, new)
    line = curves["a"]["hit"][("retrieval", "bm25-regex")]
    assert line == {"current": {5: 0.25, 10: 0.75}, "baseline": {5: 0.625, 10: 0.75}}
    assert "<script>" not in str(curves["a"].keys())
    paths = write_plots(res, new, tmp_path)
    assert [p.name for p in paths] == ["curves_a.png", "curves_b.png"]
    assert write_plots(res, [r for r in new if r.metric.startswith("mrr")], tmp_path / "none") == []
    page = to_html(res, comparison_frame(res), paths)
    assert page.count("data:image/png;base64,") == 2
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count('<tr class="regressed" style="background:#f8d7da">') == 1
    assert "Worst-hit queries" in page and "q10" in page


def test_speed_is_compared_only_on_the_cpu_class_it_was_recorded_on(pytester: pytest.Pytester) -> None:
    """A speed record carries the CPU class (:func:`odqa_core.machine.cpu_isa`); a baseline from
    another class is not judged and never fails the run, strict or not, while quality records of the
    same suite compare as usual."""
    from odqa_core.machine import cpu_isa

    (pytester.path / "pyproject.toml").write_text(PYPROJECT)
    pytester.makepyfile(test_speedy='''
import os

def test_speed(odqa_record):
    odqa_record.settings({"backend": os.environ.get("BACKEND", "torch")})
    odqa_record("speedup", float(os.environ.get("SPEEDUP", "2.0")), kind="speed")

def test_quality(odqa_record):
    odqa_record("hit", 0.5)
''')
    args = ("test_speedy.py", "--odqa-baseline-dir", "bl")
    assert pytester.runpytest_subprocess(*args, "--odqa-update-baselines", timeout=TIMEOUT).ret == 0
    path = pytester.path / "bl" / "quick" / "speedy.json"
    stored = json.loads(path.read_text())
    cells = stored["cells"]
    assert cells["test_speedy.py::test_speed"]["settings"] == {"backend": "torch", "cpu_isa": cpu_isa()}
    assert "settings" not in cells["test_speedy.py::test_quality"]
    assert stored["machine"]["isa"] == cpu_isa()
    os.environ["SPEEDUP"] = "0.5"
    try:
        same = pytester.runpytest_subprocess(*args, "--odqa-strict", timeout=TIMEOUT)
        assert same.ret == 1
        _lines(same, "FAIL REGRESSED speedy::test_speedy.py::test_speed speedup*")
        cells["test_speedy.py::test_speed"]["settings"]["cpu_isa"] = "x86_64:other-class"
        path.write_text(json.dumps(stored))
        other = pytester.runpytest_subprocess(*args, "-v", "--odqa-strict", timeout=TIMEOUT)
        assert other.ret == 0, _text(other)
        assert "REGRESSED" not in other.stdout.str()
        _lines(other, "warning: speedy::test_speedy.py::test_speed was not compared: speed baseline measured on "
                      f"another CPU class (cpu_isa x86_64:other-class → {cpu_isa()})*")
        # settings that follow the CPU (an int8 kernel choice) may differ with it: still not judged
        os.environ["BACKEND"] = "onnx"
        kernel = pytester.runpytest_subprocess(*args, "--odqa-strict", timeout=TIMEOUT)
        assert kernel.ret == 0, _text(kernel)
        # on the same class, a changed setting is refused as usual, and strict fails on it
        cells["test_speedy.py::test_speed"]["settings"]["cpu_isa"] = cpu_isa()
        path.write_text(json.dumps(stored))
        both = pytester.runpytest_subprocess(*args, "--odqa-strict", timeout=TIMEOUT)
        assert both.ret == 1
        _lines(both, "FAIL REFUSED speedy::test_speedy.py::test_speed*")
    finally:
        os.environ.pop("SPEEDUP", None)
        os.environ.pop("BACKEND", None)


def test_records_move_out_of_kept_reports_and_share_query_ids(pytester: pytest.Pytester) -> None:
    """The controller keeps every report until the session ends: a record's vectors leave the
    report once collected, and the records of a session share their query-id strings."""
    pytester.makepyfile(test_two='''
def test_a(odqa_record):
    odqa_record("hit@5", per_query=[1.0, 0.0], query_ids=["q1", "q2"])


def test_b(odqa_record):
    odqa_record("hit@5", per_query=[0.0, 1.0], query_ids=["q" + str(1), "q2"])
''')
    reprec = pytester.inline_run("--odqa-no-gate", "-p", "no:cacheprovider")
    reprec.assertoutcome(passed=2)
    calls = [r for r in reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    assert len(calls) == 2 and all(not r.user_properties for r in calls)
    sess = reprec.getcalls("pytest_sessionfinish")[0].session.config.pluginmanager.get_plugin("odqa-session")
    a, b = sess.records
    assert (a.per_query, b.per_query) == ([1.0, 0.0], [0.0, 1.0])
    assert a.query_ids == b.query_ids == ["q1", "q2"] and a.query_ids[0] is b.query_ids[0]
    items = reprec.getcalls("pytest_collection_finish")[0].session.items
    assert [i.user_properties for i in items] == [[], []]
