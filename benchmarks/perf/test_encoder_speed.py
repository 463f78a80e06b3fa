"""Encoder inference speed per backend: passages/s on a fixed sample of Korean Wikipedia passages
(the korquad-open corpus beyond the KorQuAD paragraphs), as a ratio to the reference torch
float32 path (``HFEncoder.encode``, count batches of 64 sorted by length) timed interleaved in
the same test, median of 3 rounds. ``torch-fp32`` through the backend layer measures length
bucketing by token budget alone. Absolute passages/s go to ``benchmark.extra_info`` and
``kind="info"`` records; the worst and mean cosine to the reference are recorded as quality.

On 64 passages the reference runs one batch padded to its longest passage, so the ratios
include padding that the reference partly avoids on a large corpus (its global length sort
leaves neighbours of similar length): at 512 tokens, where e5 passages vary most, these
ratios are higher than over a whole corpus.
"""
from __future__ import annotations

from functools import cache
from statistics import median
from typing import Any

import numpy as np
import pytest

from odqa_core.bench import require_dataset
from odqa_core.data.types import Dataset
from odqa_core.errors import OdqaBenchError
from odqa_core.perfstats import interleaved_times, speed_ratio

torch = pytest.importorskip("torch", reason="torch not installed")
pytest.importorskip("transformers", reason="transformers not installed")

from odqa_core.encoders import get_encoder  # noqa: E402
from odqa_core.encoders.backends import BackendEncoder, cpu_bf16_native, wrap_backend  # noqa: E402
from odqa_core.retrieval.dense import default_probe_texts  # noqa: E402

SEED = 0
SAMPLE = 64
ROUNDS = 3
KORQUAD_PARAGRAPHS = 964  # korquad-open corpus rows before the Wikipedia passages
CPU_BACKENDS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "openvino-int8")
# torch-fp32 against itself only measures noise (kept in full as a noise meter, never gated)
QUICK_BACKENDS = ("openvino-int8",)
QUICK_MODELS = {("minilm", "L6", 256), ("e5-small", "L3", 256)}
MODELS = [("e5-small", s, n) for s in ("L12", "L6", "L3") for n in (256, 512)] + [("minilm", "L6", n) for n in (256, 512)]


def _cells() -> list[Any]:
    out = []
    for family, size, max_length in MODELS:
        for backend in CPU_BACKENDS:
            quick = (family, size, max_length) in QUICK_MODELS and backend in QUICK_BACKENDS
            out.append(pytest.param(family, size, max_length, backend, id=f"{family}-{size}-len{max_length}-{backend}",
                                    marks=[pytest.mark.realdata] + ([] if quick else [pytest.mark.full])))
    return out


@pytest.fixture(scope="module")
def kowiki() -> Dataset:
    return require_dataset("korquad-open")


def passage_sample(ds: Dataset, n: int = SAMPLE) -> list[str]:
    """A fixed seeded sample of ``n`` Wikipedia passages (title + text), in corpus order."""
    texts = ds.corpus.joined()[KORQUAD_PARAGRAPHS:]
    if not texts:
        raise OdqaBenchError("korquad-open has no Wikipedia passages beyond the KorQuAD paragraphs")
    pos = np.sort(np.random.default_rng(SEED).choice(len(texts), size=min(n, len(texts)), replace=False))
    return [texts[p] for p in pos]


@cache
def base_encoder(family: str, size: str, max_length: int, device: str = "cpu") -> Any:
    return get_encoder(family, size, device=device, max_length=max_length)


@cache
def backend_encoder(family: str, size: str, max_length: int, backend: str, device: str = "cpu") -> BackendEncoder:
    return wrap_backend(base_encoder(family, size, max_length, device), backend, probe_texts=default_probe_texts)


def timed_ratio(reference: Any, ours: Any) -> tuple[float, float, float]:
    """(speed ratio, reference seconds, our seconds): medians of interleaved rounds."""
    t_ref, t_ours = interleaved_times(reference, ours, rounds=ROUNDS, warmup=0)
    return speed_ratio(median(t_ref), median(t_ours)), median(t_ref), median(t_ours)


