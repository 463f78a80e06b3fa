"""SQuAD-format JSON (SQuAD 1.1, KorQuAD 1.0): each paragraph is a passage, each question's
gold is its own paragraph plus its answer strings."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import OdqaBenchError
from ..io import read_input_bytes, sha256_bytes
from .types import Corpus, Dataset
from .validate import validate_dataset

__all__ = ["load_squad", "parse_squad"]


def _read_json(path: Path) -> tuple[object, bytes]:
    raw = read_input_bytes(path, "a SQuAD-format JSON file")
    try:
        return json.loads(raw.decode("utf-8")), raw
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", "?")
        raise OdqaBenchError(f"{path}: malformed JSON at line {line}: {getattr(exc, 'msg', exc)}") from None


def parse_squad(obj: object, name: str, source: str = "", sha256: str = "") -> Dataset:
    """Build a Dataset from an already-parsed SQuAD object; doc ids are ``<article>-<para>``
    positions (stable for a given file)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise OdqaBenchError(f"{source or name}: not SQuAD format (expected an object with a 'data' list)")
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    groups: list[str] = []
    qids: list[str] = []
    qtexts: list[str] = []
    qrels: dict[str, dict[str, int]] = {}
    answers: dict[str, list[str]] = {}
    try:
        for a, article in enumerate(obj["data"]):
            title = str(article.get("title", f"article-{a}"))
            for p, para in enumerate(article["paragraphs"]):
                doc_id = f"{a}-{p}"
                ids.append(doc_id)
                titles.append(title.replace("_", " "))
                texts.append(str(para["context"]))
                groups.append(title)
                for qa in para.get("qas", []):
                    qid = str(qa["id"])
                    qids.append(qid)
                    qtexts.append(str(qa["question"]))
                    qrels[qid] = {doc_id: 1}
                    answers[qid] = [str(x["text"]) for x in qa.get("answers", [])]
    except (KeyError, TypeError, AttributeError) as exc:
        raise OdqaBenchError(f"{source or name}: not SQuAD format (missing or wrong field {exc})") from None
    ds = Dataset(name, Corpus(ids, titles, texts, groups), qids, qtexts, qrels, answers, sha256, source)
    return validate_dataset(ds)


def load_squad(path: str | Path, name: str | None = None) -> Dataset:
    path = Path(path)
    obj, raw = _read_json(path)
    return parse_squad(obj, name or path.stem, str(path), sha256_bytes(raw))
