"""Named datasets resolved from a data folder, with their files checked against SHA256SUMS.

The data folder is ``--data-dir``, else ``$ODQA_DATA_DIR``, else ``../shared/data`` beside the
project root. ``default`` is embedded in the package and needs no data folder at all.
"""
from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import OdqaBenchError, warn
from ..extensions import DATASET_GROUP, describe, entry_points, load_entry_point
from ..io import sha256_file
from .beir import load_beir, read_jsonl
from .squad import load_squad, parse_squad
from .types import Corpus, Dataset
from .validate import validate_dataset

__all__ = ["DATASETS", "data_dir", "load_dataset", "dataset_names", "register_dataset", "verify_checksums"]

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent.parent


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The data folder in force, or None when none exists (only ``default`` works then)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("ODQA_DATA_DIR")
    if env:
        return Path(env)
    guess = PROJECT_ROOT.parent / "shared" / "data"
    return guess if guess.is_dir() else None


@lru_cache(maxsize=8)
def _sums(root: Path) -> dict[str, str]:
    path = root / "SHA256SUMS"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1].lstrip("*").removeprefix("./")] = parts[0]
    return out


@lru_cache(maxsize=64)
def _file_sha(path: Path, mtime: float) -> str:
    return sha256_file(path)


def verify_checksums(root: Path, rel_paths: list[str]) -> None:
    """Refuse data whose sha256 differs from the folder's SHA256SUMS (a changed dataset would
    otherwise show up as a false regression)."""
    sums = _sums(root)
    for rel in rel_paths:
        p = root / rel
        if not p.exists():
            raise OdqaBenchError(f"{p}: file not found (data folder {root})")
        want = sums.get(rel)
        if want is None:
            continue
        got = _file_sha(p, p.stat().st_mtime)
        if got != want:
            raise OdqaBenchError(f"{p}: sha256 {got[:12]}… differs from SHA256SUMS {want[:12]}…; the file changed")


@dataclass(frozen=True)
class NamedDataset:
    name: str
    files: tuple[str, ...]
    loader: Callable[[Path], Dataset]
    description: str


def _korquad_dev(root: Path) -> Dataset:
    return load_squad(root / "korquad/KorQuAD_v1.0_dev.json", name="korquad-dev")


def _scifact(root: Path) -> Dataset:
    return load_beir(root / "beir/scifact", split="test", name="scifact")


def _korquad_open(root: Path, include_flagged: bool = False) -> Dataset:
    """KorQuAD dev questions over its 964 paragraphs plus Korean Wikipedia distractors."""
    dev = _korquad_dev(root)
    rows = read_jsonl(root / "kowiki_passages/kowiki_passages.jsonl")
    ids, titles, texts, groups = (list(x) for x in (dev.corpus.ids, dev.corpus.titles, dev.corpus.texts, dev.corpus.groups))
    for r in rows:
        if r.get("korquad_dev_title") and not include_flagged:
            continue
        ids.append(str(r["id"]))
        titles.append(str(r["title"]))
        texts.append(str(r["text"]))
        groups.append(f"kowiki-{r['doc_id']}")
    sha = sha256_file(root / "kowiki_passages/kowiki_passages.jsonl")
    name = "korquad-open" + ("+flagged" if include_flagged else "")
    return validate_dataset(
        Dataset(name, Corpus(ids, titles, texts, groups), dev.query_ids, dev.query_texts, dev.qrels,
                dev.answers, f"{dev.sha256[:32]}{sha[:32]}", str(root / "kowiki_passages"))
    )


DATASETS: dict[str, NamedDataset] = {
    d.name: d
    for d in [
        NamedDataset("korquad-dev", ("korquad/KorQuAD_v1.0_dev.json",), _korquad_dev,
                     "KorQuAD 1.0 dev: 964 paragraphs, 5,774 questions (closed corpus)"),
        NamedDataset("scifact", ("beir/scifact/corpus.jsonl", "beir/scifact/queries.jsonl", "beir/scifact/qrels/test.tsv"),
                     _scifact, "BEIR SciFact test: 5,183 abstracts, 300 claims"),
        NamedDataset("korquad-open", ("korquad/KorQuAD_v1.0_dev.json", "kowiki_passages/kowiki_passages.jsonl"),
                     _korquad_open, "KorQuAD 1.0 dev questions over its paragraphs + 29,702 Korean Wikipedia passages"),
        NamedDataset("korquad-open+flagged", ("korquad/KorQuAD_v1.0_dev.json", "kowiki_passages/kowiki_passages.jsonl"),
                     lambda r: _korquad_open(r, include_flagged=True),
                     "korquad-open plus the 1,116 newer-revision passages of the gold articles"),
    ]
}