@pytest.mark.perf
@pytest.mark.parametrize("family,size,max_length,backend", _cells())
def test_encoder_speed(family: str, size: str, max_length: int, backend: str, kowiki: Dataset, benchmark: Any,
                       odqa_record: Any) -> None:
    if backend == "torch-bf16" and not cpu_bf16_native():
        pytest.skip("bfloat16 is emulated on this CPU (no AVX512-BF16 or AMX): slower than float32 by design")
    if backend == "openvino-int8":
        pytest.importorskip("openvino", reason="openvino not installed")
    base = base_encoder(family, size, max_length)
    ours = backend_encoder(family, size, max_length, backend)
    texts = passage_sample(kowiki)
    reference = lambda: base.encode(texts, kind="passage", batch_size=64)  # noqa: E731
    run = lambda: ours.encode(texts, kind="passage")  # noqa: E731
    ref_emb, our_emb = reference(), run()  # warm-up: builds ONNX graphs and sessions, fills caches
    ratio, t_ref, t_ours = timed_ratio(reference, run)
    cos = (ref_emb * our_emb).sum(axis=1)
    odqa_record.dataset(kowiki)
    odqa_record("speedup_vs_torch_fp32", ratio, kind="info" if backend == "torch-fp32" else "speed",
                model=f"{family}-{size}", backend=backend,
                max_length=max_length)
    odqa_record("passages_per_s", len(texts) / t_ours, kind="info")
    odqa_record("torch_fp32_passages_per_s", len(texts) / t_ref, kind="info")
    odqa_record("min_cosine_vs_torch_fp32", float(cos.min()), kind="quality")
    benchmark.extra_info.update({"model": f"{family}-{size}", "backend": backend, "max_length": max_length,
                                 "passages": len(texts), "threads_torch": torch.get_num_threads(),
                                 "passages_per_s": len(texts) / t_ours,
                                 "torch_fp32_passages_per_s": len(texts) / t_ref,
                                 "speedup_vs_torch_fp32": ratio, "min_cosine": float(cos.min()),
                                 "mean_cosine": float(cos.mean())})
    assert float(cos.mean()) >= 0.99, f"{backend} drifted from torch float32: mean cosine {cos.mean():.4f}"
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)


def _cuda_cells() -> list[Any]:
    """The CPU table's models and lengths in float16 on CUDA; e5-small L12 at 256 tokens is quick."""
    return [pytest.param(family, size, max_length, id=f"{family}-{size}-len{max_length}-torch-fp16-cuda",
                         marks=[] if (family, size, max_length) == ("e5-small", "L12", 256) else [pytest.mark.full])
            for family, size, max_length in MODELS]


@pytest.mark.perf
@pytest.mark.cuda
@pytest.mark.realdata
@pytest.mark.parametrize("family,size,max_length", _cuda_cells())
def test_encoder_speed_cuda_fp16(family: str, size: str, max_length: int, kowiki: Dataset, benchmark: Any,
                                 odqa_record: Any) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available: torch.cuda.is_available() is False")
    base = base_encoder(family, size, max_length, "cuda")
    ours = backend_encoder(family, size, max_length, "torch-fp16", "cuda")
    texts = passage_sample(kowiki)

    def reference() -> np.ndarray:
        out = base.encode(texts, kind="passage", batch_size=64)
        torch.cuda.synchronize()
        return out

    def run() -> np.ndarray:
        out = ours.encode(texts, kind="passage")
        torch.cuda.synchronize()
        return out

    ref_emb, our_emb = reference(), run()
    ratio, t_ref, t_ours = timed_ratio(reference, run)
    cos = (ref_emb * our_emb).sum(axis=1)
    odqa_record.dataset(kowiki)
    odqa_record("speedup_vs_torch_fp32", ratio, kind="speed", model=f"{family}-{size}", backend="torch-fp16",
                device="cuda", max_length=max_length)
    odqa_record("passages_per_s", len(texts) / t_ours, kind="info", device="cuda")
    odqa_record("min_cosine_vs_torch_fp32", float(cos.min()), kind="quality")
    benchmark.extra_info.update({"model": f"{family}-{size}", "backend": "torch-fp16", "device": "cuda",
                                 "passages_per_s": len(texts) / t_ours, "torch_fp32_passages_per_s": len(texts) / t_ref,
                                 "speedup_vs_torch_fp32": ratio, "min_cosine": float(cos.min())})
    assert float(cos.mean()) >= 0.99
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)


@pytest.mark.perf
@pytest.mark.full
@pytest.mark.realdata
def test_use_m_throughput(kowiki: Dataset, benchmark: Any, odqa_record: Any) -> None:
    """USE-multilingual (numpy, one size, no other backend): passages/s on the same sample, and
    its speed relative to e5-small L12 in torch float32 at 256 tokens, timed in the same rounds."""
    use_m = get_encoder("use-m")
    e5 = base_encoder("e5-small", "L12", 256)
    texts = passage_sample(kowiki)
    run = lambda: use_m.encode(texts, kind="passage")  # noqa: E731
    reference = lambda: e5.encode(texts, kind="passage", batch_size=64)  # noqa: E731
    emb = run()
    reference()
    ratio, t_ref, t_ours = timed_ratio(reference, run)
    odqa_record.dataset(kowiki)
    odqa_record("passages_per_s", len(texts) / t_ours, kind="info", model="use-m")
    odqa_record("speed_vs_e5_small_L12_fp32", ratio, kind="info")
    benchmark.extra_info.update({"model": "use-m", "passages": len(texts), "passages_per_s": len(texts) / t_ours,
                                 "e5_small_L12_fp32_passages_per_s": len(texts) / t_ref})
    assert emb.shape == (len(texts), use_m.dim) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
