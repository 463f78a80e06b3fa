"""The regression gate: compare a run's records with stored baselines.

A metric regresses when its drop exceeds the tolerance AND, where per-query vectors pair up,
a one-sided paired randomization test says the drop is significant after correcting for every
comparison in the run (Holm by default, or Benjamini-Hochberg). Cells with folds
(``fold=N`` in their id) are judged together: their per-query vectors are pooled, since folds
split the queries, and one fold's noise never decides alone. Improvements never fail.

A cell is not compared at all (status ``refused``) when its dataset sha256 or its recorded
settings (encoder backend, max length, fingerprint) differ from the baseline's: the numbers
would measure the change of data or settings, not of the code. A speed cell whose baseline was
measured on another CPU class (status ``other-cpu``) is not compared either, and never fails a
run, strict or not: CI machines differ, and only a baseline of the same class says anything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import GateConfig, Tolerance
from .settings import BACKEND, CPU_ISA, settings_diff
from .stats import adjust, mde, paired_test, seed_for
from .store import Record, ids_sha256, unpack_vector

__all__ = ["Comparison", "GateResult", "GateWarning", "run_gate", "fold_group", "DEFAULT_REGENERATE"]

# how to regenerate a refused cell's baseline; ``{file}`` is the test file of the cell's key
DEFAULT_REGENERATE = "pytest {file} --odqa-update-baselines"

_FOLD = re.compile(r"fold=\d+")

# one cell's (cell id, baseline metric entry, current record) within a (suite, fold group, metric) group
Entry = tuple[str, dict[str, Any] | None, Record | None]
GroupKey = tuple[str, str, str]


def fold_group(cell: str) -> str:
    """The id shared by a cell's folds (``.../fold=3/...`` -> ``.../fold=*/...``)."""
    return _FOLD.sub("fold=*", cell)


@dataclass
class Comparison:
    """One (suite, cell or fold group, metric) verdict with everything a report shows."""

    suite: str
    cell: str
    metric: str
    kind: str
    higher_is_better: bool
    baseline: float | None
    current: float | None
    tolerance: Tolerance
    status: str = "unchanged"   # regressed | improved | unchanged | new | missing | refused | other-cpu
    delta: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    n: int | None = None
    mde: float | None = None
    folds: list[float] = field(default_factory=list)
    baseline_folds: list[float] = field(default_factory=list)
    worse: list[tuple[str, float, float]] = field(default_factory=list)
    better: list[tuple[str, float, float]] = field(default_factory=list)
    query_notes: dict[str, str] = field(default_factory=dict)  # query id -> gold rank move, text
    note: str = ""

    @property
    def drop(self) -> float:
        if self.delta is None:
            return 0.0
        return -self.delta if self.higher_is_better else self.delta

    def line(self) -> str:
        p = "n/a" if self.p_value is None else f"{self.p_value:.4g}"
        pa = "n/a" if self.p_adjusted is None else f"{self.p_adjusted:.4g}"
        b = "—" if self.baseline is None else f"{self.baseline:.4f}"
        c = "—" if self.current is None else f"{self.current:.4f}"
        d = "—" if self.delta is None else f"{self.delta:+.4f}"
        return (f"{self.suite}::{self.cell} {self.metric}: baseline {b}, current {c}, delta {d}, "
                f"p {p} (adjusted {pa}), tolerance {self.tolerance}" + (f"; {self.note}" if self.note else ""))


class GateWarning(str):
    """A warning line with its ``kind`` (``mde``, ``new``, ``refused``, ``other-cpu``), so a summary can fold
    warnings of one kind into a count."""

    kind: str

    def __new__(cls, text: str, kind: str) -> GateWarning:
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj


@dataclass
class GateResult:
    """Every comparison of a run, the failures and warnings among them, and the ``correction``
    and ``alpha`` the verdicts were decided with."""

    comparisons: list[Comparison]
    failures: list[str]
    warnings: list[GateWarning]
    correction: str
    alpha: float

    @property
    def ok(self) -> bool:
        return not self.failures

    def warning_counts(self) -> dict[str, int]:
        """Warnings per kind, in order of first appearance."""
        out: dict[str, int] = {}
        for w in self.warnings:
            kind = getattr(w, "kind", "other")
            out[kind] = out.get(kind, 0) + 1
        return out

    def by_status(self, status: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.status == status]


