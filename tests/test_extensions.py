"""Extensions join by name: installed entry points (a fake distribution on the path), ``--import``
of a user module, and ``register_dataset``. A broken extension is one line and never breaks the
built-ins."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from odqa_core.data import Dataset, dataset_names, load_dataset, register_dataset
from odqa_core.data import registry as data_registry
from odqa_core.errors import OdqaBenchError

ROOT = Path(__file__).resolve().parent.parent

EXT_MODULE = '''
from odqa_core.data import load_dataset
from odqa_core.retrieval.sparse import BM25


def make(k1: float = 0.3, tokenizer: str = "regex"):
    """A bm25 with k1=0.3 from an installed package."""
    return BM25(k1=k1, tokenizer=tokenizer, name="ext-bm25")


def small(data_folder):
    """The embedded sample under another name; gets the data folder (or None)."""
    ds = load_dataset("default")
    return ds.subset_queries(ds.query_ids[:7], name="ext-small")
'''

ENTRY_POINTS = """\
[odqa_bench.retrievers]
ext-bm25 = fakeext:make
ext-broken = fakeext_missing:make
bm25 = fakeext:make

[odqa_bench.datasets]
ext-small = fakeext:small
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the module ``fakeext`` and its installed metadata (a dist-info with
    entry_points.txt), as pip would leave it."""
    root = tmp_path_factory.mktemp("site")
    (root / "fakeext.py").write_text(EXT_MODULE, encoding="utf-8")
    info = root / "fakeext-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeext\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    return root


def _cli(*args: str, site: Path | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    paths = [str(ROOT)] + ([str(site)] if site else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "odqa_core.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


def _row(out: str, metric: str) -> list[str]:
    return [line.split() for line in out.splitlines() if f" {metric} " in line][0]


# --- entry points ---------------------------------------------------------------------------------

def test_entry_point_retriever_and_dataset_run_by_name(site: Path) -> None:
    proc = _cli("run", "--retriever", "ext-bm25", "bm25:k1=0.3", "--tokenizer", "regex", "--dataset", "ext-small",
                "--k", "1", "5", site=site)
    assert proc.returncode == 0, proc.stderr
    rows = {r[3]: r for r in (line.split() for line in proc.stdout.splitlines()) if "mrr" in r}
    ours, theirs = rows["ext-bm25"], rows["bm25:k1=0.3"]
    assert ours[1] == "ext-small" and ours[ours.index("mrr"):] == theirs[theirs.index("mrr"):]  # same as bm25 k1=0.3
    # the shadowing entry point is named once; the broken one is never loaded for this run
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert warnings == ["odqa-bench: warning: entry point bm25 = fakeext:make (from fakeext 0.1) (odqa_bench.retrievers) "
                        "reuses the built-in name 'bm25'; ignored"], proc.stderr


def test_entry_point_parameters_are_typed_and_listed(site: Path) -> None:
    proc = _cli("run", "--retriever", "ext-bm25:k1=abc", site=site)
    assert proc.returncode == 2 and "retriever 'ext-bm25': parameter k1 expects float, got 'abc'" in proc.stderr
    listing = _cli("retrievers", site=site)
    assert listing.returncode == 0, listing.stderr
    out = listing.stdout
    assert "ext-bm25 (entry point ext-bm25 = fakeext:make (from fakeext 0.1)): A bm25 with k1=0.3" in out
    assert "    k1: float = 0.3\n" in out.split("ext-bm25 (")[1]
    assert "ext-broken (entry point ext-broken = fakeext_missing:make (from fakeext 0.1)): not available: " in out
    broken = [line for line in listing.stderr.splitlines() if "ext-broken" in line]
    assert len(broken) == 1 and broken[0].startswith("odqa-bench: warning: entry point ext-broken = fakeext_missing:make")
    assert "No module named 'fakeext_missing'" in broken[0] and "Traceback" not in listing.stderr
    help_text = " ".join(_cli("run", "--help", site=site).stdout.split())
    assert "ext-bm25" in help_text and "ext-small" in help_text


def test_broken_entry_point_is_one_line_and_builtins_still_run(site: Path) -> None:
    proc = _cli("run", "--retriever", "ext-broken", site=site)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert "entry point ext-broken = fakeext_missing:make (from fakeext 0.1) (odqa_bench.retrievers) failed to load: " \
           "ModuleNotFoundError" in errors[0]
    ok = _cli("run", "--retriever", "bm25", "--tokenizer", "regex", "--k", "1", site=site)
    assert ok.returncode == 0 and " mrr " in ok.stdout


def test_discovery_in_process(site: Path) -> None:
    """``get_retriever``, ``load_dataset`` and ``retriever_names`` see the entry points too (in a
    fresh interpreter: entry points are read once per process)."""
    code = """
