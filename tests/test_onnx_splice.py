"""A large initializer streamed into an ONNX file gives the bytes onnx.save writes; the export
that traces e5-sized word embeddings through a stand-in writes the same graph as a plain trace."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from odqa_core.encoders.onnx_splice import save_with_streamed_initializer  # noqa: E402


def _model(weights: np.ndarray, doc: str = "") -> object:
    w = numpy_helper.from_array(weights, "w")
    node = helper.make_node("Gather", ["w", "ids"], ["out"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, weights.shape[1]])],
                              [w, numpy_helper.from_array(np.arange(3, dtype=np.float32), "b")], doc_string=doc)
    return helper.make_model(graph, producer_name="test", doc_string=doc)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 2100), cols=st.sampled_from([1, 3, 16, 64]), doc=st.text(max_size=300))
def test_streamed_initializer_writes_what_onnx_save_writes(tmp_path_factory: pytest.TempPathFactory, rows: int,
                                                           cols: int, doc: str) -> None:
    # sizes cross the one-, two- and three-byte length prefixes of the tensor, graph and model
    real = np.random.default_rng(rows * 7 + cols).standard_normal((rows, cols)).astype(np.float32)
    folder = tmp_path_factory.mktemp("splice")
    onnx.save(_model(real, doc), str(folder / "want.onnx"))
    save_with_streamed_initializer(_model(np.zeros((2, cols), np.float32), doc), "w", real, folder / "got.onnx")
    assert (folder / "got.onnx").read_bytes() == (folder / "want.onnx").read_bytes()
    np.testing.assert_array_equal(numpy_helper.to_array(onnx.load(str(folder / "got.onnx")).graph.initializer[0]), real)


def test_streamed_initializer_refuses_a_missing_name_or_another_type(tmp_path: Path) -> None:
    model = _model(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="no initializer"):
        save_with_streamed_initializer(model, "nope", np.zeros((3, 4), np.float32), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="holds float32, not float64"):
        save_with_streamed_initializer(model, "w", np.zeros((3, 4)), tmp_path / "x.onnx")


def test_export_through_a_stand_in_is_the_plain_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    import odqa_core.encoders.onnx_export as ox
    from odqa_core.encoders.tiny import tiny_bert

    model = tiny_bert(seed=0).model.eval()
    monkeypatch.setattr(ox, "SPLICE_MIN_BYTES", 10**15)
    ox.export_onnx(model, tmp_path / "plain.onnx")
    monkeypatch.setattr(ox, "SPLICE_MIN_BYTES", 1)
    ox.export_onnx(model, tmp_path / "spliced.onnx")
    assert (tmp_path / "spliced.onnx").read_bytes() == (tmp_path / "plain.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.onnx", "spliced.onnx"]
    assert model.get_input_embeddings().weight.shape[0] > 32  # the model got its own matrix back