def _pool(entries: list[Entry]) -> dict[str, Any]:
    """Pool the fold cells of one group for one metric."""
    base_vals, cur_vals, base_vecs, cur_vecs, ids, pairable = [], [], [], [], [], True
    for _cell, b, r in entries:
        if b is not None:
            base_vals.append(float(b["value"]))
        if r is not None:
            cur_vals.append(float(r.value))
        if b is None or r is None or r.per_query is None or "per_query" not in b:
            pairable = False
            continue
        bv = unpack_vector(b["per_query"])
        cv = np.asarray(r.per_query, dtype=np.float64)
        same_ids = r.query_ids is None or b.get("query_ids_sha256") in (None, ids_sha256(list(r.query_ids)))
        if len(bv) != len(cv) or not same_ids:
            pairable = False
            continue
        base_vecs.append(bv)
        cur_vecs.append(cv)
        ids.extend(r.query_ids or [f"{_cell}#{i}" for i in range(len(cv))])
    out: dict[str, Any] = {"base_vals": base_vals, "cur_vals": cur_vals, "pairable": pairable and bool(cur_vecs)}
    if out["pairable"]:
        out["base_vec"] = np.concatenate(base_vecs)
        out["cur_vec"] = np.concatenate(cur_vecs)
        out["ids"] = ids
    return out


def _cell_file(cell: str) -> str:
    return cell.split("::", 1)[0] if "::" in cell else "<test file>"


def _mde_warning(suite: str, group: str, metric: str, tol: Tolerance, baseline: float, value: float, n: int,
                 cfg: GateConfig) -> str:
    """The tolerance and the minimum detectable effect in the same units: absolute, and relative
    to the baseline where the tolerance is relative."""
    allowed = tol.allowed(baseline)
    if tol.rel and baseline:
        tol_text = f"{tol} (= {allowed:.4g} at baseline {baseline:.4g})"
        mde_text = f"{value:.4g} (= {value / abs(baseline):.1%} of the baseline)"
    else:
        tol_text, mde_text = str(tol), f"{value:.4g}"
    return (f"{suite}::{group} {metric}: tolerance {tol_text} is below the minimum detectable effect {mde_text} "
            f"of its {n} queries (alpha {cfg.alpha}, power {cfg.power}); smaller drops cannot be told from noise")


@dataclass
class _Groups:
    """Records grouped for judging: (suite, fold group, metric) -> entries, each group's kind and
    direction, and the cells refused or compared despite changed settings (with their notes)."""

    entries: dict[GroupKey, list[Entry]] = field(default_factory=dict)
    meta: dict[GroupKey, tuple[str, bool]] = field(default_factory=dict)
    refusal: dict[tuple[str, str], str] = field(default_factory=dict)
    other_cpu: dict[tuple[str, str], str] = field(default_factory=dict)
    changed: dict[tuple[str, str], str] = field(default_factory=dict)
    seen_cells: set[tuple[str, str]] = field(default_factory=set)


def run_gate(records: list[Record], baselines: dict[str, dict[str, Any] | None], cfg: GateConfig,
             strict: bool = False, correction: str | None = None, regenerate: str = DEFAULT_REGENERATE,
             compare_changed_settings: str = "") -> GateResult:
    """Compare ``records`` with ``baselines`` (suite -> baseline object or None). ``regenerate``
    is the command a refusal names (``{file}``: the cell's test file). ``compare_changed_settings``
    names the option that asked for cells with changed settings to be compared anyway (e.g. an
    explicit encoder backend: "what would switching do?"); empty refuses them."""
    correction = correction or cfg.correction
    warnings: list[GateWarning] = []
    groups = _group(records, baselines, regenerate, compare_changed_settings)
    comps = [c for key in sorted(groups.entries) if (c := _compare(key, groups, cfg, warnings)) is not None]
    # multiple comparisons across the whole run
    with_p = [c for c in comps if c.p_value is not None]
    for c, pa in zip(with_p, adjust([c.p_value for c in with_p], correction)):  # type: ignore[misc]
        c.p_adjusted = pa
    failures = _decide(comps, cfg, strict, warnings)
    _attach_ranks(comps, records, baselines, groups.entries)
    comps += _missing(baselines, groups.seen_cells)
    return GateResult(comps, failures, warnings, correction, cfg.alpha)


def _group(records: list[Record], baselines: dict[str, dict[str, Any] | None], regenerate: str,
           compare_changed_settings: str) -> _Groups:
    """Each record with its baseline entry, under its fold group; cells whose data or settings
    moved are noted as refused (or as compared anyway when ``compare_changed_settings`` asks)."""
    out = _Groups()
    for r in records:
        bcell = ((baselines.get(r.suite) or {}).get("cells", {})).get(r.cell)
        out.seen_cells.add((r.suite, r.cell))
        _note_moved(out, r, bcell, regenerate, compare_changed_settings)
        bm = (bcell or {}).get("metrics", {}).get(r.metric)
        key = (r.suite, fold_group(r.cell), r.metric)
        out.entries.setdefault(key, []).append((r.cell, bm, r))
        out.meta[key] = (r.kind, r.higher_is_better)
    return out


