"""Generic helpers for transformers models, whatever they encode: quiet loading and saving, the
device check, weight identities (state dict and saved-folder hashes, trained recipes) and layer cuts.
Encoders, the reader and the trainers share them; none of them is tied to a model family."""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import OdqaBenchError
from ..io import sha256_file

__all__ = ["quiet_transformers", "check_device", "state_dict_sha256", "folder_weights_sha",
           "recipe_key", "TRAINED_INFO_FILES", "truncate_layers"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# the info file each trainer writes beside its checkpoint, by kind of checkpoint
TRAINED_INFO_FILES = {"dpr": "odqa_dpr.json", "reader": "odqa_reader.json"}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' load/save progress bars and load reports for the block (a model read
    from local disk in a second needs no per-tensor bar)."""
    from transformers.utils import logging as hf_logging

    before, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def check_device(device: str) -> str:
    """``cpu`` or ``cuda[:n]``; CUDA without a visible GPU is a user error, not a crash later."""
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            raise OdqaBenchError(f"device {device!r} requested but no CUDA GPU is available (torch.cuda.is_available() is False)")
        return device
    raise OdqaBenchError(f"unknown device {device!r}; use 'cpu' or 'cuda[:N]'")


def state_dict_sha256(model: Any) -> str:
    """Hash of every parameter and buffer (names, shapes, dtypes, bytes): the weights' identity."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@lru_cache(maxsize=16)
def _file_sha(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def folder_weights_sha(folder: Path) -> str | None:
    """sha256 over the weight files of a saved model folder (None when it has none we know)."""
    h = hashlib.sha256()
    found = False
    for name in _WEIGHT_FILES:
        p = folder / name
        if p.is_file():
            st = p.stat()
            h.update(f"{name}:{_file_sha(str(p), st.st_size, st.st_mtime_ns)};".encode())
            found = True
    return h.hexdigest() if found else None


def recipe_key(folder: Path) -> str | None:
    """``<kind>:<key>`` for a checkpoint folder this harness trained: its info file
    (:data:`TRAINED_INFO_FILES`) names the cache key it was saved under, and the folder carries
    that name. None for any other folder, and where the file cannot be read."""
    for kind, name in TRAINED_INFO_FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        try:
            key = json.loads(path.read_text(encoding="utf-8")).get("key")
        except (OSError, ValueError, AttributeError):
            return None
        return f"{kind}:{key}" if isinstance(key, str) and key == folder.name else None
    return None


def truncate_layers(model: Any, n: int) -> Any:
    """Keep the first ``n`` transformer layers of a BERT-style ``model.encoder.layer`` stack (a
    cheaper model of the same family)."""
    total = int(model.config.num_hidden_layers)
    if not 1 <= n <= total:
        raise OdqaBenchError(f"cannot keep {n} layers of a {total}-layer model")
    model.encoder.layer = model.encoder.layer[:n]
    model.config.num_hidden_layers = n
    return model


