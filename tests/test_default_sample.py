"""Sanity checks for the bundled bilingual (Korean + English) default QA sample.

Uses only the standard library so it can run before the package is importable.
"""

import json
import re
from pathlib import Path

SAMPLE = (
    Path(__file__).resolve().parents[1]
    / "odqa_core"
    / "data"
    / "samples"
    / "default.json"
)

HANGUL = re.compile(r"[\uac00-\ud7a3]")
LATIN = re.compile(r"[A-Za-z]")


def _load():
    with SAMPLE.open(encoding="utf-8") as f:
        return json.load(f)


def _paragraphs(doc):
    for article in doc["data"]:
        for para in article["paragraphs"]:
            yield article, para


def _questions(doc):
    for _, para in _paragraphs(doc):
        for qa in para["qas"]:
            yield para, qa


def test_top_level_shape():
    doc = _load()
    assert isinstance(doc.get("version"), str) and doc["version"]
    assert isinstance(doc.get("data"), list) and doc["data"]
    for article in doc["data"]:
        assert isinstance(article["title"], str) and article["title"]
        assert isinstance(article["paragraphs"], list) and article["paragraphs"]


def test_counts():
    doc = _load()
    assert sum(1 for _ in _paragraphs(doc)) >= 60
    assert sum(1 for _ in _questions(doc)) >= 40


def test_unique_question_ids():
    ids = [qa["id"] for _, qa in _questions(_load())]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, str) and i for i in ids)


def test_answer_offsets_exact():
    for para, qa in _questions(_load()):
        ctx = para["context"]
        assert qa["answers"], qa["id"]
        for ans in qa["answers"]:
            text, start = ans["text"], ans["answer_start"]
            assert isinstance(start, int) and start >= 0, qa["id"]
            assert text, qa["id"]
            assert ctx[start:start + len(text)] == text, qa["id"]


def test_bilingual_questions():
    qs = [qa["question"] for _, qa in _questions(_load())]
    hangul = [q for q in qs if HANGUL.search(q)]
    latin = [q for q in qs if not HANGUL.search(q) and LATIN.search(q)]
    assert len(hangul) >= 15
    assert len(latin) >= 15
