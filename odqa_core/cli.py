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

from .errors import OdqaBenchError, OdqaBenchWarning

__all__ = ["main"]

DEFAULT_KS = [1, 5, 10, 20, 30, 100]


def _ks(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"k must be a positive integer, got {text!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"k must be a positive integer, got {text!r}")
    return k


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

    from .baseline.store import run_metadata
    from .data import load_dataset
    from .io import atomic_write_json
    from .metrics import answer_hits, evaluate
    from .retrieval import accepts, get_retriever, parse_spec, retrieve

    specs = [parse_spec(spec) for spec in args.retriever]
    records: list[dict[str, Any]] = []
    datasets = {}
    for dname in args.dataset:
        ds = load_dataset(dname, args.data_dir)
        datasets[ds.name] = ds.sha256
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
                                    "metric": base, "value": float(vec.mean())})
    frame = pd.DataFrame(records)
    wide = frame.pivot_table(index=["dataset", "retriever", "tokenizer", "metric"], columns="k", values="value").reset_index()
    wide.columns = [str(c) if not isinstance(c, int) else f"@{c}" for c in wide.columns]
    _print_table(wide.to_dict("records"), list(wide.columns), "odqa-bench results (mean over queries)")
    if args.json:
        atomic_write_json(args.json, {"records": records, "datasets": datasets, **run_metadata()})
        print(f"wrote {args.json}")
    return 0


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


def _check_overlap(run_ids: list[str], qrels: dict[str, dict[str, int]], path: str) -> None:
    if not set(run_ids) & set(qrels):
        raise OdqaBenchError(f"{path}: no query id of the run appears in the qrels; do the ids match?")