import warnings
from odqa_core.bench import cached_dataset
from odqa_core.retrieval import get_retriever, retriever_names
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    names = retriever_names()
assert "ext-bm25" in names and "ext-broken" not in names and "bm25" in names, names
assert [str(w.message) for w in caught if "ext-broken" in str(w.message)], caught
r = get_retriever("ext-bm25", k1=0.5)
assert (r.name, r.k1) == ("ext-bm25", 0.5)
assert cached_dataset("ext-small").n_queries == 7
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


# --- --import -------------------------------------------------------------------------------------

USER_MODULE = '''
from odqa_core.data import load_dataset, register_dataset
from odqa_core.retrieval import register
from odqa_core.retrieval.sparse import TfIdf


@register("my-tfidf")
def my_tfidf(tokenizer: str = "regex"):
    """tf-idf under a user's name."""
    return TfIdf(tokenizer=tokenizer)


register_dataset("my-sample", lambda: load_dataset("default"))
'''


def test_import_registers_user_retrievers_and_datasets(tmp_path: Path) -> None:
    (tmp_path / "myext.py").write_text(USER_MODULE, encoding="utf-8")
    for target in ("myext", str(tmp_path / "myext.py")):  # a module in the current folder, or a file
        proc = _cli("run", "--import", target, "--retriever", "my-tfidf", "tfidf", "--tokenizer", "regex",
                    "--dataset", "my-sample", "--k", "1", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        rows = {r[3]: r for r in (line.split() for line in proc.stdout.splitlines()) if "mrr" in r}
        mine, builtin = rows["my-tfidf"], rows["tfidf"]
        assert mine[mine.index("mrr"):] == builtin[builtin.index("mrr"):]
    listing = _cli("retrievers", "--import", "myext", cwd=tmp_path)
    assert "my-tfidf (registered): tf-idf under a user's name." in listing.stdout
    # without --import the name is unknown, and the error lists the known ones
    proc = _cli("run", "--retriever", "my-tfidf", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown retriever 'my-tfidf'; known: bm25" in proc.stderr


@pytest.mark.parametrize("content, message", [
    (None, "--import nosuchmodule_xyz: ModuleNotFoundError: No module named 'nosuchmodule_xyz'"),
    ("raise RuntimeError('boom')\n", "--import badmod: RuntimeError: boom"),
    ("def broken(:\n", "--import badmod: SyntaxError"),
])
def test_a_bad_import_is_one_error_line(tmp_path: Path, content: str | None, message: str) -> None:
    name = "nosuchmodule_xyz"
    if content is not None:
        name = "badmod"
        (tmp_path / "badmod.py").write_text(content, encoding="utf-8")
    proc = _cli("run", "--import", name, cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("odqa-bench: error: " + message), lines


# --- register_dataset -----------------------------------------------------------------------------

@pytest.fixture
def clean_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_registry, "_REGISTERED", {})
    monkeypatch.setattr(data_registry, "_CACHE", {})


def test_register_dataset_is_found_by_name(clean_datasets: None, tmp_path: Path) -> None:
    seen = []

    def loader(folder: Path | None) -> Dataset:
        seen.append(folder)
        return load_dataset("default").subset_queries(load_dataset("default").query_ids[:3])

    register_dataset("three", loader)
    assert "three" in dataset_names()
    assert load_dataset("three", tmp_path).n_queries == 3 and seen == [tmp_path]
    register_dataset("three", lambda: load_dataset("default"))  # re-registering replaces the cached one
    assert load_dataset("three", tmp_path).n_queries == load_dataset("default").n_queries


@pytest.mark.parametrize("name, loader, message", [
    ("scifact", lambda: None, "built-in dataset name"),
    ("default", lambda: None, "built-in dataset name"),
    ("x", 3, "the loader must be callable"),
])
def test_register_dataset_refuses_bad_input(clean_datasets: None, name: str, loader: object, message: str) -> None:
    with pytest.raises(OdqaBenchError, match=message):
        register_dataset(name, loader)  # type: ignore[arg-type]


def test_a_loader_must_return_a_valid_dataset(clean_datasets: None) -> None:
    register_dataset("not-a-dataset", lambda: {"queries": []})
    with pytest.raises(OdqaBenchError, match="dataset 'not-a-dataset': its loader returned dict, not a Dataset"):
        load_dataset("not-a-dataset")
    empty = load_dataset("default").subset_queries([])
    register_dataset("empty", lambda: empty)
    with pytest.raises(OdqaBenchError, match="no queries"):
        load_dataset("empty")


def test_a_factory_refusing_its_arguments_is_one_line(tmp_path: Path) -> None:
    mod = tmp_path / "refuser.py"
    mod.write_text('from odqa_core.retrieval import register\n\n\n@register("refuser")\n'
                   'def make(width: int = 3):\n    raise ValueError(f"width {width} is not supported")\n',
                   encoding="utf-8")
    out = _cli("run", "--import", str(mod), "--retriever", "refuser", "--dataset", "default", cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "width 3 is not supported" in lines[0], out.stderr
