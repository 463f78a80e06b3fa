"""A reader recipe on one fold against the stored full-profile baseline, on the same questions:
gold-passage F1 of the first ``--gold`` held-out questions and hybrid end-to-end F1 at every k of
the first ``--e2e`` questions of the suite's sample, beside the baseline's per-query vectors of
those questions. A way to try a training change on one fold before retraining all five.

    python scripts/reader_vs_baseline.py --fold 1 --gold 300 --e2e 50 \
        --setting negatives=1,negative_share=0.5,negative_windows=1

The setting overrides the full profile's ``TrainConfig`` fields; the checkpoint is trained into
(or taken from) the content-keyed reader cache. One JSON line per measurement.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--gold", type=int, default=300, help="held-out questions read on their gold passage")
    ap.add_argument("--e2e", type=int, default=50, help="questions of the suite's end-to-end sample read (0: none)")
    ap.add_argument("--setting", default="", help="TrainConfig fields as key=value,... over the full profile")
    ap.add_argument("--baseline", default=str(ROOT / "baselines" / "full" / "reader.json"))
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import test_reader as suite

    from odqa_core.baseline.store import unpack_vector
    from odqa_core.bench import cached_dataset
    from odqa_core.e2e import read_gold_passages, read_runs, run_e2e_sweep
    from odqa_core.reader.train import PROFILES, config_overrides, trained_reader

    setup = next(s for s in suite.SETUPS if s.profile == "full")
    config = config_overrides(args.setting, PROFILES["full"])
    cells = json.loads(Path(args.baseline).read_text(encoding="utf-8"))["cells"]

    def stored(cell: str, metric: str, n: int) -> float:
        return float(unpack_vector(cells[f"benchmarks/test_reader.py::{cell}"]["metrics"][metric]["per_query"])[:n].mean())

    t0 = time.perf_counter()
    ds = cached_dataset(setup.train_on)
    reader = trained_reader(ds, suite._fold(setup, args.fold), config, device="cpu", threads=config.threads)
    qids = suite._held_out(setup, setup.train_on, args.fold)[: args.gold]
    _, f1, _ = read_gold_passages(ds, reader, qids, "auto")
    print(json.dumps({"gold_f1": round(float(f1.mean()), 4), "questions": len(qids),
                      "baseline": round(stored(f"test_reader_gold[full/{setup.train_on}/fold={args.fold}]", "gold_f1",
                                               len(qids)), 4),
                      "seconds": round(time.perf_counter() - t0)}), flush=True)
    if args.e2e <= 0:
        return 0
    sample = suite._e2e_questions(setup, args.fold)[: args.e2e]
    datasets = [d for d, r in setup.read if r == "hybrid"]
    runs = {d: suite._run(setup, d, "hybrid") for d in datasets}
    cands = read_runs(reader, [(cached_dataset(d), runs[d]) for d in datasets], sample, max(suite.KS))
    for d in datasets:
        dsd = cached_dataset(d)
        ids = [q for q in sample if dsd.answers.get(q)]
        sweep = run_e2e_sweep(dsd, runs[d], reader, suite.KS, "auto", query_ids=ids, gold_baseline=False,
                              candidates=cands)
        rid = suite._retriever_id(setup, "hybrid")
        row = {str(k): {"f1": round(float(np.mean(sweep[k]["f1"])), 4),
                        "baseline": round(stored(f"test_reader[full/{rid}/{d}/k={k}/fold={args.fold}]", "f1", len(ids)), 4)}
               for k in suite.KS}
        print(json.dumps({"dataset": d, "retriever": "hybrid", "questions": len(ids), "f1_by_k": row,
                          "seconds": round(time.perf_counter() - t0)}), flush=True)
    return 0


if __name__ == "__main__":
    from odqa_core.errors import OdqaBenchError

    try:
        raise SystemExit(main())
    except OdqaBenchError as exc:
        print(f"reader_vs_baseline: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
