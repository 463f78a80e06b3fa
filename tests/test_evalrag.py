"""eval-rag subcommand: precision@k and EM/F1 checked against values worked out by hand from
eval_rag.py's definitions, re-scoring vs --recalculate, and every one-line error."""
from __future__ import annotations

import argparse
import csv

import pytest

from odqa_core.evalrag_cli import add_eval_rag_parser, main
from odqa_core.perfstats import torch_threads

# Each question word occurs in the passages of one title only, so BM25's candidates are plain:
# "zebra" -> the two Zebra passages, "penguin" -> Penguin only, "tiger" -> Tiger only.
KB = [
    ("Zebra", "zebra stripes are black and white"),
    ("Zebra", "a zebra lives on the plains of africa"),
    ("Lion", "the lion is a big cat of africa"),
    ("Penguin", "a penguin is a bird that swims in cold water"),
    ("Eagle", "an eagle is a bird that flies high"),
    ("Tiger", "tiger fur is orange with dark stripes"),
]
QUESTIONS = ["zebra", "penguin", "tiger"]
GOLD_TITLES = ["Zebra", "Penguin\tEagle", "Lion"]
# precision@1: Zebra 1/1, Penguin 1/1, Tiger vs Lion 0/1                    -> 2/3 = 66.67
# precision@2: {Zebra} 1/2 (two Zebra passages count once), {Penguin} 1/2, 0 -> 1/3 = 33.33


@pytest.fixture
def files(tmp_path):
    kb = tmp_path / "kb.csv"
    with open(kb, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "text"])
        w.writerows(KB)
    q = tmp_path / "questions.txt"
    q.write_text("\n".join(QUESTIONS) + "\n", encoding="utf-8")
    g = tmp_path / "gold_titles.txt"
    g.write_text("\n".join(GOLD_TITLES) + "\n", encoding="utf-8")
    return {"kb": str(kb), "q": str(q), "gold": str(g), "pred": str(tmp_path / "pred.txt"), "dir": tmp_path}


def retrieval_args(f, *extra):
    return ["eval-rag", "--eval_mode", "retrieval", "--evaluation_set", f["q"], "--gold_data_path", f["gold"],
            "--predictions_path", f["pred"], "--knowledge_base", f["kb"], "--tokenizer", "regex", *extra]


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_retrieval_precision_by_hand(files, capsys):
    rc, out, _ = run(retrieval_args(files, "--k", "1", "--n_docs", "2"), capsys)
    assert rc == 0
    assert "precision@1: 66.67" in out
    lines = open(files["pred"], encoding="utf-8").read().splitlines()
    assert lines[0].split("\t") == ["Zebra", "Zebra"]
    assert lines[1].split("\t") == ["Penguin"]
    assert lines[2].split("\t") == ["Tiger"]
    rc, out, _ = run(retrieval_args(files, "--k", "2", "--n_docs", "2"), capsys)
    assert rc == 0 and "re-scoring" in out and "precision@2: 33.33" in out


def test_rescore_vs_recalculate(files, capsys):
    # a hand-written predictions file: no gold title at rank 1; Eagle and Lion at rank 2
    with open(files["pred"], "w", encoding="utf-8") as fh:
        fh.write("Lion\tTiger\nTiger\tEagle\nTiger\tLion\n")
    # @1: 0, 0, 0 -> 0.00; @2: 0/2, {Eagle} 1/2, {Lion} 1/2 -> 1/3
    rc, out, _ = run(retrieval_args(files, "--k", "1", "--n_docs", "2"), capsys)
    assert rc == 0 and "precision@1: 0.00" in out
    rc, out, _ = run(retrieval_args(files, "--k", "2", "--n_docs", "2"), capsys)
    assert rc == 0 and "precision@2: 33.33" in out
    assert open(files["pred"], encoding="utf-8").read().startswith("Lion\tTiger\n")
    rc, out, _ = run(retrieval_args(files, "--k", "1", "--n_docs", "2", "--recalculate"), capsys)
    assert rc == 0 and "wrote 3 predictions" in out and "precision@1: 66.67" in out
    assert open(files["pred"], encoding="utf-8").read().splitlines()[0] == "Zebra\tZebra"


