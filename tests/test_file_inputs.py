"""Files users hand the CLI, end to end in a subprocess: a knowledge base is read by its header's
column names, and a bad file gets one error line, exit 2 and nothing written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.data.beir import read_qrels_tsv
from odqa_core.errors import OdqaBenchError
from odqa_core.retrieval import Run


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "odqa_core.cli", *args], capture_output=True, text=True)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("odqa-bench: error: "), proc.stderr
    return lines[0]


# --- eval-rag knowledge base -----------------------------------------------------------------

@pytest.fixture
def evalrag_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "q.txt").write_text("zebra\npenguin\n", encoding="utf-8")
    (tmp_path / "gold.txt").write_text("Zebra\nPenguin\n", encoding="utf-8")
    return {"q": tmp_path / "q.txt", "gold": tmp_path / "gold.txt", "pred": tmp_path / "pred.txt", "dir": tmp_path}


def eval_rag(files: dict[str, Path], kb: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("eval-rag", "--eval_mode", "retrieval", "--knowledge_base", str(kb), "--evaluation_set", str(files["q"]),
               "--gold_data_path", str(files["gold"]), "--predictions_path", str(files["pred"]),
               "--tokenizer", "regex", "--n_docs", "1", *extra)


KB_ROWS = [("Zebra", "zebra stripes are black and white"), ("Penguin", "a penguin is a bird that swims")]


@pytest.mark.parametrize(("name", "content", "extra"), [
    ("swapped.csv", "text,title\n" + "".join(f"{x},{t}\n" for t, x in KB_ROWS), ()),
    ("header.tsv", "title\ttext\n" + "".join(f"{t}\t{x}\n" for t, x in KB_ROWS), ()),
    ("my_knowledge_dataset.csv", "".join(f"{t}\t{x}\n" for t, x in KB_ROWS), ("--kb_columns", "title,text")),
])
def test_eval_rag_reads_kb_columns_by_name(evalrag_files: dict[str, Path], name: str, content: str,
                                           extra: tuple[str, ...]) -> None:
    kb = evalrag_files["dir"] / name
    kb.write_text(content, encoding="utf-8")
    proc = eval_rag(evalrag_files, kb, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "precision@1: 100.00 (2 questions)" in proc.stdout
    assert evalrag_files["pred"].read_text(encoding="utf-8") == "Zebra\nPenguin\n"


@pytest.mark.parametrize(("content", "extra", "message"), [
    ("foo,bar\nZebra,zebra stripes\n", (),
     "kb.csv:1: no header row naming the columns 'title' and 'text' (the first line holds 'foo', 'bar')"),
    ("Zebra,zebra stripes\nPenguin,a penguin\n", (), "the first line holds 'Zebra', 'zebra stripes'); add one, "
     "or name a headerless file's columns with --kb_columns title,text"),
    ("title,body\nZebra,zebra stripes\n", (), "(no 'text' column; the first line holds 'title', 'body')"),
    ("title,text\nZebra,zebra,stripes\n", (), "kb.csv:2: expected 2 columns (title, text), got 3"),
    ("title,text\nZebra,zebra stripes\n", ("--kb_columns", "title,text"), "kb.csv:1: the first line is a header"),
])
def test_eval_rag_bad_kb_is_refused(evalrag_files: dict[str, Path], content: str, extra: tuple[str, ...],
                                    message: str) -> None:
    kb = evalrag_files["dir"] / "kb.csv"
    kb.write_text(content, encoding="utf-8")
    line = one_error_line(eval_rag(evalrag_files, kb, *extra))
    assert message in line
    assert not evalrag_files["pred"].exists()


def test_eval_rag_kb_columns_flag_is_checked(evalrag_files: dict[str, Path]) -> None:
    kb = evalrag_files["dir"] / "kb.csv"
    kb.write_text("Zebra,zebra stripes\n", encoding="utf-8")
    proc = eval_rag(evalrag_files, kb, "--kb_columns", "name,text")
    assert proc.returncode == 2 and "--kb_columns: expected comma-separated column names with 'title' and 'text'" in proc.stderr
    assert "Traceback" not in proc.stderr and not evalrag_files["pred"].exists()


# --- qrels and run files: one format per file ------------------------------------------------

TREC_QRELS = "q1 0 d1 1\nq1 0 d2 0\n42 0 1817 2\n42 0 1818 1\n"
BEIR_QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n42\t1817\t2\n42\t1818\t1\n"
RUN = "q1 Q0 d1 1 3.5 t\nq1 Q0 d2 2 1.25 t\n42 Q0 1817 1 7 t\n42 Q0 1818 2 2 t\n"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("qrels", [TREC_QRELS, BEIR_QRELS, TREC_QRELS.replace(" ", "\t")])
def test_score_reads_trec_and_beir_qrels_alike(tmp_path: Path, qrels: str) -> None:
    proc = cli("score", "--run", write(tmp_path, "r.trec", RUN), "--qrels", write(tmp_path, "q.txt", qrels),
               "--metrics", "hit@1", "mrr@10")
    assert proc.returncode == 0, proc.stderr
    cells = [[c.strip() for c in line.split("│") if c.strip()] for line in proc.stdout.splitlines() if "@" in line]
    assert cells == [["hit@1", "1.0000", "2"], ["mrr@10", "1.0000", "2"]]


@pytest.mark.parametrize(("name", "qrels", "message"), [
    # TREC qrels cut by `head -c`: the last line lost its grade; it is not document 0 of grade 1817
    ("cut.trec", TREC_QRELS[:29], "cut.trec:3: expected 4 columns (qid, iter, docid, grade) of TREC qrels, "
     "the format of line 1, got 3: '42 0 1817'"),
    ("mixed.tsv", BEIR_QRELS + "q1 0 d3 1\n", "mixed.tsv:6: expected 3 tab-separated columns (query-id, corpus-id, "
     "score) of BEIR qrels, the format of line 1, got 1: 'q1 0 d3 1'"),
    ("mixed.trec", TREC_QRELS + "q1\td3\t1\n", "mixed.trec:5: expected 4 columns (qid, iter, docid, grade) of TREC "
     "qrels, the format of line 1, got 3"),
    ("noheader.tsv", "q1\td1\t1\n", "noheader.tsv:1: unrecognised qrels format (3 columns need the BEIR header line"),
    ("run.trec", RUN, "run.trec:1: unrecognised qrels format (this looks like a TREC run"),
    ("grade.trec", "q1 0 d1 1\nq1 0 d2 high\n", "grade.trec:2: score 'high' is not an integer grade: 'q1 0 d2 high'"),
    ("half.trec", "q1 0 d1 1\nq1 0 d2 1.5\n", "half.trec:2: score '1.5' is not an integer grade"),
    ("header.tsv", "query-id\tcorpus-id\n", "header.tsv:1: a BEIR qrels header has 3 columns"),
])
def test_score_refuses_a_qrels_line_off_its_format(tmp_path: Path, name: str, qrels: str, message: str) -> None:
    proc = cli("score", "--run", write(tmp_path, "r.trec", RUN), "--qrels", write(tmp_path, name, qrels))
    assert message in one_error_line(proc)
    assert proc.stdout == ""


def test_qrels_header_variants_and_integral_grades(tmp_path: Path) -> None:
    """A BOM, a ``query_id`` header split by spaces and grades written ``2.0`` read as BEIR does."""
    path = tmp_path / "q.tsv"
    path.write_text("\ufeffquery_id corpus_id score\nq1 d1 2.0\nq1 d2 0\n", encoding="utf-8")
    assert read_qrels_tsv(path) == {"q1": {"d1": 2, "d2": 0}}
    path.write_bytes(b"q1 0 d1 1\nq1 0 \xff 1\n")
    with pytest.raises(OdqaBenchError, match=r"q\.tsv: not UTF-8 text"):
        read_qrels_tsv(path)


@pytest.mark.parametrize(("run", "message"), [
    (RUN[:47], "cut.trec:3: expected 6 columns 'qid Q0 docid rank score tag' of a TREC run, got 4: '42 Q0 1817 1'"),
    (RUN + "q1 0 d3 1\n", "cut.trec:5: expected 6 columns 'qid Q0 docid rank score tag' of a TREC run, got 4"),
    (RUN.replace("2 1.25", "second 1.25"), "cut.trec:2: rank 'second' is not an integer"),
    (RUN.replace("1.25", "nan"), "cut.trec:2: score 'nan' is not a number"),
])
def test_score_and_compare_refuse_a_run_line_off_its_format(tmp_path: Path, run: str, message: str) -> None:
    qrels, good, bad = write(tmp_path, "q.trec", TREC_QRELS), write(tmp_path, "r.trec", RUN), write(tmp_path, "cut.trec", run)
    assert message in one_error_line(cli("score", "--run", bad, "--qrels", qrels))
    assert message in one_error_line(cli("compare", "--baseline", good, "--candidate", bad, "--qrels", qrels))


# Any cut of a valid file either reads as the judgments (or ranked documents) of its first lines,
# or is refused: never a document or grade that the file does not hold. Grades are single digits,
# as TREC and BEIR grades are (a cut inside a multi-digit last column would still read as a number).
IDS = st.text("0123456789abcdef-", min_size=1, max_size=6)
JUDGMENTS = st.lists(st.tuples(IDS, IDS, st.integers(-1, 3)), min_size=1, max_size=12,
                     unique_by=lambda t: (t[0], t[1]))


def _cut(tmp_path: Path, text: str, at: int) -> Path:
    data = text.encode("utf-8")
    path = tmp_path / "cut.txt"
    path.write_bytes(data[: at % (len(data) + 1)])
    return path


@settings(max_examples=300, deadline=None)
@given(JUDGMENTS, st.booleans(), st.integers(0, 10_000))
def test_a_cut_qrels_file_reads_as_a_prefix_or_is_refused(tmp_path_factory: pytest.TempPathFactory,
                                                          rows: list[tuple[str, str, int]], beir: bool, at: int) -> None:
    if beir:
        text = "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in rows)
    else:
        text = "".join(f"{q} 0 {d} {g}\n" for q, d, g in rows)
    path = _cut(tmp_path_factory.mktemp("qrels"), text, at)
    try:
        qrels = read_qrels_tsv(path)
    except OdqaBenchError as exc:
        assert str(exc).startswith(f"{path}"), exc
        return
    got = {(q, d, g) for q, rel in qrels.items() for d, g in rel.items()}
    assert got == set(rows[: len(got)])


RUN_ROWS = st.lists(st.tuples(IDS, IDS, st.floats(-50, 50, allow_nan=False)), min_size=1, max_size=12,
                    unique_by=lambda t: (t[0], t[1]))


@settings(max_examples=300, deadline=None)
@given(RUN_ROWS, st.integers(0, 10_000))
def test_a_cut_run_file_reads_as_a_prefix_or_is_refused(tmp_path_factory: pytest.TempPathFactory,
                                                        rows: list[tuple[str, str, float]], at: int) -> None:
    text = "".join(f"{q} Q0 {d} {r} {s:.10g} tag\n" for r, (q, d, s) in enumerate(rows, 1))
    path = _cut(tmp_path_factory.mktemp("run"), text, at)
    try:
        run = Run.read_trec(path)
    except OdqaBenchError as exc:
        assert str(exc).startswith(f"{path}"), exc
        return
    got = {(q, d, s) for q, docs in run.to_dict().items() for d, s in docs.items()}
    assert got == {(q, d, float(f"{s:.10g}")) for q, d, s in rows[: len(got)]}


# --- one run-file format: `run --json` is read by `report` and `baseline update` ---------------

def test_run_json_is_a_run_file_for_report_and_baseline_update(tmp_path: Path) -> None:
    import csv

    import numpy as np

    from odqa_core.data import load_dataset
    from odqa_core.metrics import evaluate
    from odqa_core.report.runfile import load_run
    from odqa_core.retrieval import get_retriever, retrieve

    root = Path(__file__).resolve().parent.parent
    saved = tmp_path / "run.json"
    proc = cli("run", "--dataset", "default", "--retriever", "bm25", "--tokenizer", "regex", "--k", "1", "10",
               "--json", str(saved))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {saved}" in proc.stdout
    records = load_run(saved)
    ds = load_dataset("default")
    expected = evaluate(retrieve(get_retriever("bm25", tokenizer="regex").index(ds.corpus), ds, 10), ds.qrels,
                        ["hit@1", "ndcg@10"])
    by_key = {(r.cell, r.metric): r for r in records}
    assert {r.suite for r in records} == {"run"} and {r.dataset_sha256 for r in records} == {ds.sha256}
    assert {r.cell for r in records} == {"run[bm25-regex/default/k=1]", "run[bm25-regex/default/k=10]"}
    for cell, metric in (("run[bm25-regex/default/k=1]", "hit@1"), ("run[bm25-regex/default/k=10]", "ndcg@10")):
        rec = by_key[(cell, metric)]
        assert np.allclose(rec.per_query, expected[metric]) and rec.value == pytest.approx(expected[metric].mean())
        assert rec.query_ids is not None and len(rec.query_ids) == len(rec.per_query)

    gate = ("--project", str(root), "--baseline-dir", str(tmp_path / "bl"))
    proc = cli("baseline", "update", "--run", str(saved), *gate)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bl" / "quick" / "run.json").is_file()
    proc = cli("report", "--run", str(saved), "--out", str(tmp_path / "rep"), *gate)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "rep" / "comparison.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(records) and {r["status"] for r in rows} == {"unchanged"}
    assert {int(r["n"]) for r in rows} == {len(by_key[("run[bm25-regex/default/k=1]", "hit@1")].per_query)}
