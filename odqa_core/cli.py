"""``odqa-bench``: run retrievers on a dataset, score or compare TREC runs, update baselines from
a saved run, write reports, list retrievers, manage caches. Thin: every command calls the modules
beneath."""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .argtypes import positive_int
from .errors import OdqaBenchError, OdqaBenchWarning

__all__ = ["main"]

DEFAULT_KS = [1, 5, 10, 20, 30, 100]


def _print_table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c not in ("dataset", "retriever", "tokenizer", "metric", "query") else "left")
    for r in rows:
        table.add_row(*[f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns])
    Console(width=200).print(table)


def cmd_run(args: argparse.Namespace) -> int:
    """Retrieve with each retriever × tokenizer and print hit/recall/MRR/nDCG at each k."""
    import pandas as pd

    from .data import load_dataset
    from .metrics import answer_hits, evaluate
    from .retrieval import accepts, get_retriever, parse_spec, retrieve

    specs = [parse_spec(spec) for spec in args.retriever]
    records: list[dict[str, Any]] = []
    datasets = {}
    for dname in args.dataset:
        ds = load_dataset(dname, args.data_dir)
        datasets[ds.name] = (ds.sha256, ds.qrels)
        for label, (rname, params) in zip(args.retriever, specs):
            # lexical retrievers run once per tokenizer; dense ones, or a spec naming its tokenizer, once
            tokenizers = args.tokenizer if accepts(rname, "tokenizer") and "tokenizer" not in params else [None]
            for tok in tokenizers:
                kw = dict(params, **({"tokenizer": tok} if tok else {}))
                if accepts(rname, "dataset") and "dataset" not in kw:
                    kw["dataset"] = ds  # e.g. dpr trains on the dataset's folds
                r = get_retriever(rname, **kw).index(ds.corpus)
                run = retrieve(r, ds, max(args.k))
                names = [f"{m}@{k}" for k in args.k for m in ("hit", "recall", "mrr", "ndcg")]
                scores = evaluate(run, ds.qrels, names)
                if ds.answers:
                    hits = answer_hits(run, ds.corpus.texts, ds.answers)
                    ans = evaluate(run, ds.qrels, [f"hit@{k}" for k in args.k], hits=hits)
                    scores.update({f"answer_hit@{k}": ans[f"hit@{k}"] for k in args.k})
                for metric, vec in scores.items():
                    base, _, k = metric.partition("@")
                    records.append({"dataset": ds.name, "retriever": label, "tokenizer": tok or params.get("tokenizer", "-"), "k": int(k),
                                    "metric": base, "value": float(vec.mean()), "per_query": vec})
    frame = pd.DataFrame(records)
    wide = frame.pivot_table(index=["dataset", "retriever", "tokenizer", "metric"], columns="k", values="value").reset_index()
    wide.columns = [str(c) if not isinstance(c, int) else f"@{c}" for c in wide.columns]
    _print_table(wide.to_dict("records"), list(wide.columns), "odqa-bench results (mean over queries)")
    if args.json:
        from .report.runfile import save_run

        save_run(args.json, [_run_record(r, *datasets[r["dataset"]]) for r in records])
        print(f"wrote {args.json} (a run file for odqa-bench report and baseline update)")
    return 0


def _run_record(row: dict[str, Any], sha256: str, qrels: dict[str, dict[str, int]]) -> Any:
    """One ``run`` table entry as a record of suite ``run``, its cell id shaped like the
    retrieval suite's (``run[bm25-regex/default/k=10]``), so saved runs share one format."""
    from .baseline.store import Record
    from .metrics import judged_query_ids

    system = row["retriever"] if row["tokenizer"] == "-" else f"{row['retriever']}-{row['tokenizer']}"
    return Record("run", f"run[{system}/{row['dataset']}/k={row['k']}]", f"{row['metric']}@{row['k']}", row["value"],
                  per_query=[float(x) for x in row["per_query"]], query_ids=judged_query_ids(qrels),
                  dataset=row["dataset"], dataset_sha256=sha256)


def _load_qrels(path: str) -> dict[str, dict[str, int]]:
    from .data.beir import read_qrels_tsv

    qrels = read_qrels_tsv(Path(path))
    if not qrels:
        raise OdqaBenchError(f"{path}: no judgments")
    return qrels


def _metric_names(text: list[str] | None) -> list[str]:
    from .metrics import parse_metric

    names = text or ["ndcg@10", "recall@100", "mrr@10", "precision@10", "map@100", "hit@10"]
    return [str(parse_metric(m)) for m in names]


