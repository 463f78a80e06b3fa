"""Retriever parameters typed by the factory's signature: command-line text parsed, Python values
checked, nested parameters, unknown names, the shared-helper filter and the ``retrievers`` list."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.errors import OdqaBenchError
from odqa_core.retrieval import accepted_params, get_retriever, known_retrievers, parse_spec, retriever_parameters
from odqa_core.retrieval.params import describe_type, parse_params
from odqa_core.retrieval.sparse import BM25, RankBM25

ROOT = Path(__file__).resolve().parent.parent
HYP = settings(max_examples=200, deadline=None, database=None, derandomize=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}  # help text on one line per option
    return subprocess.run([sys.executable, "-m", "odqa_core.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- text from a command line ---------------------------------------------------------------------

@HYP
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6), st.booleans())
def test_spec_values_become_the_declared_types(k1: float, shards: int, norms: bool) -> None:
    name, params = parse_spec(f"bm25:k1={k1!r},lucene_norms={str(norms).lower()},tokenizer=123")
    assert (name, params) == ("bm25", {"k1": k1, "lucene_norms": norms, "tokenizer": "123"})
    assert type(params["k1"]) is float and type(params["tokenizer"]) is str  # "123" stays text for a str
    assert parse_spec(f"ray:shards={shards}")[1] == {"shards": shards}


_SAFE = st.text(st.characters(blacklist_characters=",=", blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                min_size=1, max_size=12)


@HYP
@given(_SAFE.filter(lambda t: not _is_float(t)))
def test_a_value_that_is_not_the_type_names_parameter_type_and_value(text: str) -> None:
    with pytest.raises(OdqaBenchError) as exc:
        parse_spec(f"bm25:k1={text}")
    assert str(exc.value) == f"retriever 'bm25': parameter k1 expects float, got {text!r}"


@HYP
@given(_SAFE.filter(lambda t: t.lower() not in ("true", "false", "yes", "no", "on", "off", "1", "0")))
def test_bool_parameters_take_only_bool_words(text: str) -> None:
    with pytest.raises(OdqaBenchError, match="parameter lucene_norms expects bool"):
        parse_spec(f"bm25:lucene_norms={text}")


@pytest.mark.parametrize("spec, expected", [
    ("dense:max_length=none", {"max_length": None}),          # int | None
    ("dense:max_length=128,size=L12", {"max_length": 128, "size": "L12"}),
    ("dense:pooling=cls,sort_by_length=false", {"pooling": "cls", "sort_by_length": False}),  # **encoder_options: guessed
    ("hybrid:k1=1,b=0.5", {"k1": 1.0, "b": 0.5}),           # float | None takes an integer text as float
])
def test_optional_and_passed_on_values(spec: str, expected: dict) -> None:
    params = parse_spec(spec)[1]
    assert params == expected
    assert all(type(params[k]) is type(v) for k, v in expected.items())


@pytest.mark.parametrize("spec, message", [
    ("bm25:kone=1.2", "retriever 'bm25': bad parameters: unknown 'kone'; accepted: b, backend, k1, lucene_norms, name, "
                      "prune, tokenizer, variant"),
    ("dense:max_length=1.5", "parameter max_length expects int or None, got '1.5'"),
    ("ray:shards=two", "parameter shards expects int, got 'two'"),
    ("dpr:dataset=scifact", "parameter dataset expects Dataset or None, got 'scifact' (not settable on the command line)"),
    ("ray:inner_params=3", "(give its entries as inner.KEY=VALUE)"),
    ("bm25:foo.x=1", "'foo' takes no nested parameters"),
    ("nope:k=1", "unknown retriever 'nope'; known: bm25"),
])
def test_bad_specs_are_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(OdqaBenchError) as exc:
        parse_spec(spec)
    assert message in str(exc.value)


def test_unknown_names_list_exactly_the_signature() -> None:
    """The accepted list is the factory's own public parameters, not a hand-kept copy."""
    with pytest.raises(OdqaBenchError) as exc:
        parse_spec("bm25-rank:kone=1")
    public = sorted(p for p in inspect.signature(RankBM25).parameters if not p.startswith("_"))
    assert str(exc.value).endswith("accepted: " + ", ".join(public))