def test_k_sweep_table(files, capsys):
    rc, out, _ = run(retrieval_args(files, "--n_docs", "100", "--k_sweep"), capsys)
    assert rc == 0
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 4 and cells[1].isdigit():
            rows[int(cells[1])] = cells[2]
    # BM25 returns only passages sharing a word: {Zebra}, {Penguin}, {Tiger} -> (1 + 1 + 0) / 3 / k
    assert list(rows) == [1, 2, 3, 5, 10, 15, 20, 50, 100]
    for k in rows:
        assert rows[k] == f"{100 * 2 / 3 / k:.2f}", (k, out)


GOLD_QA = "Who?\t['Paris', 'paris city']\nWhat?\t['the cat']\nWhen?\t['1999']\n"
PREDS = "Paris\na cat sat\n2000\n"
# EM: 1, 0, 0 -> 33.33. F1 (SQuAD): 1; "cat sat" vs "cat" -> p=1/2 r=1 -> 2/3; 0 -> (1 + 2/3) / 3 = 55.56


def e2e_args(f, gold, *extra):
    return ["eval-rag", "--eval_mode", "e2e", "--evaluation_set", f["q"], "--gold_data_path", gold,
            "--predictions_path", f["pred"], *extra]


def test_e2e_scores_from_predictions_file(files, capsys):
    gold = files["dir"] / "gold_qa.txt"
    gold.write_text(GOLD_QA, encoding="utf-8")
    with open(files["pred"], "w", encoding="utf-8") as fh:
        fh.write(PREDS)
    rc, out, _ = run(e2e_args(files, str(gold)), capsys)
    assert rc == 0 and "EM: 33.33" in out and "F1: 55.56" in out
    ans = files["dir"] / "gold_ans.txt"
    ans.write_text("paris\nThe cat sat\n1999\n", encoding="utf-8")
    # EM: 1, 1 ("a cat sat" and "The cat sat" normalise alike), 0 -> 66.67; F1: 1, 1, 0 -> 66.67
    rc, out, _ = run(e2e_args(files, str(ans), "--gold_data_mode", "ans"), capsys)
    assert rc == 0 and "EM: 66.67" in out and "F1: 66.67" in out


@pytest.fixture
def one_thread():
    """A tiny model runs fastest on one thread."""
    pytest.importorskip("torch")
    with torch_threads(1):
        yield


def test_e2e_recalculates_with_a_reader(files, capsys, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "cache"))
    from odqa_core.e2e import score_predictions
    from odqa_core.reader import build_reader

    ckpt = build_reader("tiny", "L1", seed=0, max_length=64, doc_stride=8, max_query_length=16).save(tmp_path / "reader")
    gold = files["dir"] / "gold_ans.txt"
    gold.write_text("black and white\ncold water\norange\n", encoding="utf-8")
    with open(files["pred"], "w", encoding="utf-8") as fh:
        fh.write("black and white\ncold water\norange\n")
    rc, out, _ = run(e2e_args(files, str(gold), "--gold_data_mode", "ans"), capsys)
    assert rc == 0 and "EM: 100.00" in out  # the hand-written file, not recomputed
    rc, out, _ = run(e2e_args(files, str(gold), "--gold_data_mode", "ans", "--recalculate", "--reader", str(ckpt),
                              "--knowledge_base", files["kb"], "--tokenizer", "regex", "--n_docs", "2"), capsys)
    assert rc == 0 and "wrote 3 predictions" in out
    preds = open(files["pred"], encoding="utf-8").read().splitlines()
    assert len(preds) == 3
    texts = " ".join(t for _, t in KB)
    assert all(p and p in texts for p in preds)  # extractive: every answer is passage text
    em, f1 = score_predictions(preds, [["black and white"], ["cold water"], ["orange"]], "en")
    assert f"EM: {100 * em.mean():.2f}" in out and f"F1: {100 * f1.mean():.2f}" in out


@pytest.mark.parametrize("case", ["malformed", "unparsable", "not_strings", "count", "k_gt_n", "missing_q",
                                  "missing_gold", "pred_count", "sweep", "no_reader", "no_kb", "bad_kb"])