def _overlap(run: Any, qrels: dict[str, dict[str, int]], path: str) -> None:
    """One stderr warning per way a run and its qrels fail to share queries; none shared is an error."""
    from .compare import query_overlap

    for line in query_overlap(run, qrels, path).warnings(path):
        print(f"odqa-bench: warning: {line}", file=sys.stderr)


def _write(path: str, text: str) -> None:
    from .io import atomic_write_text

    atomic_write_text(path, text)
    print(f"wrote {path}")


def cmd_score(args: argparse.Namespace) -> int:
    """Score a TREC run from any system against TREC/BEIR qrels."""
    from .io import dumps_stable
    from .metrics import evaluate
    from .retrieval import Run

    qrels = _load_qrels(args.qrels)
    run = Run.read_trec(args.run)
    _overlap(run, qrels, args.run)
    scores = evaluate(run, qrels, _metric_names(args.metrics))
    rows = [{"metric": m, "mean": float(v.mean()), "queries": len(v)} for m, v in scores.items()]
    _print_table(rows, ["metric", "mean", "queries"], f"{Path(args.run).name} vs {Path(args.qrels).name}")
    if args.json:
        _write(args.json, dumps_stable({"run": args.run, "qrels": args.qrels, "queries": len(scores.query_ids),
                                        "metrics": {m: float(v.mean()) for m, v in scores.items()},
                                        "per_query": {m: scores.by_query(m) for m in scores}}))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Gate a candidate TREC run against a baseline run on the same qrels: the plugin's tolerances,
    paired test and correction; exit 1 when a metric regressed."""
    from .compare import compare_runs
    from .io import dumps_stable
    from .report import to_json, to_junit, to_markdown
    from .report.terminal import warnings_line
    from .retrieval import Run

    qrels = _load_qrels(args.qrels)
    a, b = Run.read_trec(args.baseline), Run.read_trec(args.candidate)
    _overlap(a, qrels, args.baseline)
    _overlap(b, qrels, args.candidate)
    cfg, _ = _session_like(args)
    cell = args.cell or Path(args.qrels).stem
    result, sa, sb = compare_runs(a, b, qrels, _metric_names(args.metrics), cfg, args.correction, cell)
    rows = [{"metric": c.metric, "baseline": c.baseline, "candidate": c.current, "delta": c.delta,
             "ci95": f"[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]" if c.ci else "-", "p (worse)": c.p_value,
             "p adj": c.p_adjusted, "tolerance": str(c.tolerance), "status": c.status} for c in result.comparisons]
    _print_table(rows, ["metric", "baseline", "candidate", "delta", "ci95", "p (worse)", "p adj", "tolerance", "status"],
                 f"{Path(args.candidate).name} against {Path(args.baseline).name} ({len(sa.query_ids)} queries)")
    first = _metric_names(args.metrics)[0]
    d = sb[first] - sa[first]
    order = d.argsort(kind="stable")
    worst = [sa.query_ids[i] for i in order[: args.show] if d[i] < 0]
    best = [sa.query_ids[i] for i in order[::-1][: args.show] if d[i] > 0]
    ra, rb = _ranks(a, qrels), _ranks(b, qrels)
    for label, items in (("worse", worst), ("better", best)):
        if items:
            print(f"{label} on {first}: " + ", ".join(f"{q} (rank {ra.get(q, '-')}→{rb.get(q, '-')})" for q in items))
    for f in result.failures:
        print(f"FAIL {f}")
    if result.warnings:
        written = args.markdown or args.json
        details = f"details in {written}" if written else "details with --markdown FILE or --json FILE"
        print(warnings_line(result, details), file=sys.stderr)
    if args.json:
        _write(args.json, dumps_stable(to_json(result)))
    if args.markdown:
        _write(args.markdown, to_markdown(result))
    if args.junit:
        _write(args.junit, to_junit(result))
    print("odqa-bench compare: " + ("no regression" if result.ok else f"{len(result.failures)} regression(s)"))
    return 0 if result.ok else 1


def _ranks(run: Any, qrels: dict[str, dict[str, int]]) -> dict[str, int]:
    out = {}
    for i, q in enumerate(run.query_ids):
        gold = {d for d, g in qrels.get(q, {}).items() if g > 0}
        for r, d in enumerate(run.ranked(i), 1):
            if d in gold:
                out[q] = r
                break
    return out


def _session_like(args: argparse.Namespace) -> tuple[Any, Path]:
    """The project's gate settings and its profile's baseline folder, as the plugin finds them."""
    from .baseline import load_config

    root = Path(args.project).resolve()
    base = Path(getattr(args, "baseline_dir", None) or root / "baselines") / getattr(args, "profile", "")
    return load_config(root / "pyproject.toml"), base


def cmd_baseline_update(args: argparse.Namespace) -> int:
    """Write baselines from a run saved with ``--odqa-save-run`` (the run must be all green)."""
    from .baseline import update_baselines
    from .report.runfile import load_run, run_failures

    records = load_run(args.run)
    _cfg, base_dir = _session_like(args)
    for line in update_baselines(records, base_dir, args.profile, run_failures(args.run), prune=args.prune):
        print(line)
    return 0


def cmd_baseline_migrate(args: argparse.Namespace) -> int:
    """Re-key schema-1 baselines by test file path (every profile under the baseline folder)."""
    from .baseline.migrate import apply_migration, plan_migration

    root = Path(args.project).resolve()
    base = Path(args.baseline_dir or root / "baselines")
    plans = plan_migration(base, root)
    written = plans if args.dry_run else apply_migration(plans)
    for m in plans:
        if not m.changed:
            print(f"{m.path}: already schema 2")
        elif m in written:
            first = next(iter(m.renamed.items()))
            print(f"{m.path}: {len(m.renamed)} cells re-keyed{' (dry run)' if args.dry_run else ''}, "
                  f"e.g. {first[0]} -> {first[1]}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Compare a saved run with the baselines and write markdown, HTML, CSV, JUnit and plots."""
    from .baseline import run_gate
    from .baseline.store import load_baseline
    from .report import write_reports
    from .report.runfile import load_run

    records = load_run(args.run)
    cfg, base_dir = _session_like(args)
    baselines = {s: load_baseline(base_dir / f"{s}.json") for s in {r.suite for r in records}}
    result = run_gate(records, baselines, cfg, strict=args.strict, correction=args.correction,
                      regenerate=f"pytest {{file}} --odqa-profile {args.profile} --odqa-update-baselines")
    for p in write_reports(result, args.out, records):
        print(f"wrote {p}")
    for f in result.failures:
        print(f"FAIL {f}")
    return 0 if result.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    """Write a dataset's qrels, and optionally a retriever's run, in TREC format for other tools."""
    from .data import load_dataset
    from .data.beir import write_qrels_trec
    from .retrieval import accepted_params, get_retriever, parse_spec, retrieve

    name, params = parse_spec(args.retriever)
    ds = load_dataset(args.dataset, args.data_dir)
    write_qrels_trec(args.qrels, ds.qrels)
    print(f"wrote {args.qrels} ({sum(len(r) for r in ds.qrels.values())} judgments)")
    if args.run:
        params = {**accepted_params(name, {"tokenizer": args.tokenizer}), **params}
        r = get_retriever(name, **params).index(ds.corpus)
        run = retrieve(r, ds, args.k)
        run.write_trec(args.run, tag=f"{name}-{params.get('tokenizer', '-')}")
        print(f"wrote {args.run} ({len(run.query_ids)} queries, depth {args.k})")
    return 0