def cmd_score(args: argparse.Namespace) -> int:
    """Score a TREC run from any system against TREC/BEIR qrels."""
    from .metrics import evaluate
    from .retrieval import Run

    qrels = _load_qrels(args.qrels)
    run = Run.read_trec(args.run)
    _check_overlap(run.query_ids, qrels, args.run)
    scores = evaluate(run, qrels, _metric_names(args.metrics))
    rows = [{"metric": m, "mean": float(v.mean()), "queries": len(v)} for m, v in scores.items()]
    _print_table(rows, ["metric", "mean", "queries"], f"{Path(args.run).name} vs {Path(args.qrels).name}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Paired comparison of two TREC runs over the same queries: delta, 95 % CI, p-values."""
    from .baseline.stats import adjust, paired_test, seed_for
    from .metrics import evaluate
    from .retrieval import Run

    qrels = _load_qrels(args.qrels)
    a, b = Run.read_trec(args.baseline), Run.read_trec(args.candidate)
    _check_overlap(a.query_ids, qrels, args.baseline)
    _check_overlap(b.query_ids, qrels, args.candidate)
    names = _metric_names(args.metrics)
    sa, sb = evaluate(a, qrels, names), evaluate(b, qrels, names)
    qids = [q for q, g in qrels.items() if any(v > 0 for v in g.values())]
    rows = []
    for m in names:
        pr = paired_test(sa[m], sb[m], True, seed=seed_for("compare", m))
        rows.append({"metric": m, "baseline": float(sa[m].mean()), "candidate": float(sb[m].mean()),
                     "delta": pr.delta, "ci95": f"[{pr.ci_low:+.4f}, {pr.ci_high:+.4f}]", "p (worse)": pr.p_value,
                     "worse": pr.n_worse, "better": pr.n_better, "_d": sb[m] - sa[m]})
    for r, pa in zip(rows, adjust([r["p (worse)"] for r in rows], args.correction)):
        r["p adj"] = pa
    _print_table(rows, ["metric", "baseline", "candidate", "delta", "ci95", "p (worse)", "p adj", "worse", "better"],
                 f"{Path(args.candidate).name} against {Path(args.baseline).name} ({len(qids)} queries)")
    first = rows[0]
    order = first["_d"].argsort(kind="stable")
    worst = [(qids[i], float(first["_d"][i])) for i in order[: args.show] if first["_d"][i] < 0]
    best = [(qids[i], float(first["_d"][i])) for i in order[::-1][: args.show] if first["_d"][i] > 0]
    ra, rb = _ranks(a, qrels), _ranks(b, qrels)
    for label, items in (("worse", worst), ("better", best)):
        if items:
            print(f"{label} on {first['metric']}: " + ", ".join(f"{q} (rank {ra.get(q, '-')}→{rb.get(q, '-')})" for q, _ in items))
    return 0


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
    from .baseline import load_config

    root = Path(args.project).resolve()
    return load_config(root / "pyproject.toml"), Path(args.baseline_dir or root / "baselines") / args.profile


def cmd_baseline_update(args: argparse.Namespace) -> int:
    """Write baselines from a run saved with ``--odqa-save-run`` (the run must be all green)."""
    from .baseline.store import build_baseline, load_baseline, merge_cells, records_to_cells, write_baseline
    from .report.runfile import load_run, run_failures

    records = load_run(args.run)
    failed = run_failures(args.run)
    if failed:
        raise OdqaBenchError(f"{args.run}: {len(failed)} test(s) failed in that run (e.g. {failed[0]}); baselines not updated")
    _cfg, base_dir = _session_like(args)
    by_suite: dict[str, list[Any]] = {}
    for r in records:
        by_suite.setdefault(r.suite, []).append(r)
    for suite, recs in sorted(by_suite.items()):
        path = base_dir / f"{suite}.json"
        cells = merge_cells(load_baseline(path), records_to_cells(recs))
        write_baseline(path, build_baseline(args.profile, suite, cells))
        print(f"wrote {path} ({len({r.cell for r in recs})} cells updated, {len(cells)} in all)")
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
    result = run_gate(records, baselines, cfg, strict=args.strict, correction=args.correction)
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
    from .data import dataset_names
    from .retrieval import known_retrievers
    from .text import TOKENIZERS

    p = argparse.ArgumentParser(prog="odqa-bench", description="Benchmark and regression harness for ODQA/RAG retrieval.")
    sub = p.add_subparsers(dest="command")
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
    r.add_argument("--k", nargs="+", type=_ks, default=DEFAULT_KS, metavar="K", help="cut-offs. Default: 1 5 10 20 30 100")
    r.add_argument("--json", metavar="FILE", help="also write the records and run metadata as JSON")
    r.add_argument("--data-dir", metavar="DIR", help="data folder. Default: $ODQA_DATA_DIR, else ../shared/data")
    _extension_opts(r)
    r.set_defaults(func=cmd_run)

    rl = sub.add_parser("retrievers", help="list every retriever with its parameters, types and defaults")
    _extension_opts(rl, progress=False)
    rl.set_defaults(func=cmd_retrievers)

    s = sub.add_parser("score", help="score a TREC run file against qrels")
    s.add_argument("--run", required=True, metavar="FILE", help="TREC run: qid Q0 docid rank score tag")
    s.add_argument("--qrels", required=True, metavar="FILE", help="TREC (qid 0 docid grade) or BEIR TSV qrels")
    s.add_argument("--metrics", nargs="+", metavar="NAME@K")
    s.set_defaults(func=cmd_score)

    c = sub.add_parser("compare", help="paired comparison of two TREC runs (delta, 95%% CI, p-value)")
    c.add_argument("--baseline", required=True, metavar="RUN_A")
    c.add_argument("--candidate", required=True, metavar="RUN_B")
    c.add_argument("--qrels", required=True, metavar="FILE")
    c.add_argument("--metrics", nargs="+", metavar="NAME@K")
    c.add_argument("--correction", default="holm", choices=["holm", "bh", "none"])
    c.add_argument("--show", type=int, default=5, help="worse/better queries to list. Default: 5")
    c.set_defaults(func=cmd_compare)

    e = sub.add_parser("export", help="write a dataset's qrels (and a retriever's run) in TREC format")
    e.add_argument("--dataset", required=True, metavar="NAME|PATH")
    e.add_argument("--qrels", required=True, metavar="FILE")
    e.add_argument("--run", metavar="FILE", help="also write this retriever's run here")
    e.add_argument("--retriever", default="bm25", metavar="NAME[:k=v,...]", help="as in run. Default: bm25")
    e.add_argument("--tokenizer", default="regex", choices=sorted(TOKENIZERS), metavar="NAME", help="Default: regex")
    e.add_argument("--k", type=_ks, default=100, help="run depth. Default: 100")
    e.add_argument("--data-dir", metavar="DIR")
    _extension_opts(e)
    e.set_defaults(func=cmd_export)

    def gate_opts(q: argparse.ArgumentParser) -> None:
        q.add_argument("--profile", default="quick", help="Default: quick")
        q.add_argument("--baseline-dir", metavar="DIR", help="Default: <project>/baselines")
        q.add_argument("--project", default=".", metavar="DIR", help="folder with pyproject.toml. Default: .")

    b = sub.add_parser("baseline", help="baseline files")
    bsub = b.add_subparsers(dest="action", required=True)
    bu = bsub.add_parser("update", help="write baselines from a run saved with --odqa-save-run")
    bu.add_argument("--run", required=True, metavar="FILE")
    gate_opts(bu)
    bu.set_defaults(func=cmd_baseline_update)

    rp = sub.add_parser("report", help="compare a saved run with its baselines; write md/HTML/CSV/JUnit/plots")
    rp.add_argument("--run", required=True, metavar="FILE", help="saved with pytest --odqa-save-run FILE")
    rp.add_argument("--out", default="reports", metavar="DIR", help="Default: reports")
    rp.add_argument("--strict", action="store_true")
    rp.add_argument("--correction", choices=["holm", "bh", "none"])
    gate_opts(rp)
    rp.set_defaults(func=cmd_report)

    ca = sub.add_parser("cache", help="list or clear the token/embedding/model caches")
    ca.add_argument("action", choices=["list", "clear"])
    ca.add_argument("--kind", help="only this kind (tokens, embeddings, models, dpr)")
    ca.set_defaults(func=cmd_cache)

    from .evalrag_cli import add_eval_rag_parser

    _extension_opts(add_eval_rag_parser(sub))
    return p


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
