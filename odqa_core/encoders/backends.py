"""Inference backends for transformers encoders: the same weights run by torch in float32 (the
reference) or bfloat16 autocast, by ONNX Runtime in float32 or dynamic int8, or by OpenVINO
with int8 weights and activations quantised per group of 128 at run time (``openvino-int8``:
faster than ``onnx-int8``, with rankings that stay those of float32), all through token-budget
length bucketing (:mod:`odqa_core.encoders.batching`).

``wrap_backend(encoder, "auto")`` picks by a fixed rule, never by timing at run time:

* CUDA device: ``torch-fp32`` (the encoder's own ``autocast_dtype`` still applies; ``torch-fp16``
  is there to ask for).
* CPU with ``openvino``, ``onnx`` and ``onnxruntime`` installed: ``openvino-int8``. On 2 Zen 4
  cores it encodes faster than ``onnx-int8`` and keeps rankings where ``onnx-int8`` does not: on
  the 30k-passage korquad-open, e5-small L12's hit@1..30 stay within 0.0015 of torch float32
  (``onnx-int8``: 0.011).
* CPU with only ``onnx`` and ``onnxruntime``: ``onnx-int8``. Which matmuls stay float32 is settled
  once per model by the int8 probe (:mod:`odqa_core.encoders.onnx_export`) on texts the caller
  gives (:class:`ProbeTexts`), so its embeddings stay at cosine >= 0.99 and its quality within
  0.005 on korquad-dev and SciFact.
* CPU without them: ``torch-bf16`` when the CPU computes bfloat16 natively (AVX512-BF16 or
  AMX), else ``torch-fp32``. Without native support bfloat16 is emulated and slower than
  float32, so ``torch-bf16`` then logs a warning and ``auto`` never picks it.

The real-data tests in ``tests/test_backends.py`` hold both int8 backends to cosine and
retrieval-quality bars against ``torch-fp32``. ``$ODQA_ENCODER_BACKEND`` (the harness option
``--odqa-encoder-backend``) makes ``auto`` stand for another backend in a whole run, so the gate
compares that backend's dense cells with the stored baselines.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OdqaBenchError
from ..perfstats import torch_threads
from .base import Kind, check_encode_args
from .batching import (
    DEFAULT_MAX_TOKENS,
    Tokenized,
    encode_batched,
    pad_batch,
    pool_torch,
    to_torch,
    token_batches,
    tokenize,
)
from .onnx_export import (
    OPSET,
    WQ_ACTIVATION_GROUP,
    WQ_WEIGHT_GROUP,
    OnnxSettings,
    Probe,
    model_input_names,
    onnx_model_path,
)

__all__ = [
    "BACKENDS",
    "CPU_MAX_TOKENS",
    "CUDA_MAX_TOKENS",
    "BackendEncoder",
    "ProbeTexts",
    "auto_backend",
    "check_backend_name",
    "cpu_bf16_native",
    "openvino_precision",
    "physical_cores",
    "resolve_backend",
    "wrap_backend",
]

log = logging.getLogger(__name__)

BACKENDS = ("torch-fp32", "torch-bf16", "torch-fp16", "onnx-fp32", "onnx-int8", "openvino-int8")
OPENVINO = "openvino-int8"
BACKEND_ENV = "ODQA_ENCODER_BACKEND"
AUTO = "auto"
# Token budget per batch on the CPU: about 1k tokens of activations stay in cache
# (docs/results.md, "Defaults behind the encoder code", has the sweep).
CPU_MAX_TOKENS = 1024
# Token budget per batch on CUDA: 64k keeps a batch's activations near 1 GB (same section).
CUDA_MAX_TOKENS = 65536
_TORCH_DTYPES = {"torch-fp32": None, "torch-bf16": "bfloat16", "torch-fp16": "float16"}
_ONNX_VARIANTS = {"onnx-fp32": "fp32", "onnx-int8": "int8"}


@lru_cache(maxsize=1)
def cpu_bf16_native() -> bool:
    """True when torch reports AVX512-BF16 or AMX tiles on this CPU (bfloat16 matmuls in hardware)."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        fn = getattr(torch.cpu, name, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except RuntimeError:
                continue
    cap = str(torch.backends.cpu.get_cpu_capability()).upper()
    return "BF16" in cap or "AMX" in cap


