"""Schema 1 -> 2: re-key baseline cells from the test name alone to the test's node id.

A schema-1 key (``test_retrieval[bm25-kiwi/default/k=5]``) names a test function, not its file.
The file is found by reading the project's test files (no import): among the files of the
suite (``test_<suite>.py`` anywhere under the project), exactly one must define the function,
at module level or in one class. Anything else is refused before a single file is written;
each file is then replaced atomically. Numbers, vectors and metadata are copied unchanged.
"""
from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OdqaBenchError
from ..io import atomic_write_text, dumps_stable
from .store import SCHEMA_VERSION

__all__ = ["Migration", "plan_migration", "apply_migration", "suite_files", "defined_functions"]

_SKIP_DIRS = {".git", ".venv", "venv", ".tox", "node_modules", "__pycache__", "build", "dist", "site-packages"}


@dataclass(frozen=True)
class Migration:
    """One baseline file's new content and how its keys moved (``renamed``: old key -> new key)."""

    path: Path
    obj: dict[str, Any]
    renamed: dict[str, str]

    @property
    def changed(self) -> bool:
        return bool(self.renamed)


def suite_files(root: Path, suite: str) -> list[Path]:
    """The project's files a suite's records can come from: ``test_<suite>.py`` (or ``<suite>.py``
    when the suite name is a whole stem), hidden, virtual-env and build folders left out."""
    names = {f"test_{suite}.py", f"{suite}.py"} if not suite.startswith("test_") else {f"{suite}.py"}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if f in names]
    return found


def defined_functions(path: Path) -> dict[str, list[str]]:
    """Function name -> node-id parts (``["test_x"]`` or ``["TestA", "test_x"]``) for each function
    a file defines, read from its syntax tree; ``[]`` for a name defined more than once."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise OdqaBenchError(f"{path}: cannot read it as Python ({type(exc).__name__}); fix it or migrate by hand") from None
    found: dict[str, list[list[str]]] = {}
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, funcs):
            found.setdefault(node.name, []).append([node.name])
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, funcs):
                    found.setdefault(sub.name, []).append([node.name, sub.name])
    # a name defined twice (two classes, or redefined) cannot be placed: an empty part list says so
    return {name: parts[0] if len(parts) == 1 else [] for name, parts in found.items()}


def _function(key: str) -> str:
    return key.split("[", 1)[0]


def plan_migration(base_dir: Path, root: Path) -> list[Migration]:
    """Every ``*.json`` under ``base_dir`` (a profile folder or a folder of profiles) re-keyed, or
    one :class:`OdqaBenchError` naming the first cell that cannot be placed in exactly one file."""
    paths = sorted(base_dir.rglob("*.json"))
    if not paths:
        raise OdqaBenchError(f"{base_dir}: no baseline files to migrate")
    root = root.resolve()
    defs: dict[Path, dict[str, list[str]]] = {}
    plans = []
    for path in paths:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OdqaBenchError(f"{path}: not a readable baseline (malformed JSON); fix it or restore it from git") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("cells"), dict) or "suite" not in obj:
            raise OdqaBenchError(f"{path}: not an odqa-bench baseline file")
        ver = obj.get("schema_version")
        if ver == SCHEMA_VERSION:
            plans.append(Migration(path, obj, {}))
            continue
        if ver != 1:
            raise OdqaBenchError(f"{path}: baseline schema version {ver!r}; migrate reads 1 and writes {SCHEMA_VERSION}")
        suite = str(obj["suite"])
        files = suite_files(root, suite)
        for f in files:
            if f not in defs:
                defs[f] = defined_functions(f)
        renamed: dict[str, str] = {}
        for key in obj["cells"]:
            if "::" in key:
                raise OdqaBenchError(f"{path}: cell {key!r} already holds a path in a schema-1 file; refusing to guess")
            func = _function(key)
            owners = [f for f in files if func in defs[f]]
            if len(owners) != 1 or not defs[owners[0]][func]:
                searched = ", ".join(f.relative_to(root).as_posix() for f in owners or files)
                if not owners:
                    why = f"no file defines {func!r} (searched: {searched or f'no test_{suite}.py under {root}'})"
                elif len(owners) > 1:
                    why = f"{func!r} is defined in more than one file ({searched})"
                else:
                    why = f"{func!r} is defined in more than one class of {searched}"
                raise OdqaBenchError(f"{path}: cell {key!r}: {why}; refusing an ambiguous migration")
            parts = defs[owners[0]][func]
            rel = owners[0].relative_to(root).as_posix()
            renamed[key] = "::".join([rel, *parts[:-1], key])
        new_keys = list(renamed.values())
        if len(set(new_keys)) != len(new_keys):
            raise OdqaBenchError(f"{path}: two cells would share a key after migration; refusing")
        cells = {renamed[k]: v for k, v in obj["cells"].items()}
        plans.append(Migration(path, {**obj, "schema_version": SCHEMA_VERSION, "cells": cells}, renamed))
    return plans


def apply_migration(plans: list[Migration]) -> list[Migration]:
    """Write each changed file atomically; returns the ones written."""
    written = [m for m in plans if m.changed]
    for m in written:
        atomic_write_text(m.path, dumps_stable(m.obj))
    return written