def cmd_retrievers(args: argparse.Namespace) -> int:
    """List every retriever (built-in, installed extension, ``--import``) with its parameters."""
    from .retrieval import retriever_catalog

    for info in retriever_catalog():
        head = f"{info.name} ({info.source})"
        if info.error:
            print(f"{head}: not available: {info.error}")
            continue
        print(f"{head}: {info.summary}" if info.summary else head)
        assert info.params is not None
        for p in info.params.params.values():
            head = info.params.nested_head(p.name)
            nested = f"  (set as {head}.KEY=VALUE)" if head else ""
            print(f"    {p.name}: {p.type_name} = {p.default!r}{nested}")
        if info.params.passes_others:
            print(f"    **{info.params.others_name}: further keywords, passed on")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from . import cache

    if args.action == "list":
        entries = cache.list_entries()
        for rel, size in entries:
            print(f"{size:>12,d}  {rel}")
        print(f"{len(entries)} entries in {cache.cache_dir()}")
    else:
        print(f"removed {cache.clear(args.kind)} files from {cache.cache_dir()}")
    return 0


def _extension_opts(q: argparse.ArgumentParser, progress: bool = True) -> None:
    """``--import`` (user modules that register retrievers or datasets) and the progress switch."""
    q.add_argument("--import", action="append", dest="imports", default=[], metavar="MODULE",
                   help="import MODULE (a module name, searched in the current folder too, or a .py file) first, "
                        "so its @register / register_dataset calls run; repeatable")
    if progress:
        g = q.add_mutually_exclusive_group()
        g.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                       help="show progress of long work (model conversion, export, encoding) on stderr. "
                            "Default: only when stderr is a terminal")
        g.add_argument("--quiet", dest="progress", action="store_const", const=False, help="show no progress")