def physical_cores() -> int:
    """The default thread count of every backend: ``OMP_NUM_THREADS`` when set (the knob that caps
    torch's pool, honoured by ONNX Runtime and OpenVINO here too), else the physical CPU cores
    (psutil), else the logical ones."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:
        n = None
    return max(1, int(n or os.cpu_count() or 1))


def _onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _openvino_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("openvino", "onnx", "onnxruntime"))


def openvino_precision() -> str:
    """OpenVINO's inference precision: f32 on every CPU. OpenVINO would pick bf16 where the CPU
    has it natively, and then a baseline's numbers would depend on the CPU it was recorded on."""
    return "f32"


def check_backend_name(name: str) -> str:
    """``name`` if it is a backend (not ``auto``); else one clear error listing the known ones."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise OdqaBenchError(f"unknown encoder backend {name!r}; known: {', '.join(BACKENDS)}")
    return name


def auto_backend(device: str = "cpu") -> str:
    """The backend ``auto`` stands for on ``device``: ``$ODQA_ENCODER_BACKEND`` when set, else the
    rule in the module docstring."""
    override = os.environ.get(BACKEND_ENV)
    if override:
        return check_backend_name(override)
    if device.startswith("cuda"):
        return "torch-fp32"
    if _openvino_available():
        return OPENVINO
    if _onnx_available():
        return "onnx-int8"
    return "torch-bf16" if cpu_bf16_native() else "torch-fp32"


def resolve_backend(name: str, device: str = "cpu") -> str:
    """A known backend name (``auto`` resolved for ``device``); unknown names or a backend the
    device cannot run raise :class:`OdqaBenchError`."""
    if not isinstance(name, str) or (name != AUTO and name not in BACKENDS):
        raise OdqaBenchError(f"unknown encoder backend {name!r}; known: {', '.join((AUTO, *BACKENDS))}")
    backend = auto_backend(device) if name == AUTO else name
    on_cuda = device.startswith("cuda")
    if (backend in _ONNX_VARIANTS or backend == OPENVINO) and on_cuda:
        raise OdqaBenchError(f"encoder backend {backend!r} runs on the cpu; got device={device!r}")
    if backend == "torch-fp16" and not on_cuda:
        raise OdqaBenchError("encoder backend 'torch-fp16' needs a CUDA device; on the cpu use torch-bf16 or openvino-int8")
    if backend in _ONNX_VARIANTS and not _onnx_available():
        raise OdqaBenchError(f"encoder backend {backend!r} needs the onnx and onnxruntime packages (pip install onnx onnxruntime)")
    if backend == OPENVINO and not _openvino_available():
        raise OdqaBenchError(f"encoder backend {backend!r} needs the openvino, onnx and onnxruntime packages "
                             "(pip install openvino onnx onnxruntime)")
    return backend


@dataclass(frozen=True)
class ProbeTexts:
    """The texts the int8 probe embeds with the float32 and int8 graphs: ``passages`` (also
    joined four at a time into long inputs) and ``queries``."""

    passages: tuple[str, ...]
    queries: tuple[str, ...]


def _weights_identity(base: Any, model: Any, tower: str) -> str:
    from .models import state_dict_sha256

    wid = getattr(base, "weights_id", None)
    if wid:
        return f"{wid}|{tower}"
    return f"{getattr(base, 'name', 'encoder')}|{tower}:{state_dict_sha256(model)[:16]}"


@dataclass
class BackendEncoder:
    """An HF-based encoder (``HFEncoder``: ``model``, ``tokenizer``, ``pooling``, ``max_length``,
    prefixes, ``device``, optional ``query_model``) run by ``backend`` with length bucketing.

    ``batch_size`` in :meth:`encode` is accepted for the :class:`Encoder` protocol; batches are
    formed by ``max_tokens`` (rows x padded length) and capped at ``max_batch`` rows.
    ``probe_texts`` (or a function returning them, called when first needed) feed the int8
    probe; ``onnx-int8`` needs them unless ``onnx.fp32_ffn_down`` settles the question."""

    base: Any = field(repr=False)
    backend: str = AUTO
    max_tokens: int | None = None
    max_batch: int | None = None
    threads: int | None = None
    onnx: OnnxSettings = field(default_factory=OnnxSettings)
    probe_texts: ProbeTexts | Callable[[], ProbeTexts] | None = field(default=None, repr=False)
    device: str = field(default="cpu", init=False)
    _sessions: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _graphs: dict[str, Path] = field(default_factory=dict, init=False, repr=False)
    _half: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for attr in ("model", "tokenizer", "pooling", "max_length"):
            if not hasattr(self.base, attr):
                raise OdqaBenchError(f"wrap_backend: {type(self.base).__name__} is not a transformers encoder "
                                     f"(no {attr!r}); backends apply to HFEncoder-style encoders")
        self.device = str(getattr(self.base, "device", "cpu"))
        self.backend = resolve_backend(self.backend, self.device)
        if self.max_tokens is None:
            self.max_tokens = CUDA_MAX_TOKENS if self.device.startswith("cuda") else CPU_MAX_TOKENS
        for label, v in (("max_tokens", self.max_tokens), ("max_batch", self.max_batch), ("threads", self.threads)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise OdqaBenchError(f"wrap_backend: {label} must be a positive integer, got {v!r}")
        if self.backend == "torch-bf16" and not self.device.startswith("cuda") and not cpu_bf16_native():
            log.warning("torch-bf16 on a CPU without AVX512-BF16/AMX: bfloat16 is emulated and slower than float32")

    @property
    def name(self) -> str:
        return f"{self.base.name}@{self.backend}"

    @property
    def dim(self) -> int:
        return int(self.base.dim)

    @property
    def fingerprint(self) -> str:
        """The base encoder's fingerprint plus every backend setting that changes the vectors.
        int8 activations are quantised per batch, so its batching settings count too."""
        return self.base.fingerprint + self._backend_part()

    @property
    def settings_fingerprint(self) -> str:
        """The base encoder's settings fingerprint (a trained checkpoint named by its recipe)
        plus the same backend settings."""
        base = getattr(self.base, "settings_fingerprint", None) or self.base.fingerprint
        return base + self._backend_part()

    def _backend_part(self) -> str:
        fp = f"|backend={self.backend}"
        if self.backend in _ONNX_VARIANTS:
            fp += f"|{','.join(f'{k}={v}' for k, v in self.onnx.for_variant(_ONNX_VARIANTS[self.backend]).items())}"
        if self.backend == OPENVINO:
            import openvino

            fp += (f"|{','.join(f'{k}={v}' for k, v in self.onnx.for_variant('wq8').items())}"
                   f"|activation_group={self.onnx.activation_group}"
                   f"|openvino={openvino.__version__}|precision={openvino_precision()}")
        if self.backend in ("onnx-int8", OPENVINO):
            fp += f"|max_tokens={self.max_tokens}|max_batch={self.max_batch}"
        return fp

    def _model(self, kind: Kind) -> tuple[Any, str]:
        q = getattr(self.base, "query_model", None)
        return (q, "query") if kind == "query" and q is not None else (self.base.model, "passage")

    def prepare(self, kinds: tuple[Kind, ...] = ("passage", "query")) -> None:
        """Export the graph of each tower that encodes ``kinds`` (or find it in the cache) without
        building a session. Afterwards a session is built from that file alone, so the torch
        weights may be released first (two copies of a model never need to be held at once)."""
        if self.backend not in _ONNX_VARIANTS and self.backend != OPENVINO:
            return
        for kind in kinds:
            model, tower = self._model(kind)
            if tower not in self._graphs:
                self._graphs[tower] = self._graph_path(model, tower)

    def _graph_path(self, model: Any, tower: str) -> Path:
        """The cached graph file of ``tower`` for this backend, exported on a miss."""
        if self.backend == OPENVINO:
            return onnx_model_path(model, _weights_identity(self.base, model, tower), "wq8", self.onnx)
        variant = _ONNX_VARIANTS[self.backend]
        decide = variant == "int8" and self.onnx.fp32_ffn_down is None
        probe = self.probe(model, self._probe_texts()) if decide else None
        return onnx_model_path(model, _weights_identity(self.base, model, tower), variant, self.onnx, probe)

    def session(self, kind: Kind = "passage") -> tuple[Any, list[str]]:
        """(session, its input names) for the tower that encodes ``kind``: ONNX Runtime's, or
        OpenVINO's behind the same ``run`` call; the graph is exported or taken from the cache
        (or from :meth:`prepare`), and the session built, on first use."""
        model, tower = self._model(kind)
        if tower not in self._sessions:
            self.prepare((kind,))
        if tower not in self._sessions and self.backend == OPENVINO:
            self._sessions[tower] = self._openvino_session(self._graphs[tower])
        if tower not in self._sessions:
            import onnxruntime as ort

            path = self._graphs[tower]
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads or physical_cores()
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            try:
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise OdqaBenchError(f"onnxruntime cannot load {path}: {(str(exc).splitlines() or ['?'])[0][:200]}") from None
            self._sessions[tower] = (sess, [i.name for i in sess.get_inputs()])
        return self._sessions[tower]

    def _openvino_session(self, path: Path) -> tuple[Any, list[str]]:
        """A tower's ``wq8`` graph compiled by OpenVINO for the CPU, behind ``run(None, feed)``."""
        import openvino as ov

        props = {"INFERENCE_NUM_THREADS": self.threads or physical_cores(), "PERFORMANCE_HINT": "LATENCY",
                 "INFERENCE_PRECISION_HINT": openvino_precision(),
                 "DYNAMIC_QUANTIZATION_GROUP_SIZE": self.onnx.activation_group}
        try:
            compiled = ov.Core().compile_model(str(path), "CPU", props)
        except Exception as exc:
            raise OdqaBenchError(f"openvino cannot compile {path}: {(str(exc).splitlines() or ['?'])[0][:200]}") from None
        return _OpenVinoSession(compiled), [p.get_any_name() for p in compiled.inputs]

    def _probe_texts(self) -> ProbeTexts:
        texts = self.probe_texts() if callable(self.probe_texts) else self.probe_texts
        if texts is None:
            raise OdqaBenchError(f"encoder backend {self.backend!r} decides which matmuls stay float32 with a probe: "
                                 "pass probe_texts, or fp32_ffn_down=True/False")
        return texts

    def probe(self, model: Any, texts: ProbeTexts) -> Probe:
        """The int8 quality probe: ``texts``' passages, concatenations of four of them (long
        inputs) and its queries, tokenised as this encoder does."""
        passages = list(texts.passages)
        long = [" ".join(passages[i : i + 4]) for i in range(0, len(passages), 4)]
        with_types = "token_type_ids" in model_input_names(model)
        parts = [tokenize(self.base.tokenizer, group, self.base.max_length, prefix, with_types)
                 for group, prefix in ((passages + long, self.base.passage_prefix or ""),
                                       (list(texts.queries), self.base.query_prefix or ""))]
        tok = Tokenized(parts[0].ids + parts[1].ids,
                        None if not with_types else parts[0].type_ids + parts[1].type_ids,  # type: ignore[operator]
                        parts[0].pad_id)
        feeds = tuple(pad_batch(tok, rows) for rows in token_batches(tok.lengths, DEFAULT_MAX_TOKENS))
        return Probe(feeds, self.base.pooling)

    def encode(self, texts: list[str], kind: Kind = "passage", batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        """L2-normalised float32 embeddings of ``texts`` in input order."""
        check_encode_args(self.name, texts, kind)
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model, tower = self._model(kind)
        prefix = getattr(self.base, "query_prefix" if kind == "query" else "passage_prefix", "") or ""
        tok = tokenize(self.base.tokenizer, texts, self.base.max_length, prefix,
                       with_types="token_type_ids" in model_input_names(model))
        if self.backend in _ONNX_VARIANTS or self.backend == OPENVINO:
            return self._encode_onnx(tok, kind, show_progress)
        return self._encode_torch(tok, model, tower, kind, show_progress)

    def _run(self, tok: Tokenized, forward: Any, kind: str, show_progress: bool, forward_pools: bool = False) -> np.ndarray:
        return encode_batched(tok, forward, self.dim, pooling=self.base.pooling, max_tokens=self.max_tokens,
                              max_batch=self.max_batch, show_progress=show_progress,
                              desc="encode queries" if kind == "query" else "encode passages", forward_pools=forward_pools)

    def _encode_onnx(self, tok: Tokenized, kind: Kind, show_progress: bool) -> np.ndarray:
        sess, inputs = self.session(kind)

        def forward(feed: dict[str, np.ndarray]) -> np.ndarray:
            return sess.run(None, {k: feed[k] for k in inputs})[0]

        return self._run(tok, forward, kind, show_progress)

    def _encode_torch(self, tok: Tokenized, model: Any, tower: str, kind: str, show_progress: bool) -> np.ndarray:
        import torch

        dtype = _TORCH_DTYPES[self.backend]
        on_cuda = self.device.startswith("cuda")
        if dtype is None and on_cuda and getattr(self.base, "autocast_dtype", None):
            dtype = self.base.autocast_dtype
        if on_cuda and dtype is not None and self.backend != "torch-fp32":
            # a half-precision copy of the weights: autocast would re-cast them on every call
            model, amp = self._half_model(model, tower, getattr(torch, dtype)), contextlib.nullcontext()
        else:
            amp = (torch.autocast("cuda" if on_cuda else "cpu", dtype=getattr(torch, dtype)) if dtype is not None
                   else contextlib.nullcontext())

        def forward(feed: dict[str, np.ndarray]) -> np.ndarray:
            inputs = to_torch(feed, self.device, non_blocking=True)
            hidden = model(**inputs).last_hidden_state
            return pool_torch(hidden, inputs["attention_mask"], self.base.pooling).cpu().numpy()

        threads = self.threads if not on_cuda else None
        with torch_threads(threads), torch.inference_mode(), amp:
            return self._run(tok, forward, kind, show_progress, forward_pools=True)

    def _half_model(self, model: Any, tower: str, dtype: Any) -> Any:
        """A copy of ``model`` in ``dtype`` on the GPU, made once per tower (the base keeps float32)."""
        key = f"{tower}:{dtype}"
        if key not in self._half:
            import copy

            self._half[key] = copy.deepcopy(model).to(dtype=dtype).eval()
        return self._half[key]


class _OpenVinoSession:
    """An OpenVINO compiled model with ONNX Runtime's ``run(None, feed) -> [output]`` call."""

    def __init__(self, compiled: Any) -> None:
        self._request = compiled.create_infer_request()
        self._output = compiled.outputs[0]

    def run(self, _outputs: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.array(self._request.infer(feed)[self._output], copy=True)]


def wrap_backend(encoder: Any, backend: str = AUTO, *, max_tokens: int | None = None,
                 max_batch: int | None = None, threads: int | None = None, opset: int = OPSET,
                 per_channel: bool = True, reduce_range: bool | None = None, fp32_ffn_down: bool | None = None,
                 min_probe_cosine: float = 0.99, weight_group: int = WQ_WEIGHT_GROUP,
                 activation_group: int = WQ_ACTIVATION_GROUP,
                 probe_texts: ProbeTexts | Callable[[], ProbeTexts] | None = None) -> BackendEncoder:
    """``encoder`` (an HFEncoder) run by ``backend`` (one of :data:`BACKENDS` or ``auto``) with
    token-budget batching; the result is an :class:`Encoder` whose fingerprint names the backend
    and its settings. ``max_tokens`` defaults to :data:`CPU_MAX_TOKENS` on the cpu and
    :data:`CUDA_MAX_TOKENS` on CUDA; ``threads`` defaults to the physical cores (ONNX Runtime) or
    torch's own setting (torch backends, changed only inside ``encode``). ``fp32_ffn_down`` None lets the
    int8 probe decide (see :mod:`odqa_core.encoders.onnx_export`) on ``probe_texts``;
    ``reduce_range`` keeps ``onnx-int8`` weights in 7 bits (None: where the CPU lacks VNNI;
    :class:`OnnxSettings`).
    ``weight_group`` (0: one scale per output channel) and ``activation_group`` shape
    ``openvino-int8``."""
    if isinstance(encoder, BackendEncoder):
        encoder = encoder.base
    return BackendEncoder(encoder, backend, max_tokens=max_tokens, max_batch=max_batch, threads=threads,
                          onnx=OnnxSettings(opset=opset, per_channel=per_channel, reduce_range=reduce_range,
                                            fp32_ffn_down=fp32_ffn_down,
                                            min_probe_cosine=min_probe_cosine, weight_group=weight_group,
                                            activation_group=activation_group),
                          probe_texts=probe_texts)
