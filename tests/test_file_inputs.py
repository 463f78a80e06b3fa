"""Files users hand the CLI, end to end in a subprocess: a knowledge base is read by its header's
column names, and a bad file gets one error line, exit 2 and nothing written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


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