# name -> loader, from register_dataset (these take precedence over entry points of the same name)
_REGISTERED: dict[str, Callable[..., Dataset]] = {}
_WARNED: set[str] = set()


def register_dataset(name: str, loader: Callable[..., Dataset]) -> None:
    """Name a dataset for ``load_dataset``, the CLI's ``--dataset`` and the suites. ``loader()``
    or ``loader(data_folder)`` (a Path, or None when there is none) returns the Dataset."""
    if not isinstance(name, str) or not name or name == "default" or name in DATASETS:
        raise OdqaBenchError(f"register_dataset: {name!r} is empty or a built-in dataset name")
    if not callable(loader):
        raise OdqaBenchError(f"register_dataset({name!r}): the loader must be callable, got {type(loader).__name__}")
    _REGISTERED[name] = loader
    for key in [k for k in _CACHE if k[0] == name]:
        del _CACHE[key]


def _entry_points() -> dict[str, Any]:
    """Installed ``odqa_bench.datasets`` entry points, less any that reuse a built-in name (warned)."""
    out = {}
    for name, ep in entry_points(DATASET_GROUP).items():
        if name == "default" or name in DATASETS:
            if name not in _WARNED:
                _WARNED.add(name)
                warn(f"entry point {describe(ep)} ({DATASET_GROUP}) reuses the built-in name {name!r}; ignored")
            continue
        out[name] = ep
    return out


def dataset_names() -> list[str]:
    """Built-in names first, then registered and installed ones (not loaded to list them)."""
    return ["default", *DATASETS, *sorted(set(_REGISTERED) | set(_entry_points()))]


def _extension_dataset(name: str, root: Path | None) -> Dataset | None:
    """The dataset a registered loader or an entry point gives for ``name``; None when neither names it."""
    loader = _REGISTERED.get(name)
    if loader is None:
        ep = _entry_points().get(name)
        if ep is None:
            return None
        loader = load_entry_point(DATASET_GROUP, ep)
    try:
        takes_folder = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                           for p in inspect.signature(loader).parameters.values())
    except (TypeError, ValueError):
        takes_folder = False
    ds = loader(root) if takes_folder else loader()
    if not isinstance(ds, Dataset):
        raise OdqaBenchError(f"dataset {name!r}: its loader returned {type(ds).__name__}, not a Dataset")
    return validate_dataset(ds)


def _load_default() -> Dataset:
    path = PACKAGE_DIR / "samples" / "default.json"
    obj = json.loads(path.read_text(encoding="utf-8"))
    from ..io import sha256_bytes

    return parse_squad(obj, "default", str(path), sha256_bytes(path.read_bytes()))


_CACHE: dict[tuple[str, str], Dataset] = {}


def load_dataset(name_or_path: str, data_dir_: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a named dataset (built-in, registered with :func:`register_dataset` or installed
    through an ``odqa_bench.datasets`` entry point) or a path (SQuAD ``.json`` file or BEIR
    folder). Parsed datasets are kept in memory for the process, so a suite loads each once."""
    root = data_dir(data_dir_)
    key = (name_or_path, str(root))
    if key in _CACHE:
        return _CACHE[key]
    if name_or_path == "default":
        ds = _load_default()
    elif name_or_path not in DATASETS and (ext := _extension_dataset(name_or_path, root)) is not None:
        ds = ext
    elif name_or_path in DATASETS:
        if root is None or not root.is_dir():
            raise OdqaBenchError(
                f"dataset {name_or_path!r} needs a data folder: pass --data-dir or set ODQA_DATA_DIR "
                f"(looked for {PROJECT_ROOT.parent / 'shared' / 'data'})"
            )
        spec = DATASETS[name_or_path]
        verify_checksums(root, list(spec.files))
        ds = spec.loader(root)
    else:
        p = Path(name_or_path)
        if p.is_dir():
            ds = load_beir(p)
        elif p.suffix.lower() == ".json":
            ds = load_squad(p)
        elif p.exists():
            raise OdqaBenchError(f"{p}: unsupported dataset file; use a SQuAD .json file or a BEIR folder")
        else:
            raise OdqaBenchError(f"unknown dataset {name_or_path!r}; known: {', '.join(dataset_names())}, or a path")
    _CACHE[key] = ds
    return ds