# --- nested parameters ----------------------------------------------------------------------------

def test_nested_parameters_go_to_the_inner_retriever_typed_by_it() -> None:
    assert parse_spec("ray:inner=bm25,inner.tokenizer=kiwi,inner.k1=1.2,shards=3") == (
        "ray", {"inner": "bm25", "shards": 3, "inner_params": {"tokenizer": "kiwi", "k1": 1.2}})
    # without inner=..., the default inner retriever (bm25) types the values
    assert parse_spec("ray:inner.k1=2")[1] == {"inner_params": {"k1": 2.0}}
    # a mapping named after a retriever (dpr's dense) is typed by that retriever
    assert parse_spec("dpr:dense.max_length=128,dense.index=hnsw,steps=none")[1] == {
        "steps": None, "dense": {"max_length": 128, "index": "hnsw"}}
    # a plain mapping (ray's actor options) takes guessed values
    assert parse_spec("ray:actor_options.memory=1000")[1] == {"actor_options": {"memory": 1000}}


@pytest.mark.parametrize("spec, message", [
    ("ray:inner=bm25,inner.k1=abc", "retriever 'ray': parameter inner.k1 expects float, got 'abc'"),
    ("ray:inner=tfidf,inner.k1=1", "retriever 'ray': bad parameters: unknown 'inner.k1'; accepted by 'tfidf': backend, "
                                   "name, prune, tokenizer"),
    ("dpr:dense.max_length=long", "retriever 'dpr': parameter dense.max_length expects int or None, got 'long'"),
    ("ray:inner_params.k1=1", "'inner_params' takes no nested parameters (nested ones: actor_options, inner)"),
])
def test_bad_nested_parameters(spec: str, message: str) -> None:
    with pytest.raises(OdqaBenchError) as exc:
        parse_spec(spec)
    assert str(exc.value) == message or message in str(exc.value)


