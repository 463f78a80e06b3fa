"""Progress on stderr for long work (model conversion, ONNX export, encoding, tokenising a large
corpus), behind one process-wide switch. Shown when stderr is a terminal outside pytest; the CLI
sets it with ``--progress``/``--quiet``, anyone with ``ODQA_PROGRESS=1``/``0``."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["progress_bar", "progress_enabled", "progress_step", "set_progress"]

_SETTING: bool | None = None
_OFF = ("0", "false", "no", "off")


def set_progress(enabled: bool | None) -> bool | None:
    """Turn progress on or off for this process (None: the automatic choice); returns the
    previous setting, so a caller can put it back."""
    global _SETTING
    previous, _SETTING = _SETTING, enabled
    return previous


def progress_enabled() -> bool:
    """Whether long work reports progress now: :func:`set_progress`, else ``$ODQA_PROGRESS``,
    else stderr is a terminal and no pytest test is running."""
    if _SETTING is not None:
        return _SETTING
    env = os.environ.get("ODQA_PROGRESS", "").strip().lower()
    if env:
        return env not in _OFF
    return sys.stderr.isatty() and "PYTEST_CURRENT_TEST" not in os.environ


def progress_bar(iterable: Iterable[Any] | None = None, *, desc: str, unit: str = "it", total: int | None = None,
                 show: bool | None = None, **tqdm_options: Any) -> Any:
    """A tqdm bar on stderr, shown when ``show`` is True or, with ``show`` None or False, when
    :func:`progress_enabled` (so a caller's ``show_progress=False`` keeps its old default meaning)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=not (show or progress_enabled()), **tqdm_options)


@contextmanager
def progress_step(desc: str) -> Iterator[None]:
    """Announce one long step without a count (a model conversion, a graph export) on stderr,
    then how long it took; nothing when progress is off or the step fails."""
    if not progress_enabled():
        yield
        return
    print(f"odqa-bench: {desc} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"odqa-bench: {desc}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
