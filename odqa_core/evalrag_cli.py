"""``odqa-bench eval-rag``: HF RAG ``eval_rag.py``'s flags and scores over our retrievers and reader.

Retrieval mode writes the tab-joined titles of each question's top ``--n_docs`` passages and
scores precision@k = |set(top-k titles) ∩ set(gold titles)| / k × 100; e2e mode writes one
reader answer per line and scores EM/F1 × 100 (maximum over the gold answers). An existing
predictions file is re-scored as it is unless ``--recalculate`` is given.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .argtypes import positive_int
from .errors import OdqaBenchError

__all__ = ["K_SWEEP", "add_eval_rag_parser", "cmd_eval_rag", "main"]

log = logging.getLogger(__name__)

K_SWEEP = (1, 2, 3, 5, 10, 15, 20, 50, 100)


def _kb_columns(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",")]
    low = [c.lower() for c in names]
    if any(not c for c in names) or low.count("title") != 1 or low.count("text") != 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated column names with 'title' and 'text' once each, got {text!r}")
    return names


def add_eval_rag_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``eval-rag`` subcommand on an argparse subparsers object and set ``func``."""
    p = subparsers.add_parser(
        "eval-rag", help="HF RAG eval_rag.py-compatible evaluation (retrieval precision@k or e2e EM/F1)",
        description="Evaluate retrieval (precision@k over passage titles) or end-to-end QA (EM/F1) on an "
                    "eval_rag.py question file and gold file.")
    p.add_argument("--eval_mode", choices=["e2e", "retrieval"], default="e2e",
                   help="retrieval: precision@k of titles; e2e: EM/F1 of reader answers. Default: e2e")
    p.add_argument("--gold_data_mode", choices=["qa", "ans"], default="qa",
                   help="e2e gold format: qa = question<TAB>['a1', 'a2'] per line, ans = one answer per line. Default: qa")
    p.add_argument("--k", type=positive_int, default=1, help="k for precision@k (retrieval mode). Default: 1")
    p.add_argument("--n_docs", type=positive_int, default=5, help="passages retrieved per question. Default: 5")
    p.add_argument("--evaluation_set", required=True, metavar="FILE", help="questions, one per line")
    p.add_argument("--gold_data_path", required=True, metavar="FILE",
                   help="retrieval: tab-separated gold titles per line; e2e: see --gold_data_mode")
    p.add_argument("--predictions_path", default="predictions.txt", metavar="FILE",
                   help="where predictions are written (or re-scored from when it exists). Default: predictions.txt")
    p.add_argument("--recalculate", action="store_true", help="recompute predictions even if the file exists")
    p.add_argument("--eval_batch_size", type=positive_int, default=8, help="reader batch size. Default: 8")
    p.add_argument("--print_predictions", action="store_true", help="print each question's prediction")
    p.add_argument("--knowledge_base", metavar="CSV|TSV|NAME",
                   help="a CSV/TSV file whose header row names its title and text columns, or a named dataset "
                        "(e.g. korquad-dev) whose corpus is searched")
    p.add_argument("--kb_columns", type=_kb_columns, default=None, metavar="NAMES",
                   help="the column names of a headerless knowledge-base file, in order (the RAG recipe's TSV: "
                        "title,text). Default: the file's header row")
    p.add_argument("--kb_split_words", type=positive_int, default=None, metavar="N",
                   help="split knowledge-base texts into passages of N words (the RAG recipe uses 100). Default: no split")
    p.add_argument("--data_dir", metavar="DIR", help="data folder for named datasets. Default: $ODQA_DATA_DIR, else ../shared/data")
    p.add_argument("--retriever", default="bm25", metavar="NAME", help="retriever name. Default: bm25")
    p.add_argument("--tokenizer", default=None, metavar="NAME", help="tokenizer for a lexical retriever. Default: its own")
    p.add_argument("--reader", metavar="DIR", help="extractive reader checkpoint folder (e2e mode)")
    p.add_argument("--lang", choices=["en", "ko", "auto"], default="en",
                   help="answer normalisation: en = SQuAD, ko = KorQuAD character F1, auto = by the gold answer's script. Default: en")
    p.add_argument("--weight", type=float, default=0.0,
                   help="answer score = reader span score + weight × retrieval score. Default: 0")
    p.add_argument("--k_sweep", action="store_true",
                   help=f"retrieval mode: print precision@k for k in {', '.join(map(str, K_SWEEP))} (needs --n_docs >= 100)")
    p.set_defaults(func=cmd_eval_rag)
    return p


def _knowledge_base(args: argparse.Namespace) -> Any:
    from .data import dataset_names, load_dataset, load_kb

    kb = args.knowledge_base
    if not kb:
        raise OdqaBenchError("--knowledge_base is needed to compute predictions (a CSV/TSV with title and text columns or a dataset name)")
    path = Path(kb)
    if path.is_file():
        return load_kb(path, args.kb_split_words, args.kb_columns)[0]
    if kb in dataset_names():
        for flag, value in (("--kb_split_words", args.kb_split_words), ("--kb_columns", args.kb_columns)):
            if value:
                raise OdqaBenchError(f"{flag} applies to a CSV/TSV knowledge base, not a named dataset")
        return load_dataset(kb, args.data_dir).corpus
    raise OdqaBenchError(f"--knowledge_base {kb!r}: no such file and not a dataset name ({', '.join(dataset_names())})")


