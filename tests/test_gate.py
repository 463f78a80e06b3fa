"""The regression gate on hand-built records and baselines: statuses, tolerance resolution,
speed ratios, unpaired vectors, fold pooling and the minimum-detectable-effect warning."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from odqa_core.baseline import GateConfig, Record, Tolerance, build_baseline, load_config, records_to_cells, run_gate
from odqa_core.baseline.gate import fold_group
from odqa_core.errors import OdqaBenchError

N = 400
QIDS = [f"q{i}" for i in range(N)]
SHA = "a" * 64


def _vec(seed: int, p: float = 0.6, n: int = N) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(np.float64)


def _flip(vec: np.ndarray, down: int = 0, up: int = 0) -> np.ndarray:
    """The first ``down`` hits become misses and the first ``up`` misses become hits."""
    out = vec.copy()
    out[np.flatnonzero(vec == 1)[:down]] = 0
    out[np.flatnonzero(vec == 0)[:up]] = 1
    return out


def _rec(cell: str, metric: str, vec: np.ndarray | None = None, *, value: float | None = None, suite: str = "retrieval",
         qids: list[str] | None = QIDS, kind: str = "quality", hib: bool = True, sha: str = SHA) -> Record:
    pq = None if vec is None else [float(v) for v in vec]
    val = float(np.mean(vec)) if value is None else value
    return Record(suite, cell, metric, val, hib, kind, pq, qids if vec is not None else None, "toy", sha)


def _baseline(records: list[Record], suite: str = "retrieval") -> dict[str, Any]:
    return build_baseline("quick", suite, records_to_cells(records))


def _cfg(**kw: Any) -> GateConfig:
    cfg = GateConfig(permutations=4000, bootstrap=200)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _by_cell(result, metric: str | None = None) -> dict[str, Any]:
    return {c.cell: c for c in result.comparisons if metric is None or c.metric == metric}


def test_every_status() -> None:
    base = {name: _vec(i) for i, name in enumerate(["reg", "imp", "same", "noise", "sha", "gone"])}
    old = [_rec(f"test_r[{k}]", "hit@5", v) for k, v in base.items()]
    new = [
        _rec("test_r[reg]", "hit@5", _flip(base["reg"], down=12)),       # 3 % of 400 queries lost
        _rec("test_r[imp]", "hit@5", _flip(base["imp"], up=12)),
        _rec("test_r[same]", "hit@5", base["same"]),
        _rec("test_r[noise]", "hit@5", _flip(base["noise"], down=1)),    # 0.0025 < tolerance 0.005
        _rec("test_r[sha]", "hit@5", _flip(base["sha"], down=40), sha="b" * 64),
        _rec("test_r[fresh]", "hit@5", _vec(99)),
    ]
    res = run_gate(new, {"retrieval": _baseline(old)}, _cfg())
    got = {c.cell: c.status for c in res.comparisons}
    assert got == {"test_r[reg]": "regressed", "test_r[imp]": "improved", "test_r[same]": "unchanged",
                   "test_r[noise]": "unchanged", "test_r[sha]": "refused", "test_r[fresh]": "new",
                   "test_r[gone]": "missing"}
    assert not res.ok
    assert len(res.failures) == 1 and res.failures[0].startswith("REGRESSED retrieval::test_r[reg] hit@5")
    reg = _by_cell(res)["test_r[reg]"]
    assert reg.delta == pytest.approx(-12 / N)
    assert reg.p_value is not None and reg.p_value < 0.001 and reg.p_adjusted >= reg.p_value
    assert reg.ci is not None and reg.ci[1] < 0
    assert len(reg.worse) == 10 and all(b == 1.0 and c == 0.0 for _q, b, c in reg.worse)
    assert "sha256 differs" in _by_cell(res)["test_r[sha]"].note
    assert any("test_r[fresh] has no baseline" in w for w in res.warnings)
    assert any("test_r[sha] was not compared" in w for w in res.warnings)
    strict = run_gate(new, {"retrieval": _baseline(old)}, _cfg(), strict=True)
    kinds = sorted(f.split(" ", 1)[0] for f in strict.failures)
    assert kinds == ["NEW", "REFUSED", "REGRESSED"]


def test_no_baseline_at_all_is_new_everywhere() -> None:
    res = run_gate([_rec("test_r[a]", "hit@5", _vec(1))], {"retrieval": None}, _cfg())
    assert [c.status for c in res.comparisons] == ["new"] and res.ok


def test_info_metrics_are_never_judged() -> None:
    b = _rec("test_r[a]", "gold_rank", np.full(N, 3.0), kind="info", hib=False)
    c = _rec("test_r[a]", "gold_rank", np.full(N, 50.0), kind="info", hib=False)
    res = run_gate([c], {"retrieval": _baseline([b])}, _cfg())
    assert res.ok and res.comparisons == []


def test_lower_is_better_metric_regresses_upwards() -> None:
    b = np.full(N, 2.0)
    worse = b.copy()
    worse[:30] = 10.0
    res = run_gate([_rec("test_r[a]", "gold_rank", worse, hib=False)],
                   {"retrieval": _baseline([_rec("test_r[a]", "gold_rank", b, hib=False)])}, _cfg())
    assert [c.status for c in res.comparisons] == ["regressed"]
    res = run_gate([_rec("test_r[a]", "gold_rank", b, hib=False)],
                   {"retrieval": _baseline([_rec("test_r[a]", "gold_rank", worse, hib=False)])}, _cfg())
    assert [c.status for c in res.comparisons] == ["improved"] and res.ok


def test_tolerance_resolution_order(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("""
[tool.odqa_bench]
correction = "bh"
permutations = 3000
[tool.odqa_bench.tolerance]
"ndcg@*" = { abs = 0.01 }
"*" = { abs = 0.005 }
speed = { rel = 0.35 }
[tool.odqa_bench.suites.retrieval]
"hit@*" = { abs = 0.02 }
[tool.odqa_bench.suites.perf]
"*" = { rel = 0.5 }
[tool.odqa_bench.cells."retrieval::*k=5*"]
"hit@5" = { abs = 0.05, rel = 0.01 }
""")
    cfg = load_config(pyproject)
    assert (cfg.correction, cfg.permutations) == ("bh", 3000)
    t = cfg.tolerance
    assert t("retrieval", "test_r[bm25/x/k=5]", "hit@5") == Tolerance(abs=0.05, rel=0.01)   # cell override
    assert t("retrieval", "test_r[bm25/x/k=10]", "hit@10") == Tolerance(abs=0.02)          # suite
    assert t("retrieval", "test_r[bm25/x/k=5]", "recall@5") == Tolerance(abs=0.005)        # default '*'
    assert t("retrieval", "test_r[bm25/x/k=5]", "ndcg@10") == Tolerance(abs=0.01)          # first matching glob
    assert t("other", "test_o[a]", "qps_ratio", "speed") == Tolerance(rel=0.35)            # speed for kind speed
    assert t("perf", "test_p[a]", "qps_ratio", "speed") == Tolerance(rel=0.5)              # suite beats speed
    assert t("other", "test_o[a]", "qps_ratio", "quality") == Tolerance(abs=0.005)
    # the resolved tolerance decides the verdict: the same 3-point drop passes under the cell override only
    base5, base10 = _vec(1), _vec(2)
    old = [_rec("test_r[bm25/x/k=5]", "hit@5", base5), _rec("test_r[bm25/x/k=10]", "hit@10", base10)]
    new = [_rec("test_r[bm25/x/k=5]", "hit@5", _flip(base5, down=12)),
           _rec("test_r[bm25/x/k=10]", "hit@10", _flip(base10, down=12))]
    res = run_gate(new, {"retrieval": _baseline(old)}, cfg)
    assert {c.cell: c.status for c in res.comparisons} == {"test_r[bm25/x/k=5]": "unchanged",
                                                            "test_r[bm25/x/k=10]": "regressed"}


@pytest.mark.parametrize("bad", ['correction = "bonferroni"', "alpha = 1.5", '[tool.odqa_bench.tolerance]\n"*" = "x"',
                                 '[tool.odqa_bench.tolerance]\n"*" = { absolute = 1 }', "alpha = "])
def test_bad_config_is_one_clear_error(tmp_path: Path, bad: str) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[tool.odqa_bench]\n{bad}\n")
    with pytest.raises(OdqaBenchError, match="pyproject.toml"):
        load_config(pyproject)


def test_missing_config_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "absent.toml")
    assert (cfg.alpha, cfg.correction, cfg.tolerance("s", "c", "hit@5")) == (0.05, "holm", Tolerance(abs=0.005))


@pytest.mark.parametrize("hib,base,slow,ok", [(True, 2.0, 1.0, False), (True, 2.0, 1.8, True),
                                               (False, 1.5, 3.0, False), (False, 1.5, 1.65, True)])
def test_speed_ratio_rel_tolerance(hib: bool, base: float, slow: float, ok: bool) -> None:
    """A 2x slowdown of a speed ratio fails under rel 0.35; a 10 % change passes."""
    old = [_rec("test_p[bm25]", "speedup_vs_peer", value=base, kind="speed", hib=hib, suite="perf")]
    new = [_rec("test_p[bm25]", "speedup_vs_peer", value=slow, kind="speed", hib=hib, suite="perf")]
    res = run_gate(new, {"perf": _baseline(old, "perf")}, _cfg())
    (c,) = res.comparisons
    assert c.tolerance == Tolerance(rel=0.35) and c.p_value is None
    assert res.ok is ok
    assert c.status == ("unchanged" if ok else "regressed")


def test_unpaired_vectors_fall_back_to_the_mean() -> None:
    b = _vec(5)
    other_ids = [f"x{i}" for i in range(N)]
    old = [_rec("test_r[a]", "hit@5", b), _rec("test_r[b]", "hit@5", b)]
    new = [_rec("test_r[a]", "hit@5", _flip(b, down=20), qids=other_ids),   # same length, other queries
           _rec("test_r[b]", "hit@5", _flip(b, down=1)[:300], qids=QIDS[:300])]  # fewer queries
    res = run_gate(new, {"retrieval": _baseline(old)}, _cfg())
    a, c = _by_cell(res)["test_r[a]"], _by_cell(res)["test_r[b]"]
    for comp in (a, c):
        assert comp.p_value is None and comp.n is None
        assert "do not pair" in comp.note
    assert a.status == "regressed" and a.delta == pytest.approx(-20 / N)
    assert c.current == pytest.approx(float(np.mean(_flip(b, down=1)[:300])))


def test_mde_warning_when_tolerance_is_below_it() -> None:
    small = _vec(7, n=60)
    big = np.zeros(20000)
    big[:100] = 1.0  # rare hits: tiny variance, so a 0.005 tolerance is well above the MDE
    old = [_rec("test_r[small]", "hit@5", small, qids=QIDS[:60]),
           _rec("test_r[big]", "hit@5", big, qids=[f"b{i}" for i in range(20000)])]
    new = [_rec("test_r[small]", "hit@5", small, qids=QIDS[:60]),
           _rec("test_r[big]", "hit@5", big, qids=[f"b{i}" for i in range(20000)])]
    res = run_gate(new, {"retrieval": _baseline(old)}, _cfg())
    comps = _by_cell(res)
    assert comps["test_r[small]"].mde > 0.005 > comps["test_r[big]"].mde
    mde_warnings = [w for w in res.warnings if "minimum detectable effect" in w]
    assert len(mde_warnings) == 1 and "test_r[small]" in mde_warnings[0] and "60 queries" in mde_warnings[0]
    loose = _cfg(default={"*": Tolerance(abs=0.5)})
    assert not [w for w in run_gate(new, {"retrieval": _baseline(old)}, loose).warnings if "detectable" in w]


def test_fold_cells_are_pooled_into_one_verdict() -> None:
    assert fold_group("test_f[bm25/x/fold=3/k=5]") == "test_f[bm25/x/fold=*/k=5]"
    folds = {f: _vec(20 + f, n=80) for f in range(1, 6)}
    cell = "test_f[bm25/x/fold={}]"
    old = [_rec(cell.format(f), "hit@5", v, qids=[f"f{f}q{i}" for i in range(80)]) for f, v in folds.items()]

    def run(drops: dict[int, int]):
        new = [_rec(cell.format(f), "hit@5", _flip(v, down=drops.get(f, 0)), qids=[f"f{f}q{i}" for i in range(80)])
               for f, v in folds.items()]
        return run_gate(new, {"retrieval": _baseline(old)}, _cfg())

    # three queries lost in every fold: no single fold is significant (p = 1/8), the pooled group is
    res = run({f: 3 for f in folds})
    (c,) = res.comparisons
    assert c.cell == "test_f[bm25/x/fold=*]" and c.status == "regressed" and c.n == 400
    assert len(res.failures) == 1 and len(c.folds) == len(c.baseline_folds) == 5
    # the same loss confined to one fold: beyond tolerance pooled, but not significant
    res = run({3: 3})
    (c,) = res.comparisons
    assert res.ok and c.status == "unchanged" and "not significant" in c.note
    assert c.delta == pytest.approx(-3 / 400)


def test_correction_changes_only_adjusted_p() -> None:
    bases = [_vec(30 + i) for i in range(10)]
    old = [_rec(f"test_r[c{i}]", "hit@5", v) for i, v in enumerate(bases)]
    # nine cells lose 5 queries each (p = 1/32 alone), one loses 20 (p ~ 1e-6)
    new = [_rec(f"test_r[c{i}]", "hit@5", _flip(v, down=20 if i == 0 else 5)) for i, v in enumerate(bases)]
    bl = {"retrieval": _baseline(old)}
    none, holm = run_gate(new, bl, _cfg(), correction="none"), run_gate(new, bl, _cfg(), correction="holm")
    for a, b in zip(none.comparisons, holm.comparisons):
        assert a.p_value == b.p_value and a.p_adjusted == a.p_value
        assert b.p_adjusted >= b.p_value
    assert len(none.by_status("regressed")) == 10
    assert [c.cell for c in holm.by_status("regressed")] == ["test_r[c0]"]


def test_terminal_summary_reads_the_result_alone() -> None:
    """The summary is rendered from the gate's result: the correction and alpha it decided with,
    failures with their worst queries, improvements, and the warnings folded into one line."""
    from odqa_core.report.terminal import summary_lines

    base = {name: _vec(40 + i) for i, name in enumerate(["reg", "imp"])}
    old = [_rec(f"test_r[{k}]", "hit@5", v) for k, v in base.items()]
    new = [_rec("test_r[reg]", "hit@5", _flip(base["reg"], down=12)),
           _rec("test_r[imp]", "hit@5", _flip(base["imp"], up=12)), _rec("test_r[fresh]", "hit@5", _vec(98))]
    res = run_gate(new, {"retrieval": _baseline(old)}, _cfg(alpha=0.1), correction="bh")
    assert (res.correction, res.alpha) == ("bh", 0.1)
    lines = summary_lines(res, "quick", verbose=True)
    assert lines[0] == "odqa-bench gate (profile quick, correction bh, alpha 0.1): 1 improved, 1 new, 1 regressed"
    assert lines[1].startswith("FAIL REGRESSED retrieval::test_r[reg] hit@5")
    assert lines[2].startswith("    worst queries of test_r[reg] hit@5: ") and "(1 -> 0)" in lines[2]
    assert lines[3].startswith("improved retrieval::test_r[imp] hit@5")
    assert lines[5].startswith(f"odqa-bench: {len(res.warnings)} warning(s): ")
    assert lines[5].endswith(", 1 no baseline; details with -v or --odqa-report DIR")
    assert lines[6:] == [f"warning: {w}" for w in res.warnings] and len(lines) == 6 + len(res.warnings)
    assert summary_lines(res, "full", report_dir="out")[-1].endswith("details in out/summary.md")
    assert run_gate(new, {"retrieval": _baseline(old)}, _cfg()).correction == "holm"  # the config's default
    info_only = run_gate([_rec("test_r[x]", "qps", _vec(40), kind="info")], {}, _cfg())
    assert summary_lines(info_only, "quick")[0].endswith("): no gated metric (only info figures recorded)")


def test_regressed_queries_carry_their_gold_rank_move():
    from odqa_core.baseline import GateConfig, Record, build_baseline, records_to_cells, run_gate
    from odqa_core.report import to_markdown

    ids = [f"q{i}" for i in range(400)]
    hits = [1.0] * 400
    ranks = [1.0] * 400
    base = [Record("s", "c[x/d/k=5]", "hit@5", 1.0, per_query=hits, query_ids=ids, dataset="d", dataset_sha256="h"),
            Record("s", "c[x/d/k=5]", "gold_rank", 1.0, False, "info", ranks, ids, "d", "h")]
    baseline = build_baseline("quick", "s", records_to_cells(base))
    cur_hits = [0.0] * 40 + [1.0] * 360
    cur_ranks = [7.0] * 40 + [1.0] * 360
    cur = [Record("s", "c[x/d/k=5]", "hit@5", 0.9, per_query=cur_hits, query_ids=ids, dataset="d", dataset_sha256="h"),
           Record("s", "c[x/d/k=5]", "gold_rank", 1.6, False, "info", cur_ranks, ids, "d", "h")]
    res = run_gate(cur, {"s": baseline}, GateConfig(permutations=2000))
    (c,) = res.by_status("regressed")
    assert c.query_notes["q0"] == "gold rank 1 → 7"
    assert "`q0` 1 → 0 (gold rank 1 → 7)" in to_markdown(res)


def test_baselines_keep_per_query_vectors_only_where_the_gate_reads_them() -> None:
    """Quality and speed vectors are compared query by query; information ones are not, except
    the gold ranks printed beside moved queries, so the others stay out of the file."""
    recs = [Record("s", "c", "ndcg@10", 0.5, per_query=[0.0, 1.0], query_ids=["a", "b"]),
            Record("s", "c", "gold_rank", 2.0, kind="info", per_query=[1.0, 3.0], query_ids=["a", "b"]),
            Record("s", "c", "pos_cosine", 0.7, kind="info", per_query=[0.6, 0.8], query_ids=["a", "b"])]
    metrics = records_to_cells(recs)["c"]["metrics"]
    assert "per_query" in metrics["ndcg@10"] and "per_query" in metrics["gold_rank"]
    assert "per_query" not in metrics["pos_cosine"] and metrics["pos_cosine"]["value"] == 0.7


def test_mde_warning_states_tolerance_and_mde_in_the_same_units() -> None:
    """A relative tolerance on a metric in passages (set sizes of hundreds) is compared with the
    minimum detectable effect in passages and in percent of the baseline, never across units."""
    sizes = np.random.default_rng(3).integers(100, 2000, N).astype(np.float64)
    old = [_rec("test_c[a]", "set_size", sizes, hib=False)]
    res = run_gate([_rec("test_c[a]", "set_size", sizes, hib=False)], {"retrieval": _baseline(old)},
                   _cfg(default={"*": Tolerance(rel=0.01)}))
    (w,) = res.warnings
    (c,) = res.comparisons
    base = float(sizes.mean())
    assert w.kind == "mde" and res.warning_counts() == {"mde": 1}
    assert f"tolerance rel 1% (= {0.01 * base:.4g} at baseline {base:.4g})" in w
    assert f"minimum detectable effect {c.mde:.4g} (= {c.mde / base:.1%} of the baseline)" in w
    assert c.mde > 0.01 * base  # the warning is true in either unit
    wide = run_gate([_rec("test_c[a]", "set_size", sizes, hib=False)], {"retrieval": _baseline(old)},
                    _cfg(default={"*": Tolerance(rel=0.5)}))
    assert wide.warnings == []


def test_changed_settings_refuse_like_a_changed_dataset() -> None:
    base = _vec(11)
    old = [Record("retrieval", "b/test_r.py::test_r[a]", "hit@5", float(base.mean()), per_query=list(base),
                  query_ids=QIDS, dataset="toy", dataset_sha256=SHA, settings={"backend": "onnx-int8", "max_length": "256"})]
    new = [Record("retrieval", "b/test_r.py::test_r[a]", "hit@5", 0.0, per_query=[0.0] * N, query_ids=QIDS,
                  dataset="toy", dataset_sha256=SHA, settings={"backend": "openvino-int8", "max_length": "256",
                                                                "encoder": "new key, not in the baseline"})]
    res = run_gate(new, {"retrieval": _baseline(old)}, _cfg(), regenerate="regen {file}")
    (c,) = res.comparisons
    assert c.status == "refused" and res.ok
    assert c.note == ("settings differ from the baseline's (backend onnx-int8 → openvino-int8): comparison refused; "
                      "regenerate the baseline: regen b/test_r.py; or compare like with like: "
                      "--odqa-encoder-backend onnx-int8")
    same = [Record(**{**new[0].to_json(), "settings": {"backend": "onnx-int8"}})]
    assert [c.status for c in run_gate(same, {"retrieval": _baseline(old)}, _cfg()).comparisons] == ["regressed"]
    unrecorded = [Record(**{**new[0].to_json(), "settings": {}})]
    assert [c.status for c in run_gate(unrecorded, {"retrieval": _baseline(old)}, _cfg()).comparisons] == ["regressed"]


def test_retriever_settings_read_the_resolved_encoder() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("faiss")
    from odqa_core.baseline.settings import retriever_settings
    from odqa_core.retrieval import get_retriever

    dense = get_retriever("dense", model="tiny", backend="torch-fp32", max_length=64)
    got = retriever_settings(dense)
    assert got["backend"] == "torch-fp32" and got["max_length"] == "64"
    assert got["encoder"] == dense.encoder.fingerprint and "backend=torch-fp32" in got["encoder"]
    hybrid = get_retriever("hybrid", tokenizer="regex", dense_model="tiny", backend="torch-fp32", max_length=64)
    assert retriever_settings(hybrid) == got
    assert retriever_settings(get_retriever("bm25", tokenizer="regex")) == {}
