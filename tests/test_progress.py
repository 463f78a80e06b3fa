"""Progress on long work: one switch, quiet under pytest unless asked, on stderr in the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from odqa_core import progress
from odqa_core.progress import progress_bar, progress_enabled, progress_step, set_progress

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def automatic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_SETTING", None)
    monkeypatch.delenv("ODQA_PROGRESS", raising=False)


def test_quiet_under_pytest_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # even on a terminal
    assert os.environ.get("PYTEST_CURRENT_TEST") and not progress_enabled()
    monkeypatch.setenv("ODQA_PROGRESS", "1")
    assert progress_enabled()
    monkeypatch.setenv("ODQA_PROGRESS", "0")
    assert not progress_enabled()
    assert set_progress(True) is None and progress_enabled()  # the switch wins over the environment
    assert set_progress(None) is True and not progress_enabled()


def test_terminal_outside_pytest_shows_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress_enabled()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not progress_enabled()


def test_bar_and_step_write_to_stderr_only_when_on(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress_bar(range(3), desc="work")) == [0, 1, 2]
    with progress_step("converting"):
        pass
    assert capsys.readouterr().err == ""
    assert list(progress_bar(range(3), desc="forced", show=True)) == [0, 1, 2]  # a caller's show_progress=True
    set_progress(True)
    list(progress_bar(range(3), desc="work"))
    with progress_step("converting"):
        pass
    with pytest.raises(RuntimeError), progress_step("failing"):
        raise RuntimeError("x")
    out = capsys.readouterr()
    assert out.out == ""
    assert "forced" in out.err and "work" in out.err and "3/3" in out.err
    assert "odqa-bench: converting ...\n" in out.err and "odqa-bench: converting: done in " in out.err
    assert "odqa-bench: failing ...\n" in out.err and "failing: done" not in out.err


@pytest.mark.parametrize("flag, shown", [("--progress", True), (None, False), ("--quiet", False)])
def test_cli_dense_run_reports_export_and_encoding(tmp_path: Path, flag: str | None, shown: bool) -> None:
    """A cold dense run: the ONNX export and the encoding show on stderr with --progress, and
    nothing shows without it (stderr is not a terminal here) or with --quiet."""
    pytest.importorskip("torch")
    pytest.importorskip("faiss")
    pytest.importorskip("onnxruntime")
    env = {**os.environ, "ODQA_CACHE_DIR": str(tmp_path / "cache")}
    args = ["run", "--retriever", "dense:model=tiny,backend=onnx-fp32", "--k", "1", *([flag] if flag else [])]
    proc = subprocess.run([sys.executable, "-m", "odqa_core.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert " mrr " in proc.stdout
    reported = ["building the fp32 ONNX graph of tiny", "encode passages", "encode queries"]
    if shown:
        assert all(r in proc.stderr for r in reported), proc.stderr
        assert "ONNX graph of tiny" in proc.stderr and ": done in " in proc.stderr
    else:
        assert not any(r in proc.stderr for r in reported), proc.stderr
