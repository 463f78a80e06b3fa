"""Baseline update: merge by default, prune on request (renamed tests lose their old cells)."""
from __future__ import annotations

import json

from odqa_core.baseline import update_baselines
from odqa_core.baseline.store import Record


def _rec(cell: str, value: float) -> Record:
    return Record("suite", cell, "hit@1", value)


def test_merge_keeps_cells_that_did_not_run_and_prune_drops_them(tmp_path):
    update_baselines([_rec("a.py::t[old]", 0.5), _rec("a.py::t[x]", 0.1)], tmp_path, "quick")
    update_baselines([_rec("a.py::t[x]", 0.2)], tmp_path, "quick")
    cells = json.loads((tmp_path / "suite.json").read_text())["cells"]
    assert sorted(cells) == ["a.py::t[old]", "a.py::t[x]"]
    lines = update_baselines([_rec("a.py::t[new]", 0.3), _rec("a.py::t[x]", 0.2)], tmp_path, "quick", prune=True)
    cells = json.loads((tmp_path / "suite.json").read_text())["cells"]
    assert sorted(cells) == ["a.py::t[new]", "a.py::t[x]"]
    assert "1 not run dropped" in lines[0]
    assert cells["a.py::t[x]"]["metrics"]["hit@1"]["value"] == 0.2
