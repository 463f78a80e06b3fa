"""Data loaders: SQuAD/KorQuAD JSON, BEIR folders, eval_rag files, KB CSV/TSV and the named
datasets, including every kind of bad input a user can hand them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from odqa_core.data import load_beir, load_dataset, load_kb, load_squad, split_words
from odqa_core.data.evalrag import read_gold_answers, read_gold_titles, read_questions
from odqa_core.data.registry import verify_checksums
from odqa_core.errors import OdqaBenchError
from odqa_core.io import sha256_file

FIXTURES = Path(__file__).resolve().parent / "data"
BEIR_TINY = FIXTURES / "beir_tiny"
SQUAD_TINY = FIXTURES / "squad_tiny.json"


def _copy_beir(tmp_path: Path) -> Path:
    dst = tmp_path / "beir"
    shutil.copytree(BEIR_TINY, dst)
    return dst


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _squad_obj(paragraphs: list[tuple[str, list[str]]], title: str = "T") -> dict:
    """A one-article SQuAD object; each paragraph lists its question ids."""
    return {"data": [{"title": title, "paragraphs": [
        {"context": ctx, "qas": [{"id": q, "question": f"question {q}?", "answers": [{"text": "x", "answer_start": 0}]}
                                 for q in qids]}
        for ctx, qids in paragraphs]}]}


# --- SQuAD / KorQuAD -------------------------------------------------------------------------

def test_squad_doc_ids_qrels_answers_and_titles() -> None:
    ds = load_squad(SQUAD_TINY)
    assert ds.name == "squad_tiny"
    assert ds.corpus.ids == ["0-0", "0-1", "1-0"]
    assert ds.corpus.titles == ["King Sejong", "King Sejong", "제주도"]
    assert ds.corpus.groups == ["King_Sejong", "King_Sejong", "제주도"]
    assert ds.query_ids == ["s1", "s2", "s3", "s4"]
    assert ds.qrels == {"s1": {"0-0": 1}, "s2": {"0-0": 1}, "s3": {"0-1": 1}, "s4": {"1-0": 1}}
    assert ds.answers["s1"] == ["Sejong the Great", "Sejong"]
    assert ds.answers["s4"] == ["제주도"]
    assert ds.corpus.texts[2] == "제주도는 대한민국에서 가장 큰 섬이다."
    assert len(ds.sha256) == 64 and ds.sha256 == sha256_file(SQUAD_TINY)


def test_squad_ids_are_stable_across_loads(tmp_path: Path) -> None:
    copy = tmp_path / "again.json"
    shutil.copy(SQUAD_TINY, copy)
    a, b = load_squad(SQUAD_TINY), load_squad(copy)
    assert a.corpus.ids == b.corpus.ids and a.qrels == b.qrels and a.sha256 == b.sha256


def test_squad_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(OdqaBenchError, match="nope.json: file not found"):
        load_squad(path)


def test_squad_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n  {"title": "x",\n  "paragraphs": [}\n]}', encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"bad\.json: malformed JSON at line 3"):
        load_squad(path)


def test_squad_not_squad_shape(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match="list.json: not SQuAD format"):
        load_squad(path)
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}), encoding="utf-8")
    with pytest.raises(OdqaBenchError, match="list.json: not SQuAD format .*context"):
        load_squad(path)


def test_squad_duplicate_question_ids(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(_squad_obj([("a", ["q1"]), ("b", ["q1"])])), encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"dup\.json: duplicate query ids, e\.g\. \['q1'\]"):
        load_squad(path)


def test_squad_empty_corpus_and_no_queries(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"data": []}), encoding="utf-8")
    with pytest.raises(OdqaBenchError, match="empty.json: the corpus is empty"):
        load_squad(empty)
    noq = tmp_path / "noq.json"
    noq.write_text(json.dumps(_squad_obj([("a", [])])), encoding="utf-8")
    with pytest.raises(OdqaBenchError, match="noq.json: no queries"):
        load_squad(noq)


# --- BEIR ------------------------------------------------------------------------------------

def test_beir_header_grades_and_judged_queries() -> None:
    ds = load_beir(BEIR_TINY)
    assert ds.name == "beir_tiny"
    assert ds.corpus.ids == ["doc1", "doc2", "doc3", "doc4"]  # the blank line is skipped
    assert ds.corpus.titles[2] == "" and ds.corpus.joined()[2] == "Kimchi is a fermented side dish."
    assert ds.corpus.joined()[0] == "Seoul Seoul is the capital of South Korea."
    assert ds.query_ids == ["q1", "q2", "q4"]  # q3 has no judgments
    assert ds.query_texts == ["What is the capital of South Korea?", "Who created Hangul?",
                              "Which cities are in South Korea?"]
    assert ds.qrels == {"q1": {"doc1": 2, "doc2": 0}, "q2": {"doc4": 1}, "q4": {"doc1": 1, "doc2": 3}}
    assert "query-id" not in ds.qrels


def test_beir_trec_four_column_qrels() -> None:
    ds = load_beir(BEIR_TINY, split="trec")
    assert ds.query_ids == ["q1", "q2"]
    assert ds.qrels == {"q1": {"doc1": 2}, "q2": {"doc4": 1, "doc3": -1}}


def test_beir_sha_changes_with_content(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    before = load_beir(folder).sha256
    with open(folder / "qrels" / "test.tsv", "a", encoding="utf-8") as fh:
        fh.write("q2\tdoc3\t1\n")
    after = load_beir(folder)
    assert after.sha256 != before and after.qrels["q2"] == {"doc4": 1, "doc3": 1}


def test_beir_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(OdqaBenchError, match="BEIR folder not found"):
        load_beir(tmp_path / "absent")
    folder = _copy_beir(tmp_path)
    (folder / "queries.jsonl").unlink()
    with pytest.raises(OdqaBenchError, match=r"queries\.jsonl: file not found"):
        load_beir(folder)


def test_beir_malformed_jsonl_line_number(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    lines = (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = '{"_id": "doc2", "text": "unterminated'
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"corpus\.jsonl:2: malformed JSON line"):
        load_beir(folder)


def test_beir_jsonl_line_not_an_object(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    with open(folder / "queries.jsonl", "a", encoding="utf-8") as fh:
        fh.write('["q9", "text"]\n')
    with pytest.raises(OdqaBenchError, match=r"queries\.jsonl:5: expected a JSON object"):
        load_beir(folder)


def test_beir_missing_field(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    _write_jsonl(folder / "corpus.jsonl", [{"title": "no id", "text": "t"}])
    with pytest.raises(OdqaBenchError, match="lacks the field '_id'"):
        load_beir(folder)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("q1\tdoc1\n", r"test\.tsv:3: expected 3 tab-separated columns .* got 2"),
        ("q1\tdoc1\tyes\n", r"test\.tsv:3: score 'yes' is not a"),
        ("q1\tdoc1\tinf\n", r"test\.tsv:3: score 'inf' is not a"),
    ],
)
def test_beir_bad_qrels_rows(tmp_path: Path, row: str, match: str) -> None:
    folder = _copy_beir(tmp_path)
    (folder / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq1\tdoc1\t1\n{row}", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=match):
        load_beir(folder)


def test_beir_duplicate_doc_ids(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    with open(folder / "corpus.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"_id": "doc2", "title": "again", "text": "duplicate"}\n')
    with pytest.raises(OdqaBenchError, match=r"beir: duplicate document ids, e\.g\. \['doc2'\]"):
        load_beir(folder)


def test_beir_duplicate_query_ids(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    with open(folder / "queries.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"_id": "q2", "text": "a second q2"}\n')
    with pytest.raises(OdqaBenchError, match=r"queries\.jsonl: duplicate query ids, e\.g\. \['q2'\]"):
        load_beir(folder)


def test_beir_qrels_unknown_docs(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    with open(folder / "qrels" / "test.tsv", "a", encoding="utf-8") as fh:
        fh.write("q1\tdoc99\t1\n")
    with pytest.raises(OdqaBenchError, match=r"beir: qrels name unknown documents, e\.g\. \['doc99'\]"):
        load_beir(folder)


def test_beir_qrels_unknown_queries(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    with open(folder / "qrels" / "test.tsv", "a", encoding="utf-8") as fh:
        fh.write("q77\tdoc1\t1\n")
    with pytest.raises(OdqaBenchError, match=r"qrels/test\.tsv: qrels name unknown queries, e\.g\. \['q77'\]"):
        load_beir(folder)


def test_beir_empty_corpus(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    (folder / "corpus.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match="beir: the corpus is empty"):
        load_beir(folder)


def test_beir_no_judged_queries(tmp_path: Path) -> None:
    folder = _copy_beir(tmp_path)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match="beir: no queries with relevance judgments"):
        load_beir(folder)


def test_load_dataset_by_path_dispatches(tmp_path: Path) -> None:
    assert load_dataset(str(BEIR_TINY)).query_ids == ["q1", "q2", "q4"]
    assert load_dataset(str(SQUAD_TINY)).n_queries == 4
    other = tmp_path / "data.xml"
    other.write_text("<x/>", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match="data.xml: unsupported dataset file"):
        load_dataset(str(other))
    with pytest.raises(OdqaBenchError, match="unknown dataset 'no-such-set'; known: default, korquad-dev"):
        load_dataset("no-such-set")


# --- eval_rag files --------------------------------------------------------------------------

def test_evalrag_questions_and_titles(tmp_path: Path) -> None:
    q = tmp_path / "test.source"
    q.write_text("who wrote hamlet\nwhat is kimchi\n", encoding="utf-8")
    g = tmp_path / "test.gold"
    g.write_text("Hamlet\tWilliam Shakespeare\nKimchi\n", encoding="utf-8")
    assert read_questions(q) == ["who wrote hamlet", "what is kimchi"]
    assert read_gold_titles(g, n_expected=2) == [["Hamlet", "William Shakespeare"], ["Kimchi"]]
    with pytest.raises(OdqaBenchError, match=r"test\.gold: 2 gold lines for 3 questions"):
        read_gold_titles(g, n_expected=3)


def test_evalrag_question_errors(tmp_path: Path) -> None:
    q = tmp_path / "q.source"
    q.write_text("first\n\nthird\n", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"q\.source:2: empty question line"):
        read_questions(q)
    q.write_text("", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"q\.source: no questions"):
        read_questions(q)
    with pytest.raises(OdqaBenchError, match=r"absent\.source: file not found"):
        read_questions(tmp_path / "absent.source")


def test_evalrag_qa_mode_parses_lists_safely(tmp_path: Path) -> None:
    g = tmp_path / "gold.qa"
    g.write_text("who wrote hamlet\t['William Shakespeare', 'Shakespeare']\n"
                 "what is 'kimchi'\t[\"fermented cabbage\"]\n", encoding="utf-8")
    assert read_gold_answers(g, "qa", n_expected=2) == [["William Shakespeare", "Shakespeare"], ["fermented cabbage"]]
    with pytest.raises(OdqaBenchError, match=r"gold\.qa: 2 gold lines for 1 questions"):
        read_gold_answers(g, "qa", n_expected=1)
    evil = tmp_path / "evil.qa"
    marker = tmp_path / "marker"
    evil.write_text(f"q\t__import__('pathlib').Path({str(marker)!r}).touch()\n", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"evil\.qa:1: cannot parse the answer list"):
        read_gold_answers(evil, "qa")
    assert not marker.exists()


def test_evalrag_ans_mode(tmp_path: Path) -> None:
    g = tmp_path / "gold.ans"
    g.write_text("William Shakespeare\n fermented cabbage \n", encoding="utf-8")
    assert read_gold_answers(g, "ans") == [["William Shakespeare"], ["fermented cabbage"]]
    with pytest.raises(OdqaBenchError, match=r"gold\.ans: 2 gold lines for 3 questions"):
        read_gold_answers(g, "ans", n_expected=3)
    with pytest.raises(OdqaBenchError, match="unknown gold_data_mode 'json'"):
        read_gold_answers(g, "json")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("q\t['a', \n", r"gold\.qa:2: cannot parse the answer list"),
        ("q\t[1, 2]\n", r"gold\.qa:2: the answer column must be a list of strings"),
        ("q\t'just a string'\n", r"gold\.qa:2: the answer column must be a list of strings"),
        ("q without a tab\n", r"gold\.qa:2: expected 2 tab-separated columns .* got 1"),
    ],
)
def test_evalrag_qa_mode_bad_lines(tmp_path: Path, line: str, match: str) -> None:
    g = tmp_path / "gold.qa"
    g.write_text("ok\t['a']\n" + line, encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=match):
        read_gold_answers(g, "qa")


# --- knowledge-base CSV/TSV ------------------------------------------------------------------

@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize(("suffix", "delim"), [(".csv", ","), (".tsv", "\t")])
def test_kb_with_and_without_header(tmp_path: Path, header: bool, suffix: str, delim: str) -> None:
    path = tmp_path / f"kb{suffix}"
    rows = [["Seoul", "Seoul is the capital"], ["Kimchi", "fermented cabbage"]]
    lines = ([["title", "text"]] if header else []) + rows
    path.write_text("".join(delim.join(r) + "\n" for r in lines), encoding="utf-8")
    columns = None if header else ["title", "text"]
    if not header:
        with pytest.raises(OdqaBenchError, match=rf"kb\{suffix}:1: no header row naming the columns 'title' and 'text'"):
            load_kb(path)
    corpus, sha = load_kb(path, columns=columns)
    assert corpus.titles == ["Seoul", "Kimchi"]
    assert corpus.texts == ["Seoul is the capital", "fermented cabbage"]
    assert corpus.ids == ["1-0", "2-0"]  # data rows: the same ids with or without a header
    assert sha == sha256_file(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(delim.join(["Busan", "port", "city"]) + "\n")
    with pytest.raises(OdqaBenchError, match=rf"kb\{suffix}:{len(lines) + 1}: expected 2 columns"):
        load_kb(path, columns=columns)


@pytest.mark.parametrize("delim", [",", "\t"])
def test_kb_columns_by_header_name(tmp_path: Path, delim: str) -> None:
    """Columns are found by name in any order, extra columns ignored; the header never becomes a passage."""
    path = tmp_path / "kb.csv"
    lines = [["id", "Text ", "TITLE"], ["7", "Seoul is the capital", "Seoul"], ["8", "fermented cabbage", "Kimchi"]]
    path.write_text("\ufeff" + "".join(delim.join(r) + "\n" for r in lines), encoding="utf-8")
    corpus, _ = load_kb(path)
    assert corpus.titles == ["Seoul", "Kimchi"]
    assert corpus.texts == ["Seoul is the capital", "fermented cabbage"]
    headless = tmp_path / "headless.csv"
    headless.write_text("".join(delim.join(r) + "\n" for r in lines[1:]), encoding="utf-8")
    assert load_kb(headless, columns=["id", "text", "title"])[0].titles == ["Seoul", "Kimchi"]


@pytest.mark.parametrize(("content", "columns", "match"), [
    ("foo,bar\nSeoul,capital\n", None,
     r"kb\.csv:1: no header row naming the columns 'title' and 'text' \(the first line holds 'foo', 'bar'\)"),
    ("\ntitle,body\nSeoul,capital\n", None, r"kb\.csv:2: no header row .*\(no 'text' column; the first line holds"),
    ("title,text,title\nA,b,C\n", None, r"kb\.csv: the header row names the column 'title' 2 times"),
    ("text,title\nSeoul,capital\n", ["title", "text"], r"kb\.csv:1: the first line is a header .* drop --kb_columns"),
    ("Seoul,capital\n", ["name", "text"], r"column names 'name', 'text' lack 'title' or 'text'"),
])
def test_kb_header_refused(tmp_path: Path, content: str, columns: list[str] | None, match: str) -> None:
    path = tmp_path / "kb.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=match):
        load_kb(path, columns=columns)


def test_kb_rag_recipe_tsv(tmp_path: Path) -> None:
    """The RAG recipe's knowledge file: tab-separated under a .csv name, no header, a quoted title."""
    path = tmp_path / "my_knowledge_dataset.csv"
    path.write_text('Aaron\tAaron is a prophet, high priest (or "Aharon").\n"Pokemon"\tPokemon, a "franchise".\n',
                    encoding="utf-8")
    corpus, _ = load_kb(path, columns=["title", "text"])
    assert corpus.titles == ["Aaron", "Pokemon"]
    assert corpus.texts == ['Aaron is a prophet, high priest (or "Aharon").', 'Pokemon, a "franchise".']