def _note_moved(out: _Groups, r: Record, bcell: dict[str, Any] | None, regenerate: str,
                compare_changed_settings: str) -> None:
    """Refuse a cell whose dataset sha256 or settings differ from its baseline's, or note that
    it is compared anyway as asked."""
    diff = settings_diff(bcell.get("settings") or {}, r.settings) if bcell and r.settings else []
    where = (r.suite, r.cell)
    if bcell and r.dataset_sha256 and bcell.get("dataset_sha256") and bcell["dataset_sha256"] != r.dataset_sha256:
        out.refusal[where] = (f"dataset sha256 differs from the baseline's ({bcell['dataset_sha256'][:12]}…): "
                              "comparison refused; if the data change is intended, regenerate the "
                              f"baseline: {regenerate.format(file=_cell_file(r.cell))}")
    elif any(d.startswith(f"{CPU_ISA} ") for d in diff):
        out.other_cpu[where] = (f"speed baseline measured on another CPU class ({'; '.join(diff)}): not "
                                "compared; record one on this class to gate speed here: "
                                f"{regenerate.format(file=_cell_file(r.cell))}")
    elif diff and compare_changed_settings:
        out.changed[where] = (f"settings differ from the baseline's ({'; '.join(diff)}): compared as asked "
                              f"by {compare_changed_settings}")
    elif diff:
        like = (f"; or compare like with like: --odqa-encoder-backend {bcell['settings'][BACKEND]}"  # type: ignore[index]
                if any(d.startswith(f"{BACKEND} ") for d in diff) else "")
        out.refusal[where] = (f"settings differ from the baseline's ({'; '.join(diff)}): comparison refused; "
                              f"regenerate the baseline: {regenerate.format(file=_cell_file(r.cell))}{like}")


def _compare(key: GroupKey, groups: _Groups, cfg: GateConfig, warnings: list[GateWarning]) -> Comparison | None:
    """One group's comparison with its baseline (None for ``info`` metrics, which are never judged);
    its status is settled later by :func:`_decide` unless it is ``refused`` or ``new``."""
    suite, group, metric = key
    entries = groups.entries[key]
    kind, hib = groups.meta[key]
    if kind == "info":
        return None
    tol = cfg.tolerance(suite, group, metric, kind)
    pooled = _pool(entries)
    cur = float(np.mean(pooled["cur_vec"])) if pooled["pairable"] else float(np.mean(pooled["cur_vals"]))
    comp = Comparison(suite, group, metric, kind, hib, None, cur, tol, folds=pooled["cur_vals"] if len(entries) > 1 else [])
    mism = [c for c, _b, _r in entries if (suite, c) in groups.refusal]
    if mism:
        comp.status, comp.note = "refused", groups.refusal[(suite, mism[0])]
        return comp
    elsewhere = [c for c, _b, _r in entries if (suite, c) in groups.other_cpu]
    if elsewhere:
        comp.status, comp.note = "other-cpu", groups.other_cpu[(suite, elsewhere[0])]
        return comp
    if not pooled["base_vals"] or len(pooled["base_vals"]) < len(entries):
        comp.status, comp.note = "new", "no baseline for this cell"
        return comp
    moved = [groups.changed[(suite, c)] for c, _b, _r in entries if (suite, c) in groups.changed]
    if moved:
        comp.note = moved[0]
    comp.baseline = float(np.mean(pooled["base_vec"])) if pooled["pairable"] else float(np.mean(pooled["base_vals"]))
    comp.baseline_folds = pooled["base_vals"] if len(entries) > 1 else []
    comp.delta = comp.current - comp.baseline  # type: ignore[operator]
    if pooled["pairable"]:
        _paired(comp, pooled, cfg, warnings)
    elif kind == "quality":
        comp.note = ((comp.note + "; ") if comp.note else "") + ("per-query vectors do not pair (query set "
                                                                "changed?): judged on the mean alone")
    return comp


