"""Learning curves of the extractive reader on one korquad-dev fold: each setting trains from
scratch and reads the gold passages of held-out questions every ``--every`` steps.

    python scripts/reader_sweep.py --out docs/reader_sweep.jsonl \
        --setting size=L6,max_length=256,doc_stride=96,lr=1e-4,max_steps=400

Each line of ``--out`` is one evaluation: the setting, the step, the mean training loss of the
last ``--every`` steps, and gold-passage EM/F1 on ``--eval`` held-out questions.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from odqa_core.bench import cached_dataset
from odqa_core.data.folds import get_fold
from odqa_core.e2e import read_gold_passages
from odqa_core.encoders.load import load_base
from odqa_core.reader.extractive import ExtractiveReader
from odqa_core.reader.train import TrainConfig, config_overrides, train_reader


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="korquad-dev")
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--eval", type=int, default=300, help="held-out questions read at each evaluation")
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--out", required=True)
    ap.add_argument("--setting", action="append", required=True,
                    help="TrainConfig fields as key=value,... (base e5-small, no negatives unless given)")
    args = ap.parse_args(argv)
    ds = cached_dataset(args.dataset)
    fold = get_fold(ds, args.fold, args.folds)
    qids = [q for q in fold.test_query_ids if ds.answers.get(q)][: args.eval]
    for spec in args.setting:
        config = config_overrides(spec, TrainConfig(base="e5-small", negatives=0, threads=2, save_every=10**6))
        tok = load_base(config.base, config.size, config.seed).tokenizer
        t0 = time.perf_counter()

        def evaluate(step: int, model, losses: list[float], config=config, tok=tok, spec=spec, t0=t0) -> None:
            if step % args.every and step != (config.max_steps or 0):
                return
            reader = ExtractiveReader(model, tok, max_length=config.max_length, doc_stride=config.doc_stride,
                                      max_query_length=config.max_query_length, threads=config.threads)
            em, f1, _ = read_gold_passages(ds, reader, qids, "ko")
            row = {"setting": spec, "step": step, "loss": round(float(np.mean(losses[-args.every:])), 4),
                   "gold_em": round(float(em.mean()), 4), "gold_f1": round(float(f1.mean()), 4),
                   "seconds": round(time.perf_counter() - t0, 1), "questions": len(qids)}
            print(json.dumps(row), flush=True)
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

        with tempfile.TemporaryDirectory() as tmp:
            train_reader(ds, fold, config, Path(tmp) / "ckpt", progress=False, on_step=evaluate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
