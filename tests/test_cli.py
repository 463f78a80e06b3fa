"""The CLI end to end: TREC export, score and compare round trips, and one-line errors."""
from __future__ import annotations

import subprocess
import sys

import pytest

from odqa_core.cli import main
from odqa_core.data import load_dataset
from odqa_core.metrics import evaluate
from odqa_core.retrieval import Run, get_retriever, retrieve


def test_export_then_score_equals_in_process_metrics(tmp_path, capsys):
    qrels, run_path = tmp_path / "q.trec", tmp_path / "r.trec"
    assert main(["export", "--dataset", "default", "--qrels", str(qrels), "--run", str(run_path), "--k", "50"]) == 0
    ds = load_dataset("default")
    run = retrieve(get_retriever("bm25", tokenizer="regex").index(ds.corpus), ds, 50)
    expected = evaluate(run, ds.qrels, ["ndcg@10"])["ndcg@10"].mean()
    back = Run.read_trec(run_path)
    from odqa_core.data.beir import read_qrels_tsv

    assert read_qrels_tsv(qrels) == ds.qrels
    assert abs(evaluate(back, ds.qrels, ["ndcg@10"])["ndcg@10"].mean() - expected) < 1e-9
    capsys.readouterr()
    assert main(["score", "--run", str(run_path), "--qrels", str(qrels), "--metrics", "ndcg@10"]) == 0
    assert f"{expected:.4f}" in capsys.readouterr().out


def test_compare_lists_worse_queries_with_ranks(tmp_path, capsys):
    qrels, a, b = tmp_path / "q.trec", tmp_path / "a.trec", tmp_path / "b.trec"
    main(["export", "--dataset", "default", "--qrels", str(qrels), "--run", str(a), "--tokenizer", "kiwi"])
    main(["export", "--dataset", "default", "--qrels", str(qrels), "--run", str(b), "--tokenizer", "char2"])
    capsys.readouterr()
    assert main(["compare", "--baseline", str(a), "--candidate", str(b), "--qrels", str(qrels),
                 "--metrics", "hit@1", "ndcg@10"]) == 0
    out = capsys.readouterr().out
    assert "hit@1" in out and "p adj" in out
    assert "rank" in out  # worse/better queries name their gold ranks


@pytest.mark.parametrize("args,message", [
    (["run", "--retriever", "nope"], "unknown retriever 'nope'"),
    (["run", "--retriever", "dense:model"], "is not key=value"),
    (["run", "--retriever", "bm25:k1=1.2,k1=0.9"], "'k1' given twice"),
    (["run", "--retriever", "bm25:kone=1.2"], "bad parameters"),
    (["run", "--dataset", "/nonexistent.json"], "file not found"),
    (["score", "--run", "/nonexistent.trec", "--qrels", "/nonexistent.tsv"], "file not found"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = subprocess.run([sys.executable, "-m", "odqa_core.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_ids_that_do_not_match_are_refused(tmp_path):
    run, qrels = tmp_path / "r.trec", tmp_path / "q.trec"
    run.write_text("x1 Q0 d1 1 1.0 t\n")
    qrels.write_text("q1 0 d1 1\n")
    proc = subprocess.run([sys.executable, "-m", "odqa_core.cli", "score", "--run", str(run), "--qrels", str(qrels)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no query id of the run appears in the qrels" in proc.stderr


def test_retriever_specs_carry_parameters(capsys):
    """``name:key=value`` reaches the retriever: bm25 with k1=0 ignores term frequency, which
    changes the table, and typed values parse as numbers and booleans."""
    from odqa_core.retrieval import parse_spec

    assert parse_spec("dense:model=e5-small,size=L12,max_length=256,show_progress=true,lam=1.1") == (
        "dense", {"model": "e5-small", "size": "L12", "max_length": 256, "show_progress": True, "lam": 1.1})
    assert main(["run", "--retriever", "bm25", "bm25:k1=0.0", "--tokenizer", "regex", "--k", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if " mrr " in line]
    assert len(rows) == 2 and "bm25:k1=0.0" in rows[1]
    assert rows[0].split()[-2] != rows[1].split()[-2]