def _search(args: argparse.Namespace, corpus: Any, questions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from .retrieval import get_retriever

    params = {"tokenizer": args.tokenizer} if args.tokenizer else {}
    retriever = get_retriever(args.retriever, **params).index(corpus)
    return retriever.search(questions, args.n_docs)


def _one_line(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def _write_lines(path: str, lines: list[str]) -> None:
    from .io import atomic_write_text

    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def _read_predictions(path: str, n_expected: int) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise OdqaBenchError(f"{path}: not UTF-8 text") from None
    if len(lines) != n_expected:
        raise OdqaBenchError(f"{path}: {len(lines)} prediction lines for {n_expected} questions; "
                             "use --recalculate to recompute it")
    return lines


def _retrieval_predictions(args: argparse.Namespace, questions: list[str]) -> list[str]:
    corpus = _knowledge_base(args)
    idx, _ = _search(args, corpus, questions)
    return ["\t".join(_one_line(corpus.titles[j]) for j in row if j >= 0) for row in idx]


def _e2e_predictions(args: argparse.Namespace, questions: list[str]) -> list[str]:
    from .progress import progress_enabled
    from .reader import load_reader

    if not args.reader:
        raise OdqaBenchError("e2e mode needs --reader <checkpoint folder> to compute predictions")
    if not Path(args.reader).is_dir():
        raise OdqaBenchError(f"--reader {args.reader}: folder not found")
    reader = load_reader(args.reader, batch_size=args.eval_batch_size)
    corpus = _knowledge_base(args)
    idx, sc = _search(args, corpus, questions)
    passages = [[corpus.texts[j] for j in row if j >= 0] for row in idx]
    scores = [[float(s) for j, s in zip(r, srow) if j >= 0] for r, srow in zip(idx, sc)]
    preds = reader.predict(questions, passages, scores, args.weight, show_progress=progress_enabled())
    return [_one_line(p.text) for p in preds]


def _print_sweep(values: dict[int, float], n: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"eval_rag precision@k ({n} questions)")
    table.add_column("k", justify="right")
    table.add_column("precision@k", justify="right")
    for k, v in values.items():
        table.add_row(str(k), f"{v:.2f}")
    Console(width=120).print(table)


def cmd_eval_rag(args: argparse.Namespace) -> int:
    """Compute (or reuse) the predictions file, then print eval_rag's scores."""
    from .data.evalrag import read_gold_answers, read_gold_titles, read_questions
    from .e2e import score_predictions
    from .metrics import rag_precision_at_k

    retrieval = args.eval_mode == "retrieval"
    if retrieval and args.k > args.n_docs:
        raise OdqaBenchError(f"--k {args.k} is larger than --n_docs {args.n_docs}; precision@k needs k <= n_docs")
    if args.k_sweep and not retrieval:
        raise OdqaBenchError("--k_sweep applies to --eval_mode retrieval")
    if args.k_sweep and args.n_docs < max(K_SWEEP):
        raise OdqaBenchError(f"--k_sweep needs --n_docs >= {max(K_SWEEP)}, got {args.n_docs}")
    questions = read_questions(args.evaluation_set)
    if retrieval:
        gold_titles = read_gold_titles(args.gold_data_path, len(questions))
    else:
        gold_answers = read_gold_answers(args.gold_data_path, args.gold_data_mode, len(questions))
    preds_path = Path(args.predictions_path)
    if preds_path.is_dir():
        raise OdqaBenchError(f"--predictions_path {preds_path} is a folder")
    if preds_path.exists() and not args.recalculate:
        print(f"re-scoring the existing predictions in {preds_path} (use --recalculate to recompute)")
        lines = _read_predictions(str(preds_path), len(questions))
    else:
        lines = _retrieval_predictions(args, questions) if retrieval else _e2e_predictions(args, questions)
        _write_lines(str(preds_path), lines)
        print(f"wrote {len(lines)} predictions to {preds_path}")
    if args.print_predictions:
        for q, line in zip(questions, lines):
            print(f"{q}\t{line}")
    n = len(questions)
    if retrieval:
        titles = [[t.strip() for t in line.split("\t")] if line.strip() else [] for line in lines]
        if args.k_sweep:
            _print_sweep({k: 100.0 * float(rag_precision_at_k(titles, gold_titles, k).mean()) for k in K_SWEEP}, n)
        else:
            p = 100.0 * float(rag_precision_at_k(titles, gold_titles, args.k).mean())
            print(f"precision@{args.k}: {p:.2f} ({n} questions)")
    else:
        em, f1 = score_predictions(lines, gold_answers, args.lang)
        unanswerable = sum(1 for g in gold_answers if not g)
        if unanswerable:
            print(f"{unanswerable} of {n} questions have no gold answer; they score 0 (as in eval_rag)")
        print(f"EM: {100.0 * em.mean():.2f}")
        print(f"F1: {100.0 * f1.mean():.2f} ({n} questions)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m odqa_core.evalrag_cli <eval-rag flags>``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="odqa-bench")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_rag_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "eval-rag":
        argv = ["eval-rag", *argv]
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OdqaBenchError as exc:
        print(f"odqa-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