def _paired(comp: Comparison, pooled: dict[str, Any], cfg: GateConfig, warnings: list[GateWarning]) -> None:
    """The paired randomization test, the minimum detectable effect (warned about when the
    tolerance is below it) and the queries that moved most, on the pooled per-query vectors."""
    b, c = pooled["base_vec"], pooled["cur_vec"]
    hib = comp.higher_is_better
    pr = paired_test(b, c, hib, cfg.permutations, cfg.bootstrap, seed_for(comp.suite, comp.cell, comp.metric))
    comp.p_value, comp.ci, comp.n = pr.p_value, (pr.ci_low, pr.ci_high), pr.n
    comp.mde = mde(b, cfg.alpha, cfg.power, cfg.mde_rho)
    d = (c - b) if hib else (b - c)
    order = np.argsort(d, kind="stable")
    ids = pooled["ids"]
    comp.worse = [(ids[i], float(b[i]), float(c[i])) for i in order[:10] if d[i] < 0]
    comp.better = [(ids[i], float(b[i]), float(c[i])) for i in order[::-1][:10] if d[i] > 0]
    if comp.tolerance.allowed(comp.baseline) < comp.mde:  # type: ignore[arg-type]
        text = _mde_warning(comp.suite, comp.cell, comp.metric, comp.tolerance, comp.baseline,  # type: ignore[arg-type]
                            comp.mde, pr.n, cfg)
        warnings.append(GateWarning(text, "mde"))


def _decide(comps: list[Comparison], cfg: GateConfig, strict: bool, warnings: list[GateWarning]) -> list[str]:
    """Settle each comparison's status and return the failures: a drop beyond tolerance that is
    significant after correction regresses; refused and new cells fail only in ``strict`` mode
    (else one warning per cell); a speed cell whose baseline is from another CPU class is never
    judged, strict or not: its numbers say nothing about the code."""
    failures: list[str] = []
    told: set[tuple[str, str, str]] = set()
    for c in comps:
        if c.status in ("refused", "new", "other-cpu"):
            fails_strict = c.status != "other-cpu"
            if strict and fails_strict:
                failures.append(f"{c.status.upper()} {c.line()}")
            elif (c.status, c.suite, c.cell) not in told:
                told.add((c.status, c.suite, c.cell))
                what = "has no baseline" if c.status == "new" else f"was not compared: {c.note}"
                tail = " (strict mode fails on this)" if fails_strict else ""
                warnings.append(GateWarning(f"{c.suite}::{c.cell} {what}{tail}", c.status))
            continue
        allowed = c.tolerance.allowed(c.baseline or 0.0)
        if c.drop > allowed + 1e-12:
            significant = c.p_adjusted is None or c.p_adjusted < cfg.alpha
            if significant:
                c.status = "regressed"
                failures.append(f"REGRESSED {c.line()}")
            else:
                c.note = (c.note + "; " if c.note else "") + "drop beyond tolerance but not significant"
        elif -c.drop > allowed + 1e-12:
            c.status = "improved"
    return failures


def _missing(baselines: dict[str, dict[str, Any] | None], seen_cells: set[tuple[str, str]]) -> list[Comparison]:
    """Baseline cells of the suites that ran which this run did not record."""
    out = []
    for suite, base in sorted(baselines.items()):
        for cell in sorted((base or {}).get("cells", {})):
            if (suite, cell) not in seen_cells and any(s == suite for s, _ in seen_cells):
                out.append(Comparison(suite, cell, "*", "quality", True, None, None, Tolerance(), status="missing",
                                      note="in the baseline but not run"))
    return out


def _attach_ranks(comps: list[Comparison], records: list[Record], baselines: dict[str, dict[str, Any] | None],
                  groups: dict[GroupKey, list[Entry]]) -> None:
    """For regressed metrics, note each worst query's gold rank before and after, where the cell
    recorded a ``gold_rank`` vector (kind info) in both the baseline and this run."""
    ranks: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for r in records:
        if r.metric != "gold_rank" or r.per_query is None or r.query_ids is None:
            continue
        b = ((baselines.get(r.suite) or {}).get("cells", {}).get(r.cell) or {}).get("metrics", {}).get("gold_rank")
        if not b or "per_query" not in b:
            continue
        old = unpack_vector(b["per_query"])
        if len(old) != len(r.per_query) or b.get("query_ids_sha256") not in (None, ids_sha256(list(r.query_ids))):
            continue
        ranks[(r.suite, r.cell)] = {q: (float(o), float(n)) for q, o, n in zip(r.query_ids, old, r.per_query)}
    for c in comps:
        if c.status != "regressed" or not c.worse:
            continue
        cells = [cell for cell, _b, _r in groups.get((c.suite, c.cell, c.metric), [])]
        merged: dict[str, tuple[float, float]] = {}
        for cell in cells:
            merged.update(ranks.get((c.suite, cell), {}))
        for qid, _b, _c in c.worse:
            if qid in merged:
                o, n = merged[qid]
                c.query_notes[qid] = f"gold rank {_rank(o)} → {_rank(n)}"


def _rank(x: float) -> str:
    return str(int(x)) if x == x and x < 1e9 else "—"
