"""Named tokenizers on Korean and English text, their fingerprints and the token cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from odqa_core.errors import OdqaBenchError
from odqa_core.text import LUCENE_STOPWORDS, TOKENIZERS, get_tokenizer, tokenize_cached
from odqa_core.text import cache as text_cache

EN = "The Studies of Korea's 2 largest cities"
KO = "세종대왕은 1443년에 한글을 창제하였다"


def test_regex_english_and_korean() -> None:
    tok = get_tokenizer("regex")
    assert tok([EN, KO]) == [
        ["the", "studies", "of", "korea", "s", "2", "largest", "cities"],
        ["세종대왕은", "1443년에", "한글을", "창제하였다"],
    ]


def test_regex_stop_drops_lucene_stopwords_and_possessives() -> None:
    tok = get_tokenizer("regex-stop")
    assert tok([EN, KO]) == [
        ["studies", "korea", "2", "largest", "cities"],
        ["세종대왕은", "1443년에", "한글을", "창제하였다"],
    ]
    assert tok(["U.S. e.g. it's 3.5"]) == [["u.s", "e.g", "3.5"]]  # "it" is a stopword once 's is dropped


def test_regex_stem_stems_and_drops_stopwords() -> None:
    tok = get_tokenizer("regex-stem")
    out = tok([EN, "running runs ran", "such a thing is not there"])
    assert out[0] == ["studi", "korea", "2", "largest", "citi"]
    assert out[1] == ["run", "run", "ran"]
    assert out[2] == ["thing"]
    assert not set(out[0]) & LUCENE_STOPWORDS
    assert len(LUCENE_STOPWORDS) == 33
    assert tok([KO]) == [["세종대왕은", "1443년에", "한글을", "창제하였다"]]


def test_kiwi_korean_keeps_nouns_drops_particles() -> None:
    tok = get_tokenizer("kiwi")
    (ko,) = tok([KO])
    assert {"한글", "창제", "1443"} <= set(ko)
    assert "세종대왕" in ko or {"세종", "대왕"} <= set(ko)
    for particle in ("은", "을", "에", "는", "이"):
        assert particle not in ko
    (ko2,) = tok(["서울은 대한민국의 수도이다"])
    assert {"서울", "대한민국", "수도"} <= set(ko2)
    assert not {"은", "의", "이", "다"} & set(ko2)  # particles, copula and ending dropped
    (en,) = tok(["Seoul is the Capital of Korea"])
    assert {"seoul", "capital", "korea"} <= set(en)
    assert all(t == t.lower() for t in en)


def test_char_ngrams() -> None:
    c2, c3 = get_tokenizer("char2"), get_tokenizer("char3")
    assert c2(["가 나다라 AB"]) == [["가", "나다", "다라", "ab"]]
    assert c2(["세종"]) == [["세종"]]
    assert c3(["가 나다 한국어다"]) == [["가", "나다", "한국어", "국어다"]]
    assert c3(["Cities!"]) == [["cit", "iti", "tie", "ies"]]


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_every_tokenizer_handles_both_languages(name: str) -> None:
    tok = get_tokenizer(name)
    out = tok([EN, KO, "", "!!!"])
    assert len(out) == 4
    assert out[0] and out[1]
    assert out[2] == [] and out[3] == []
    assert all(isinstance(t, str) and t and t == t.lower() for row in out for t in row)
    assert tok([KO, EN]) == [out[1], out[0]]  # per-text, order-independent
    assert get_tokenizer(name) is tok


def test_unknown_tokenizer_lists_known_names() -> None:
    with pytest.raises(OdqaBenchError, match="unknown tokenizer 'mecab'; known: regex, regex-stop, regex-stem, kiwi, char2, char3"):
        get_tokenizer("mecab")


def test_fingerprints_differ() -> None:
    prints = {name: get_tokenizer(name).fingerprint for name in TOKENIZERS}
    assert len(set(prints.values())) == len(prints)
    assert all(prints.values())


def test_tokenize_cached_hits_disk(tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_cache, "MIN_CACHED", 2)
    calls: list[int] = []
    base = get_tokenizer("regex")

    class Counting:
        name = "counting"
        fingerprint = base.fingerprint + ":counting"

        def __call__(self, texts: list[str]) -> list[list[str]]:
            calls.append(len(texts))
            return base(texts)

    tok = Counting()
    texts = ["alpha beta", "gamma", "delta epsilon"]
    first = tokenize_cached(tok, texts)
    second = tokenize_cached(tok, texts)
    assert first == second == base(texts)
    assert calls == [3]
    assert list(tmp_cache.joinpath("tokens").glob("*.pkl"))
    tokenize_cached(tok, texts + ["zeta"])
    assert calls == [3, 4]


def test_cached_token_lists_share_one_string_per_token(tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_cache, "MIN_CACHED", 2)
    tok = get_tokenizer("regex")
    texts = ["alpha beta alpha", "beta " + "gam" + "ma", "gamma alpha"]
    for docs in (tokenize_cached(tok, texts), tokenize_cached(tok, texts)):  # built, then read from disk
        assert docs == tok(texts)
        assert docs[0][0] is docs[0][2] is docs[2][1]
        assert docs[0][1] is docs[1][0] and docs[1][1] is docs[2][0]