def test_errors(files, capsys, case):
    d = files["dir"]
    gold_qa = d / "gold_qa.txt"
    gold_qa.write_text(GOLD_QA, encoding="utf-8")
    argv = e2e_args(files, str(gold_qa))
    expect = ""
    if case == "malformed":
        gold_qa.write_text("Who?\t['Paris']\nWhat? ['the cat']\nWhen?\t['1999']\n", encoding="utf-8")
        expect = "gold_qa.txt:2: expected 2 tab-separated columns"
    elif case == "unparsable":
        gold_qa.write_text("Who?\t['Paris'\nWhat?\t['the cat']\nWhen?\t['1999']\n", encoding="utf-8")
        expect = "gold_qa.txt:1: cannot parse the answer list"
    elif case == "not_strings":
        gold_qa.write_text("Who?\t[1, 2]\nWhat?\t['the cat']\nWhen?\t['1999']\n", encoding="utf-8")
        expect = "must be a list of strings"
    elif case == "count":
        gold_qa.write_text("Who?\t['Paris']\nWhat?\t['the cat']\n", encoding="utf-8")
        expect = "2 gold lines for 3 questions"
    elif case == "k_gt_n":
        argv = retrieval_args(files, "--k", "3", "--n_docs", "2")
        expect = "--k 3 is larger than --n_docs 2"
    elif case == "missing_q":
        argv = retrieval_args(files)
        argv[argv.index(files["q"])] = str(d / "nope.txt")
        expect = "nope.txt: file not found"
    elif case == "missing_gold":
        argv = retrieval_args(files)
        argv[argv.index(files["gold"])] = str(d / "nogold.txt")
        expect = "nogold.txt: file not found"
    elif case == "pred_count":
        with open(files["pred"], "w", encoding="utf-8") as fh:
            fh.write("Zebra\nPenguin\n")
        argv = retrieval_args(files)
        expect = "2 prediction lines for 3 questions"
    elif case == "sweep":
        argv = retrieval_args(files, "--n_docs", "50", "--k_sweep")
        expect = "--k_sweep needs --n_docs >= 100"
    elif case == "no_reader":
        argv = e2e_args(files, str(gold_qa), "--knowledge_base", files["kb"])
        expect = "e2e mode needs --reader"
    elif case == "no_kb":
        argv = [a for a in retrieval_args(files) if a not in ("--knowledge_base", files["kb"])]
        expect = "--knowledge_base is needed"
    elif case == "bad_kb":
        argv = retrieval_args(files)
        argv[argv.index(files["kb"])] = "no-such-kb"
        expect = "no such file and not a dataset name"
    rc, out, err = run(argv, capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("odqa-bench: error: ") and expect in lines[0], err
    if case == "pred_count":
        assert open(files["pred"], encoding="utf-8").read() == "Zebra\nPenguin\n"  # left as it was


def test_parser_registers_on_a_cli():
    p = argparse.ArgumentParser(prog="odqa-bench")
    sub = p.add_subparsers(dest="command")
    add_eval_rag_parser(sub)
    args = p.parse_args(["eval-rag", "--evaluation_set", "q", "--gold_data_path", "g"])
    assert callable(args.func)
    assert (args.eval_mode, args.gold_data_mode, args.k, args.n_docs, args.retriever) == ("e2e", "qa", 1, 5, "bm25")
    assert args.predictions_path == "predictions.txt" and not args.recalculate


@pytest.mark.parametrize("damage", ["no_info", "torn_weights", "torn_info"])
def test_a_damaged_reader_checkpoint_is_one_line(files, capsys, tmp_path, one_thread, damage):
    from odqa_core.reader import build_reader

    ckpt = build_reader("tiny", "L1", seed=0, max_length=64, doc_stride=8, max_query_length=16).save(tmp_path / "reader")
    if damage == "no_info":
        (ckpt / "odqa_reader.json").unlink()
        expect = "not a reader checkpoint"
    elif damage == "torn_weights":
        w = ckpt / "model.safetensors"
        w.write_bytes(w.read_bytes()[:200])
        expect = "cannot load the reader"
    else:
        (ckpt / "odqa_reader.json").write_text('{"name": "x", "settings": {', encoding="utf-8")
        expect = "cannot load the reader"
    gold = files["dir"] / "gold_ans.txt"
    gold.write_text("black and white\ncold water\norange\n", encoding="utf-8")
    rc, out, err = run(e2e_args(files, str(gold), "--gold_data_mode", "ans", "--reader", str(ckpt),
                                "--knowledge_base", files["kb"], "--tokenizer", "regex"), capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and expect in lines[0], err
    assert not (files["dir"] / "pred.txt").exists()  # nothing written


def test_questions_without_gold_answers_are_counted(files, capsys):
    ans = files["dir"] / "gold_ans.txt"
    ans.write_text("paris\n\n1999\n", encoding="utf-8")
    with open(files["pred"], "w", encoding="utf-8") as fh:
        fh.write("Paris\n\n1999\n")
    rc, out, _ = run(e2e_args(files, str(ans), "--gold_data_mode", "ans"), capsys)
    # the blank gold line is no answer: it scores 0 even against an empty prediction
    assert rc == 0 and "1 of 3 questions have no gold answer" in out and "EM: 66.67" in out
    qa = files["dir"] / "gold_qa.txt"
    qa.write_text("Who?\t['Paris']\nWhat?\t[]\nWhen?\t['1999']\n", encoding="utf-8")
    rc, out, _ = run(e2e_args(files, str(qa)), capsys)
    assert rc == 0 and "1 of 3 questions have no gold answer" in out and "EM: 66.67" in out


@pytest.mark.parametrize("mode", ["qa", "ans"])
def test_eval_rag_e2e_matches_the_suite(tmp_path, capsys, monkeypatch, one_thread, mode):
    """The same trained reader, retriever and k give the same EM/F1 through eval-rag as through
    the reader suite's end-to-end sweep."""
    monkeypatch.setenv("ODQA_CACHE_DIR", str(tmp_path / "cache"))
    from odqa_core.data import load_dataset
    from odqa_core.data.folds import get_fold
    from odqa_core.e2e import run_e2e_sweep
    from odqa_core.reader import load_reader
    from odqa_core.reader.train import PROFILES, train_reader
    from odqa_core.retrieval import get_retriever, retrieve

    k = 5
    ds = load_dataset("default")
    fold = get_fold(ds, 1, 2)
    ckpt = train_reader(ds, fold, PROFILES["quick"], progress=False)
    reader = load_reader(ckpt, threads=1)
    qids = [q for q in fold.test_query_ids if ds.answers.get(q)]
    run_ = retrieve(get_retriever("bm25", tokenizer="regex").index(ds.corpus), ds, k)
    suite = run_e2e_sweep(ds, run_, reader, [k], "auto", query_ids=qids)[k]
    sub = ds.subset_queries(qids)
    (tmp_path / "q.txt").write_text("\n".join(sub.query_texts) + "\n", encoding="utf-8")
    golds = [sub.answers[q] for q in sub.query_ids]
    gold_text = ("\n".join(f"{t}\t{a!r}" for t, a in zip(sub.query_texts, golds)) if mode == "qa"
                 else "\n".join(a[0] for a in golds))
    (tmp_path / "gold.txt").write_text(gold_text + "\n", encoding="utf-8")
    if mode == "ans":  # one answer a line: the suite scored against the first answer only
        from odqa_core.e2e import score_predictions

        em, f1 = score_predictions([p.text for p in suite["predictions"]], [[a[0]] for a in golds], "auto")
    else:
        em, f1 = suite["em"], suite["f1"]
    rc, out, _ = run(["eval-rag", "--eval_mode", "e2e", "--evaluation_set", str(tmp_path / "q.txt"),
                      "--gold_data_path", str(tmp_path / "gold.txt"), "--gold_data_mode", mode,
                      "--predictions_path", str(tmp_path / "pred.txt"), "--knowledge_base", "default",
                      "--retriever", "bm25", "--tokenizer", "regex", "--n_docs", str(k), "--reader", str(ckpt),
                      "--eval_batch_size", str(reader.batch_size), "--lang", "auto"], capsys)
    assert rc == 0, out
    preds = (tmp_path / "pred.txt").read_text(encoding="utf-8").splitlines()
    assert preds == [" ".join(p.text.split()) for p in suite["predictions"]]
    assert f"EM: {100 * em.mean():.2f}" in out and f"F1: {100 * f1.mean():.2f}" in out, out