# --- Python values --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params, message", [
    ("bm25", {"k1": "0.5"}, "retriever 'bm25': parameter k1 expects float, got '0.5'"),
    ("bm25", {"lucene_norms": 1}, "parameter lucene_norms expects bool, got 1"),
    ("ray", {"shards": True}, "parameter shards expects int, got True"),
    ("ray", {"inner": "bm25", "inner_params": {"k1": "x"}}, "retriever 'ray': parameter inner.k1 expects float"),
    ("ray", {"inner_params": {"kone": 1}}, "unknown 'inner.kone'; accepted by 'bm25'"),
])
def test_python_values_are_checked_not_converted(name: str, params: dict, message: str) -> None:
    with pytest.raises(OdqaBenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_retriever(name, **params)


def test_python_values_of_the_right_kind_pass_unchanged() -> None:
    r = get_retriever("bm25", k1=np.float32(1.5), b=1, lucene_norms=np.bool_(True))
    assert isinstance(r, BM25) and r.k1 == np.float32(1.5) and r.b == 1
    assert get_retriever("ray", shards=3, num_cpus=1).num_cpus == 1  # an int is a float


def test_describe_type_reads_like_the_signature() -> None:
    assert describe_type(float) == "float"
    assert describe_type(int | None) == "int or None"
    assert describe_type(Literal["a", "b"]) == "one of 'a', 'b'"
    assert parse_params("x", lambda mode="a": None, {"mode": "b"}, lambda _: None) == {"mode": "b"}

    def f(mode: Literal["a", "b"] = "a") -> None: ...

    with pytest.raises(OdqaBenchError, match="expects one of 'a', 'b', got 'c'"):
        parse_params("x", f, {"mode": "c"}, lambda _: None)


# --- helpers pass only what a factory accepts -----------------------------------------------------

def test_accepted_params_keeps_only_declared_names() -> None:
    offer = {"tokenizer": "kiwi"}
    assert accepted_params("bm25", offer) == offer
    assert accepted_params("dense", offer) == {}  # dense passes **encoder_options on, but takes no tokenizer
    assert accepted_params("ray", offer) == {}


def test_cached_run_builds_a_retriever_without_a_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """cached_run offers its tokenizer to every retriever; one that takes none still runs."""
    from odqa_core import bench
    from odqa_core.retrieval import base

    seen = {}

    def factory(k1: float = 0.9):
        seen["k1"] = k1
        return BM25(k1=k1, tokenizer="regex")

    monkeypatch.setitem(base._REGISTRY, "no-tokenizer", factory)
    run = bench.cached_run.__wrapped__("no-tokenizer", "kiwi", "default", 5)
    assert seen == {"k1": 0.9} and len(run.query_ids) > 0


# --- the CLI --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, line", [
    (["run", "--retriever", "bm25:k1=abc"], "odqa-bench: error: retriever 'bm25': parameter k1 expects float, got 'abc'"),
    (["run", "--retriever", "bm25:kone=1"], "odqa-bench: error: retriever 'bm25': bad parameters: unknown 'kone'; "
                                            "accepted: b, backend, k1, lucene_norms, name, prune, tokenizer, variant"),
    (["run", "--retriever", "ray:inner=bm25,inner.k1=abc"], "retriever 'ray': parameter inner.k1 expects float, got 'abc'"),
    (["export", "--dataset", "default", "--qrels", "/dev/null", "--retriever", "tfidf:k1=1"], "unknown 'k1'"),
])
def test_cli_bad_parameters_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    proc = _cli(*args)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and line in lines[0], proc.stderr


def test_cli_nested_tokenizer_reaches_ray_inner_retriever() -> None:
    """``inner.tokenizer`` changes the sharded run exactly as the tokenizer changes bm25's."""
    pytest.importorskip("ray")
    rows = {}
    for spec in ("ray:inner=bm25,inner.tokenizer=char2,shards=2", "bm25:tokenizer=char2", "bm25:tokenizer=regex"):
        proc = _cli("run", "--retriever", spec, "--k", "1")
        assert proc.returncode == 0, proc.stderr
        rows[spec] = [r for r in proc.stdout.splitlines() if " mrr " in r][0].split()[-2]
    assert rows["ray:inner=bm25,inner.tokenizer=char2,shards=2"] == rows["bm25:tokenizer=char2"]
    assert rows["bm25:tokenizer=char2"] != rows["bm25:tokenizer=regex"]


def test_retrievers_lists_every_name_with_signature_defaults() -> None:
    proc = _cli("retrievers")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    heads = [line.split(" (")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert heads == known_retrievers()
    bm25 = out.split("bm25 (built-in)")[1].split("\nbm25-rank")[0] + "\n"
    for p in retriever_parameters("bm25").params.values():
        assert f"    {p.name}: {p.type_name} = {p.default!r}\n" in bm25
    assert "inner_params: dict = {}  (set as inner.KEY=VALUE)" in out
    assert "**encoder_options: further keywords, passed on" in out


def test_run_help_names_the_retrievers_and_the_nested_syntax() -> None:
    proc = _cli("run", "--help")
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0
    assert "one or more of " + ", ".join(known_retrievers()) + "," in text
    assert "ray:inner=bm25,inner.tokenizer=kiwi" in text and "'odqa-bench retrievers' lists them" in text


def test_retrieval_never_imports_training() -> None:
    code = ("import sys; from odqa_core.retrieval import get_retriever, known_retrievers, parse_spec; "
            "known_retrievers(); get_retriever('bm25'); parse_spec('ray:inner.k1=1'); "
            "assert not [m for m in sys.modules if m.startswith('odqa_core.training')], 'training imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
