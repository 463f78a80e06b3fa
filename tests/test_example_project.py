"""examples/your-retriever end to end, as its users run it: installed with pip, found through its
entry points, baselines written by the harness, an unchanged rerun passing --odqa-strict, and an
injected regression failing the run and naming the cell."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "your-retriever"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of the example without its baselines, and an environment where it is installed."""
    work = tmp_path_factory.mktemp("example")
    proj = work / "your-retriever"
    shutil.copytree(EXAMPLE, proj, ignore=shutil.ignore_patterns("baselines", "__pycache__", "*.egg-info", "build"))
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(proj)], check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    env.pop("MY_RETRIEVER_DEGRADE", None)
    return proj, env


def _pytest(proj: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", *args], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=300)


def test_gate_on_an_outside_project(project: tuple[Path, dict[str, str]]) -> None:
    proj, env = project
    first = _pytest(proj, env, "--odqa-update-baselines")
    assert first.returncode == 0, first.stdout + first.stderr
    written = json.loads((proj / "baselines" / "quick" / "my_retriever.json").read_text(encoding="utf-8"))
    assert len(written["cells"]) == 2
    # the committed baseline is what the harness writes for this project
    shipped = json.loads((EXAMPLE / "baselines" / "quick" / "my_retriever.json").read_text(encoding="utf-8"))
    assert {c: {m: v["value"] for m, v in x["metrics"].items()} for c, x in shipped["cells"].items()} == \
        {c: {m: v["value"] for m, v in x["metrics"].items()} for c, x in written["cells"].items()}
    again = _pytest(proj, env, "--odqa-strict")
    assert again.returncode == 0 and "4 unchanged" in again.stdout, again.stdout + again.stderr
    broken = _pytest(proj, {**env, "MY_RETRIEVER_DEGRADE": "1"}, "--odqa-strict")
    assert broken.returncode != 0, broken.stdout
    assert "REGRESSED my_retriever::tests/test_my_retriever.py::test_overlap[5]" in broken.stdout, broken.stdout


def test_cli_finds_the_outside_retriever_and_dataset(project: tuple[Path, dict[str, str]]) -> None:
    proj, env = project
    listed = subprocess.run([sys.executable, "-m", "odqa_core.cli", "retrievers"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0 and "overlap" in listed.stdout and "min_idf" in listed.stdout, listed.stdout
    out = subprocess.run([sys.executable, "-m", "odqa_core.cli", "run", "--retriever", "overlap", "--dataset",
                          "my-facts"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "my-facts" in out.stdout and "overlap" in out.stdout, out.stdout + out.stderr
