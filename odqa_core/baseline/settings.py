"""The resolved settings that shape a cell's numbers besides its data: which encoder backend
``auto`` became, the encoder's max length and its fingerprint (weights plus every setting that
changes the vectors), and for speed records the CPU class. Baselines store them per cell; the
gate refuses to compare cells whose settings differ, as it does for a changed dataset."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["BACKEND", "CPU_ISA", "ENCODER", "MAX_LENGTH", "retriever_settings", "settings_of", "settings_diff"]

BACKEND, MAX_LENGTH, ENCODER = "backend", "max_length", "encoder"
# the CPU class a speed record was measured on (:func:`odqa_core.machine.cpu_isa`)
CPU_ISA = "cpu_isa"
# where an encoder hides inside the retrievers that wrap one (dense, hybrid/sequential, dpr)
_WRAPPERS = ("dense_retriever", "dense", "_dense", "inner")


def _encoder(obj: Any, depth: int = 0) -> Any | None:
    if obj is None or depth > 3 or isinstance(obj, (Mapping, str, int, float)):
        return None
    enc = getattr(obj, "encoder", None)
    if enc is not None and hasattr(enc, "fingerprint"):
        return enc
    for attr in _WRAPPERS:
        try:
            inner = getattr(obj, attr, None)
        except Exception:  # e.g. dpr's dense_retriever before index
            continue
        if (found := _encoder(inner, depth + 1)) is not None:
            return found
    return None


def retriever_settings(retriever: Any) -> dict[str, str]:
    """Encoder backend, max length and fingerprint of a retriever (after ``index``); empty for
    retrievers without an encoder (bm25, tfidf), whose parameters the cell id already names."""
    enc = _encoder(retriever)
    if enc is None:
        return {}
    out = {ENCODER: str(getattr(enc, "settings_fingerprint", None) or enc.fingerprint)}
    if backend := getattr(enc, "backend", None):
        out[BACKEND] = str(backend)
    length = getattr(enc, "max_length", None) or getattr(getattr(enc, "base", None), "max_length", None)
    if length:
        out[MAX_LENGTH] = str(length)
    return out


def settings_of(obj: Any) -> dict[str, str]:
    """A mapping as strings, or a retriever's :func:`retriever_settings`."""
    if isinstance(obj, Mapping):
        return {str(k): str(v) for k, v in obj.items()}
    return retriever_settings(obj)


def _short(value: str, width: int = 60) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def _changed_parts(old: str, new: str) -> tuple[str, str]:
    """The ``|``-separated parts where two fingerprints differ, with ``…`` for the shared rest."""
    a, b = old.split("|"), new.split("|")
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1

    def cut(parts: list[str]) -> str:
        mid = "|".join(parts[head: len(parts) - tail])
        return ("…|" if head else "") + _short(mid) + ("|…" if tail else "")

    return cut(a), cut(b)


def settings_diff(baseline: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """``key old → new`` for every setting both sides record with different values (only the
    parts that differ, for long fingerprints)."""
    out = []
    for k in sorted(set(baseline) & set(current)):
        old, new = str(baseline[k]), str(current[k])
        if old != new:
            old, new = _changed_parts(old, new)
            out.append(f"{k} {old} → {new}")
    return out
