"""Code from outside odqa-bench: entry points (``odqa_bench.retrievers``, ``odqa_bench.datasets``)
and modules named with ``--import``. One loader for both, so a broken extension gives one line
naming it and never breaks the built-ins."""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import OdqaBenchError, warn

__all__ = ["RETRIEVER_GROUP", "DATASET_GROUP", "describe", "entry_points", "import_user_module", "load_entry_point",
           "load_reference"]

RETRIEVER_GROUP = "odqa_bench.retrievers"
DATASET_GROUP = "odqa_bench.datasets"


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@cache
def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points of ``group`` by name, read once per process; a name claimed
    by two distributions keeps the first and warns."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=group):
        if ep.name in found and found[ep.name].value != ep.value:
            warn(f"entry point {ep.name!r} ({group}) is declared twice ({found[ep.name].value} and {ep.value}); "
                 f"using {found[ep.name].value}")
            continue
        found.setdefault(ep.name, ep)
    return found


def describe(ep: importlib.metadata.EntryPoint) -> str:
    """``name = module:attr (distribution)``, how a user finds the entry point to fix or remove."""
    dist = getattr(ep, "dist", None)
    where = f" (from {dist.name} {dist.version})" if dist is not None else ""
    return f"{ep.name} = {ep.value}{where}"


def load_reference(ref: str) -> Any:
    """Import ``module:attr`` (the entry-point value form); errors propagate to the caller."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def load_entry_point(group: str, ep: importlib.metadata.EntryPoint) -> Callable[..., Any]:
    """The callable an entry point names, or an :class:`OdqaBenchError` naming the entry point."""
    try:
        obj = ep.load()
    except Exception as exc:  # any failure inside third-party code is that package's, reported as one line
        raise OdqaBenchError(f"entry point {describe(ep)} ({group}) failed to load: {_first_line(exc)}") from None
    if not callable(obj):
        raise OdqaBenchError(f"entry point {describe(ep)} ({group}) names {type(obj).__name__}, not a callable")
    return obj


def import_user_module(name: str) -> ModuleType:
    """Import a module named by ``--import``: a dotted module name (the current folder is searched
    too, as ``python -m`` does) or a ``.py`` file. Its ``@register``/``register_dataset`` calls run."""
    try:
        path = Path(name)
        if name.endswith(".py"):
            if not path.is_file():
                raise OdqaBenchError(f"--import {name}: file not found")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise OdqaBenchError(f"--import {name}: not an importable Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(path.stem, None)
                raise
            return module
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.append(str(Path.cwd()))
        return importlib.import_module(name)
    except OdqaBenchError:
        raise
    except Exception as exc:  # a user module may fail in any way: one line naming it
        raise OdqaBenchError(f"--import {name}: {_first_line(exc)}") from None
