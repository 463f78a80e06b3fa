"""Small functions: none in ``odqa_core`` runs over 60 lines unless its docstring says why it
cannot be split."""
from __future__ import annotations

import ast
from pathlib import Path

import odqa_core

MAX_LINES = 60


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function longer than ``limit`` lines whose
    docstring does not say it ``cannot be split``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > limit and "cannot be split" not in (ast.get_docstring(node) or ""):
                    out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_function_over_the_limit() -> None:
    assert long_functions(Path(odqa_core.__file__).parent) == []


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(f"def long():\n{body}\n\ndef excused():\n    \"\"\"It cannot be split: one table.\"\"\"\n"
                              f"{body}\n\ndef short():\n    return 1\n", encoding="utf-8")
    assert long_functions(pkg) == [f"pkg/m.py:1 long ({MAX_LINES + 1} lines)"]