def _imports(argv: list[str]) -> Iterator[str]:
    """The ``--import`` values in ``argv``, read before the parser is built, so imported
    retrievers and datasets appear in ``--help`` and pass its checks."""
    for i, a in enumerate(argv):
        if a == "--import" and i + 1 < len(argv):
            yield argv[i + 1]
        elif a.startswith("--import="):
            yield a.partition("=")[2]


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None, *, _default: Any = warnings.showwarning) -> None:
    """Our own warnings as one ``odqa-bench: warning:`` line; others as Python prints them."""
    if issubclass(category, OdqaBenchWarning):
        print(f"odqa-bench: warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def build_parser() -> argparse.ArgumentParser:
    """The ``odqa-bench`` parser: one subparser per command, each built by its own function."""
    p = argparse.ArgumentParser(prog="odqa-bench", description="Benchmark and regression harness for ODQA/RAG retrieval.")
    sub = p.add_subparsers(dest="command")
    for add in (_add_run, _add_retrievers, _add_score, _add_compare, _add_export, _add_baseline, _add_report,
                _add_cache, _add_eval_rag):
        add(sub)
    return p


def _add_run(sub: Any) -> None:
    from .data import dataset_names
    from .retrieval import known_retrievers
    from .text import TOKENIZERS

    r = sub.add_parser("run", help="run retrievers on a dataset and print a results table (the default command)")
    r.add_argument("--dataset", nargs="+", default=["default"], metavar="NAME|PATH",
                   help=f"named dataset ({', '.join(dataset_names())}) or a SQuAD .json / BEIR folder. Default: default")
    r.add_argument("--retriever", nargs="+", default=["bm25", "tfidf"], metavar="NAME[:k=v,...]",
                   help=f"one or more of {', '.join(known_retrievers())}, each optionally with parameters, e.g. "
                        "dense:model=e5-small,size=L12 or hybrid:dense_model=e5-small,norm=zscore; a nested "
                        "parameter takes a dot: ray:inner=bm25,inner.tokenizer=kiwi. Values are checked against "
                        "the retriever's declared types; 'odqa-bench retrievers' lists them. Default: bm25 tfidf")
    r.add_argument("--tokenizer", nargs="+", default=["regex", "kiwi"], choices=sorted(TOKENIZERS), metavar="NAME",
                   help=f"one or more of {', '.join(TOKENIZERS)}. Default: regex kiwi")
    r.add_argument("--k", nargs="+", type=positive_int, default=DEFAULT_KS, metavar="K", help="cut-offs. Default: 1 5 10 20 30 100")
    r.add_argument("--json", metavar="FILE", help="also write the records and run metadata as JSON")
    r.add_argument("--data-dir", metavar="DIR", help="data folder. Default: $ODQA_DATA_DIR, else ../shared/data")
    _extension_opts(r)
    r.set_defaults(func=cmd_run)


def _add_retrievers(sub: Any) -> None:
    rl = sub.add_parser("retrievers", help="list every retriever with its parameters, types and defaults")
    _extension_opts(rl, progress=False)
    rl.set_defaults(func=cmd_retrievers)


def _add_score(sub: Any) -> None:
    s = sub.add_parser("score", help="score a TREC run file against qrels")
    s.add_argument("--run", required=True, metavar="FILE", help="TREC run: qid Q0 docid rank score tag")
    s.add_argument("--qrels", required=True, metavar="FILE", help="TREC (qid 0 docid grade) or BEIR TSV qrels")
    s.add_argument("--metrics", nargs="+", metavar="NAME@K")
    s.add_argument("--json", metavar="FILE", help="also write the means and per-query values as JSON")
    s.set_defaults(func=cmd_score)


def _add_compare(sub: Any) -> None:
    from .options import add_cli_options

    c = sub.add_parser("compare", help="gate a candidate TREC run against a baseline run: exit 1 on a regression",
                       description="The regression gate of the pytest plugin for runs from any system: per metric, "
                                   "a drop beyond the tolerance of [tool.odqa_bench] (suite 'compare') that the paired "
                                   "randomization test finds significant after correction fails. Exit 1 on a "
                                   "regression, 0 otherwise, 2 on bad input.")
    c.add_argument("--baseline", required=True, metavar="RUN_A")
    c.add_argument("--candidate", required=True, metavar="RUN_B")
    c.add_argument("--qrels", required=True, metavar="FILE")
    c.add_argument("--metrics", nargs="+", metavar="NAME@K")
    add_cli_options(c, ["correction"])
    c.add_argument("--project", default=".", metavar="DIR", help="folder with pyproject.toml (tolerances). Default: .")
    c.add_argument("--cell", metavar="NAME", help="the cell name tolerances match (compare::NAME). Default: the qrels "
                                                   "file's stem")
    c.add_argument("--show", type=int, default=5, help="worse/better queries to list. Default: 5")
    c.add_argument("--json", metavar="FILE", help="write the verdicts as JSON")
    c.add_argument("--markdown", metavar="FILE", help="write a markdown summary (fit for a CI job summary)")
    c.add_argument("--junit", metavar="FILE", help="write JUnit XML: one test case per metric")
    c.set_defaults(func=cmd_compare)


def _add_export(sub: Any) -> None:
    from .text import TOKENIZERS

    e = sub.add_parser("export", help="write a dataset's qrels (and a retriever's run) in TREC format")
    e.add_argument("--dataset", required=True, metavar="NAME|PATH")
    e.add_argument("--qrels", required=True, metavar="FILE")
    e.add_argument("--run", metavar="FILE", help="also write this retriever's run here")
    e.add_argument("--retriever", default="bm25", metavar="NAME[:k=v,...]", help="as in run. Default: bm25")
    e.add_argument("--tokenizer", default="regex", choices=sorted(TOKENIZERS), metavar="NAME", help="Default: regex")
    e.add_argument("--k", type=positive_int, default=100, help="run depth. Default: 100")
    e.add_argument("--data-dir", metavar="DIR")
    _extension_opts(e)
    e.set_defaults(func=cmd_export)


def _gate_opts(q: argparse.ArgumentParser, names: list[str]) -> None:
    """The shared gate options ``names`` and ``--project`` (where pyproject.toml is)."""
    from .options import add_cli_options

    add_cli_options(q, names)
    q.add_argument("--project", default=".", metavar="DIR", help="folder with pyproject.toml. Default: .")


def _add_baseline(sub: Any) -> None:
    b = sub.add_parser("baseline", help="baseline files")
    bsub = b.add_subparsers(dest="action", required=True)
    bu = bsub.add_parser("update", help="write baselines from a run saved with --odqa-save-run")
    bu.add_argument("--run", required=True, metavar="FILE")
    _gate_opts(bu, ["profile", "baseline-dir", "prune"])
    bu.set_defaults(func=cmd_baseline_update)
    bm = bsub.add_parser("migrate", help="rewrite schema-1 baselines (cells keyed by test name) to schema 2 (keyed "
                                         "by test file path and name), every profile, refusing ambiguity")
    _gate_opts(bm, ["baseline-dir"])
    bm.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    bm.set_defaults(func=cmd_baseline_migrate)


def _add_report(sub: Any) -> None:
    rp = sub.add_parser("report", help="compare a saved run with its baselines; write md/HTML/CSV/JUnit/plots")
    rp.add_argument("--run", required=True, metavar="FILE", help="saved with pytest --odqa-save-run FILE")
    rp.add_argument("--out", default="reports", metavar="DIR", help="Default: reports")
    _gate_opts(rp, ["profile", "baseline-dir", "strict", "correction"])
    rp.set_defaults(func=cmd_report)


def _add_cache(sub: Any) -> None:
    ca = sub.add_parser("cache", help="list or clear the token/embedding/model caches")
    ca.add_argument("action", choices=["list", "clear"])
    ca.add_argument("--kind", help="only this kind (tokens, embeddings, models, dpr)")
    ca.set_defaults(func=cmd_cache)


def _add_eval_rag(sub: Any) -> None:
    from .evalrag_cli import add_eval_rag_parser

    _extension_opts(add_eval_rag_parser(sub))


def main(argv: list[str] | None = None) -> int:
    from .extensions import import_user_module
    from .progress import set_progress

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            for module in _imports(argv):
                import_user_module(module)
        except OdqaBenchError as exc:
            print(f"odqa-bench: error: {exc}", file=sys.stderr)
            return 2
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        previous = set_progress(getattr(args, "progress", None))
        try:
            return int(args.func(args) or 0)
        except OdqaBenchError as exc:
            print(f"odqa-bench: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("odqa-bench: interrupted", file=sys.stderr)
            return 130
        finally:
            set_progress(previous)


if __name__ == "__main__":
    sys.exit(main())