def test_kb_csv_quoting_and_split(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    long_text = " ".join(f"w{i}" for i in range(250))
    path.write_text(f'title,text\n"Comma, Title","{long_text}"\n', encoding="utf-8")
    corpus, _ = load_kb(path, split=100)
    assert corpus.ids == ["1-0", "1-1", "1-2"]
    assert corpus.titles == ["Comma, Title"] * 3
    assert [len(t.split()) for t in corpus.texts] == [100, 100, 50]
    assert corpus.texts[1].split()[0] == "w100"


def test_kb_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_text("title,text\nA,alpha\nB,beta,extra\n", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"kb\.csv:3: expected 2 columns \(title, text\), got 3"):
        load_kb(path)
    path.write_text("title,text\n\n", encoding="utf-8")
    with pytest.raises(OdqaBenchError, match=r"kb\.csv: the knowledge base is empty"):
        load_kb(path)
    with pytest.raises(OdqaBenchError, match=r"missing\.tsv: file not found"):
        load_kb(tmp_path / "missing.tsv")


def test_split_words() -> None:
    text = " ".join(str(i) for i in range(205))
    chunks = split_words(text)
    assert [len(c.split()) for c in chunks] == [100, 100, 5]
    assert " ".join(chunks).split() == text.split()
    assert split_words("a  b\n c", words=2) == ["a b", "c"]
    assert split_words("   ") == []


# --- named datasets --------------------------------------------------------------------------

def test_default_needs_no_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-data"
    empty.mkdir()
    monkeypatch.setenv("ODQA_DATA_DIR", str(empty))
    ds = load_dataset("default")
    assert len(ds.corpus) >= 60 and ds.n_queries >= 40
    assert all(ds.answers[q] for q in ds.query_ids)
    assert len(ds.sha256) == 64
    with pytest.raises(OdqaBenchError, match=r"KorQuAD_v1\.0_dev\.json: file not found"):
        load_dataset("korquad-dev")


def test_named_dataset_without_any_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODQA_DATA_DIR", str(tmp_path / "does-not-exist"))
    with pytest.raises(OdqaBenchError, match="dataset 'scifact' needs a data folder"):
        load_dataset("scifact")


def _fake_tree(tmp_path: Path, sums_for: str | None) -> Path:
    """A data folder whose korquad file is the tiny SQuAD file; SHA256SUMS lists ``sums_for``."""
    root = tmp_path / "data"
    (root / "korquad").mkdir(parents=True)
    shutil.copy(SQUAD_TINY, root / "korquad" / "KorQuAD_v1.0_dev.json")
    if sums_for is not None:
        (root / "SHA256SUMS").write_text(f"{sums_for}  korquad/KorQuAD_v1.0_dev.json\n", encoding="utf-8")
    return root


def test_verify_checksums_mismatch(tmp_path: Path) -> None:
    root = _fake_tree(tmp_path, "0" * 64)
    with pytest.raises(OdqaBenchError, match=r"KorQuAD_v1\.0_dev\.json: sha256 .* differs from SHA256SUMS"):
        verify_checksums(root, ["korquad/KorQuAD_v1.0_dev.json"])
    with pytest.raises(OdqaBenchError, match="differs from SHA256SUMS"):
        load_dataset("korquad-dev", root)


def test_verify_checksums_match_and_missing(tmp_path: Path) -> None:
    root = _fake_tree(tmp_path, sha256_file(SQUAD_TINY))
    verify_checksums(root, ["korquad/KorQuAD_v1.0_dev.json"])
    ds = load_dataset("korquad-dev", root)
    assert ds.name == "korquad-dev" and ds.n_queries == 4
    with pytest.raises(OdqaBenchError, match=r"kowiki_passages\.jsonl: file not found"):
        verify_checksums(root, ["kowiki_passages/kowiki_passages.jsonl"])


def test_verify_checksums_real_sums(data_root: Path, tmp_path: Path) -> None:
    """The real SHA256SUMS refuses an edited copy of a real file."""
    rel = "beir/scifact/qrels/test.tsv"
    root = tmp_path / "copy"
    (root / "beir/scifact/qrels").mkdir(parents=True)
    shutil.copy(data_root / "SHA256SUMS", root / "SHA256SUMS")
    shutil.copy(data_root / rel, root / rel)
    verify_checksums(root, [rel])
    with open(root / rel, "a", encoding="utf-8") as fh:
        fh.write("1\t4983\t1\n")
    fresh = tmp_path / "copy2"
    shutil.copytree(root, fresh)  # a new folder: no cached hash for the edited file
    with pytest.raises(OdqaBenchError, match=r"test\.tsv: sha256 .* differs"):
        verify_checksums(fresh, [rel])


def test_named_korquad_dev(data_root: Path) -> None:
    ds = load_dataset("korquad-dev")
    assert (len(ds.corpus), ds.n_queries) == (964, 5774)
    assert all(len(rel) == 1 for rel in ds.qrels.values())
    assert all(ds.answers[q] for q in ds.query_ids)
    assert all("_" not in t for t in ds.corpus.titles)
    assert any("_" in g for g in ds.corpus.groups)
    assert ds.sha256 == "25ffeb51e6c51ec02c071b60a10188e10005c144110f0d876b26079d80a35bdf"


def test_named_scifact(data_root: Path) -> None:
    ds = load_dataset("scifact")
    assert (len(ds.corpus), ds.n_queries) == (5183, 300)
    assert sum(len(r) for r in ds.qrels.values()) == 339
    assert set(ds.qrels) == set(ds.query_ids)


def test_named_korquad_open(data_root: Path) -> None:
    ds = load_dataset("korquad-open")
    dev = load_dataset("korquad-dev")
    assert len(ds.corpus) == 964 + 29_702
    assert ds.corpus.ids[:964] == dev.corpus.ids
    assert all(i.startswith("kowiki-") for i in ds.corpus.ids[964:])
    assert ds.query_ids == dev.query_ids and ds.qrels == dev.qrels
